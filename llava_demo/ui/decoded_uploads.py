"""Each uploaded file is decoded once: validation, the AnyRes panel and the model share one ``LoadedImage``.

A chat message's images are checked when it is sent (``chat_state.check_message``), pictured by the AnyRes
panel, and read by the backend when the answer is generated, in separate Gradio events. Decoding the file in
each of them would cost three decodes per upload and, worse, three places where limits are applied. Here the
app's ``ImageLimits`` are applied once, in one place, and the decoded image is kept (keyed by the file's path,
size and modification time, so a replaced file is decoded again) for the events that follow.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import replace

from vision_common.chat.conversation import Conversation
from vision_common.images.limits import ImageLimits, LoadedImage
from vision_common.images.load import load_image

# Decoded uploads kept: enough for every image of a few concurrent conversations; each is at most
# ``ImageLimits.max_pixels`` RGB pixels, and an evicted one is simply decoded again.
DEFAULT_CAPACITY = 16
FileKey = tuple[str, int, int]


class DecodedUploads:
    """A bounded, thread-safe cache of decoded upload files (Gradio runs events on worker threads)."""

    def __init__(self, limits: ImageLimits, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"DecodedUploads capacity must be >= 1, got {capacity}")
        self.limits, self.capacity = limits, capacity
        self._images: OrderedDict[FileKey, LoadedImage] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, path: str | os.PathLike[str]) -> LoadedImage:
        """The decoded file, from the cache when the same file was decoded before (``ImageInputError`` if bad)."""
        key = _file_key(path)
        with self._lock:
            if key is not None and key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        loaded = load_image(os.fspath(path), self.limits)  # outside the lock: decoding takes a while
        if key is not None:
            with self._lock:
                self._images[key] = loaded
                while len(self._images) > self.capacity:
                    self._images.popitem(last=False)
        return loaded

    def resolve(self, conversation: Conversation) -> Conversation:
        """The conversation with every file-path image replaced by its decoded image (the backend then passes
        a ``LoadedImage`` through without decoding it again); other references are left as they are."""
        messages = []
        for message in conversation.messages:
            images = tuple(self.load(ref) if _is_file_path(ref) else ref for ref in message.images)
            messages.append(replace(message, images=images) if images != message.images else message)
        return Conversation(tuple(messages))


def _is_file_path(ref: object) -> bool:
    if isinstance(ref, os.PathLike):
        return True
    return isinstance(ref, str) and "://" not in ref[:16] and not ref[:5].lower().startswith("data:")


def _file_key(path: str | os.PathLike[str]) -> FileKey | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # the loader reports the missing file with its own message
    return (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
