"""Research probes beside the models they probe (never imported by them): what patch tokens carry, whether the
LM reads a scene, whether it learns lookup from ideal tokens, and whether a LLaVA uses its image."""
