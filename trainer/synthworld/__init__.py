"""SynthWorld: a procedural, seeded 2-D image-text world written in COCO / LAION / LLaVA formats.

See docs/synthworld.md for the on-disk layout and ``python -m trainer.synthworld generate --help``.
"""
