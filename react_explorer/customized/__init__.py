"""REACT's customized CLIP, model side: gated self-attention dense blocks on an open_clip ViT, and the
directory format a customized model is saved in (loadable here, by the explorer's encoders, with no trainer).

The training side (strategies, the gamma-positive loss, data, the CLI) lives in ``trainer.react``.
"""
