"""Write a ``.npy`` array row block by row block with plain file writes (no memory map).

A writable memory map keeps every written page resident (and counted in the process' RSS) until it is unmapped,
so filling a 2 GB array through ``open_memmap`` costs 2 GB of RSS. Appending the bytes to the file after the
header keeps the writer's memory at one block. The file is written to a temporary name and renamed on success.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np


class NpyRowWriter:
    """``with NpyRowWriter(path, rows, dim, dtype) as out: out.write(block)``; the row count is checked at close."""

    def __init__(self, path: str | os.PathLike[str], rows: int, dim: int, dtype: np.dtype) -> None:
        self.path = Path(path)
        self.rows, self.dim, self.dtype = rows, dim, np.dtype(dtype)
        self.written = 0
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._file = os.fdopen(fd, "wb")
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (rows, dim),
        }
        np.lib.format.write_array_header_2_0(self._file, header)

    def write(self, block: np.ndarray) -> None:
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise ValueError(f"{self.path.name}: expected [rows, {self.dim}] blocks, got {block.shape}")
        if self.written + len(block) > self.rows:
            raise ValueError(f"{self.path.name}: more than the declared {self.rows} rows")
        self._file.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.written += len(block)

    def __enter__(self) -> NpyRowWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self._file.close()
            if kind is None:
                if self.written != self.rows:
                    raise ValueError(f"{self.path.name}: {self.written} rows written, {self.rows} declared")
                os.replace(self._tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
