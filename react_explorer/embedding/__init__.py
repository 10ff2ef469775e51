"""CLIP embeddings of pools: model specs, the open_clip encoder wrapper, pool readers, parallel image batches
and the per-rank embedding job."""
