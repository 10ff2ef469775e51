"""AnyRes (LLaVA-NeXT): pure geometry and token arithmetic, PIL image operations, pixel tensors, pictures."""
