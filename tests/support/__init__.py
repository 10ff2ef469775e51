"""Shared test helpers (tiny checkpoints, fixtures on disk, fake servers); imported as ``tests.support.*``."""
