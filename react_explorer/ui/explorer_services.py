"""The explorer's shared resources: loaded indexes (least recently used dropped), CLIP encoders, and the
one-at-a-time first-use build of the embedded pool's index. One instance per app, owned by the tab."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from react_explorer.embedding.encoders import load_encoder
from react_explorer.embedding.model_spec import parse_model_spec
from react_explorer.errors import IndexLoadError, QueryError
from react_explorer.index.clip_index import ClipIndex
from react_explorer.index.progress import ProgressCallback
from react_explorer.ui.background_build import BackgroundBuild
from react_explorer.ui.explorer_config import ExplorerConfig
from react_explorer.ui.index_sources import (
    EMBEDDED,
    IndexChoice,
    build_embedded_index,
    embedded_index_dir,
    embedded_index_ready,
    embedded_problem,
    index_choices,
    pool_folders,
)
from react_explorer.ui.served_images import ServedImages

if TYPE_CHECKING:
    from react_explorer.embedding.encoders import ClipEncoder

log = logging.getLogger("react_explorer.ui")
BuildNotice = Callable[[str], None]


class ExplorerServices:
    """Thread-safe: Gradio runs handlers of different sessions in a thread pool."""

    def __init__(self, cfg: ExplorerConfig, *, device: str = "cpu") -> None:
        self.cfg = cfg
        self.device = device
        self._lock = threading.Lock()  # guards the two caches
        self._build_lock = threading.Lock()  # one first-use build at a time; others wait for it
        self._indexes: OrderedDict[Path, ClipIndex] = OrderedDict()
        self._encoders: dict[str, ClipEncoder] = {}
        self.last_build_seconds: float | None = None
        self.shown = ServedImages()  # the only way pool images reach the page (not the pool folder)
        self.background = BackgroundBuild()

    def choices(self) -> list[IndexChoice]:
        return index_choices(self.cfg)

    def allowed_roots(self) -> list[Path]:
        """Folders whose images galleries may show (staged through ``shown``; never served as folders)."""
        return [Path(folder) for folder in pool_folders(self.cfg)]

    def index_dir(self, value: str) -> Path:
        """The directory behind a selector value; only listed indexes may be opened (a page cannot name paths)."""
        if value == EMBEDDED:
            problem = embedded_problem(self.cfg)
            if problem:
                raise IndexLoadError(problem)
            return embedded_index_dir(self.cfg)
        for choice in self.choices():
            if choice.value == value and choice.directory is not None:
                return choice.directory
        raise IndexLoadError(f"index {value!r} is not one of the listed indexes (press Refresh?)")

    def open_index(self, value: str, notice: BuildNotice | None = None) -> ClipIndex:
        """Load (and for the embedded pool, on first use, build) the selected index."""
        directory = self.index_dir(value)
        with self._lock:
            if directory in self._indexes:
                self._indexes.move_to_end(directory)
                return self._indexes[directory]
        if value == EMBEDDED and not embedded_index_ready(directory):
            if self.background.state().running:  # answer now: waiting would hold the retrieval queue
                raise IndexLoadError(self.background.describe() + " Retrieve again when it is ready.")
            self._build_embedded(directory, notice)
        index = ClipIndex.load(directory, verify_checksums=self.cfg.verify_checksums)
        with self._lock:
            self._indexes[directory] = index
            self._indexes.move_to_end(directory)
            while len(self._indexes) > self.cfg.max_loaded_indexes:
                self._indexes.popitem(last=False)
        return index

    def start_background_build(self) -> bool:
        """From app start: build a missing embedded index in a thread (True when one was started)."""
        if not self.cfg.background_build or embedded_problem(self.cfg):
            return False
        directory = embedded_index_dir(self.cfg)
        if embedded_index_ready(directory):
            return False
        return self.background.start(lambda report: self._build_embedded(directory, None, report))

    def encoder(self, index: ClipIndex, model: str | None = None) -> ClipEncoder:
        """The CLIP that embeds queries: ``model`` if given, else the one recorded in the index manifest."""
        chosen = model or index.model
        if chosen is None:
            raise QueryError(f"index {index.root} does not record its model; give one under 'CLIP model'")
        spec = parse_model_spec(chosen)
        key = spec.describe()
        with self._lock:
            if key in self._encoders:
                return self._encoders[key]
        encoder = load_encoder(spec, device=self.device)
        with self._lock:
            return self._encoders.setdefault(key, encoder)

    def close(self) -> None:
        with self._lock:
            self._indexes.clear()
            self._encoders.clear()
        self.shown.close()

    def _build_embedded(
        self, directory: Path, notice: BuildNotice | None, on_progress: ProgressCallback | None = None
    ) -> None:
        with self._build_lock:
            if embedded_index_ready(directory):  # another session built it while this one waited
                return
            if notice is not None:
                notice(f"building the embedded pool's index in {directory} (first use, a few minutes)")
            log.info("building the embedded SynthWorld index in %s", directory)
            self.last_build_seconds = build_embedded_index(
                self.cfg, directory, progress=True, on_progress=on_progress
            )
            log.info("embedded index built in %.1f s", self.last_build_seconds)
