"""FAISS index directories: planning, streaming build from embedding shards, the manifest, and ``ClipIndex``
(a loaded, verified, searchable index)."""
