"""What the explorer hands the page: copies of the images it shows, never the pool folder itself.

The galleries once got the pool folders as Gradio ``allowed_paths``, which made every file under them
downloadable by URL, ``pool_truth.parquet`` (the answers of SynthWorld's evaluation) included (issue 19). Now
each shown image is linked (or copied, across file systems) into a private folder under the system temp
directory, which Gradio accepts as a function's output without serving the folder; Gradio then serves the
image from its own cache. Only files with an image suffix are ever staged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})


class ServedImages:
    """A staging folder of shown images, named by (path, size, mtime), so a changed file is staged anew."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="react-shown-"))
            self._folder.mkdir(parents=True, exist_ok=True)
            return self._folder

    def stage(self, image: str | os.PathLike[str]) -> str | None:
        """The staged copy of an image file, or None for anything that is not an image file."""
        source = Path(image)
        if source.suffix.lower() not in IMAGE_SUFFIXES or not source.is_file():
            return None
        stat = source.stat()
        key = hashlib.sha256(f"{source.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
        target = self.folder / f"{key[:24]}{source.suffix.lower()}"
        if target.is_file():
            return str(target)
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.link(source, partial)
        except OSError:  # another file system, or links not allowed: copy
            shutil.copyfile(source, partial)
        os.replace(partial, target)  # atomic: a concurrent reader sees the whole file or none
        return str(target)

    def close(self) -> None:
        with self._lock:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None
