"""Exceptions of the REACT explorer: each one means bad input and carries a message naming the file/field/record.

All derive from ``ValueError`` so callers that already treat ``ValueError`` as "bad input" keep working; the CLIs
print them as one line and exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class ReactExplorerError(ValueError):
    """Base class: bad input or a broken artifact; the message says which and where."""


class EncoderLoadError(ReactExplorerError):
    """A CLIP model spec cannot be resolved or loaded (missing directory, hub model while offline, ...)."""


class PoolFormatError(ReactExplorerError):
    """An image-text pool (parquet, image folder, embedding shards) is missing or malformed."""


class MissingImagesError(PoolFormatError):
    """Pool rows point at image files that do not exist."""


class IndexBuildError(ReactExplorerError):
    """An index cannot be built from the given vectors and options."""


class IndexLoadError(ReactExplorerError):
    """An index directory is missing, corrupt, truncated or inconsistent with its manifest."""


class DimensionMismatchError(ReactExplorerError):
    """Query vectors and index vectors have different dimensions (usually: another CLIP model)."""


class QueryError(ReactExplorerError):
    """A retrieval request is malformed (empty class list, unknown template file, bad k, ...)."""
