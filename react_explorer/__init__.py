"""REACT explorer: CLIP-embedded image-text pools, FAISS indexes, class-query retrieval."""
