"""Retrieval: pure top-k/recall/dedup algorithms, CLIP prompt templates, and class-query retrieval over an index."""
