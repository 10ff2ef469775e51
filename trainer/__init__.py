"""Training: SynthWorld, the instruction-data engine, foundation models, and (later) REACT / LLaVA jobs."""
