"""Running generations under the event loop: admission (bounded concurrency + a bounded queue), a worker
thread per generation that hands backend events to the loop, and client-disconnect detection.

Backends stream synchronously (``ChatBackend.stream`` is a plain iterator, the local one blocks on torch), so
each admitted request runs its stream in its own thread and posts events to an ``asyncio.Queue``. The
admission slot is released when that thread ends, not when the HTTP response ends, so the bound really is
on concurrent generations even when a client walks away mid-answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from llava_demo.backends.base import CancelToken, ChatBackend, SamplingParams, StreamEvent
from vision_common.chat.conversation import Conversation

T = TypeVar("T")
_END = object()


class QueueFullError(RuntimeError):
    """Every generation slot is busy and the waiting queue is full."""


class ClientDisconnected(RuntimeError):
    """The HTTP client went away before the answer was complete."""


class AdmissionGate:
    """At most ``max_concurrency`` holders and ``max_queue`` waiters; one more is refused at once.

    Use from the event loop only (the counters are not locked); threads release through
    ``loop.call_soon_threadsafe(gate.release)``.
    """

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        if max_concurrency < 1 or max_queue < 0:
            raise ValueError(
                f"need max_concurrency >= 1 and max_queue >= 0, got {max_concurrency}, {max_queue}"
            )
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self.active = 0
        self.waiting = 0

    async def acquire(self) -> None:
        if self.active + self.waiting >= self.max_concurrency + self.max_queue:
            raise QueueFullError(
                f"the server is busy: {self.active} generation(s) running and {self.waiting} queued "
                f"(limits: --max-concurrency {self.max_concurrency}, --max-queue {self.max_queue}); retry later"
            )
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        if self.active <= 0:
            raise RuntimeError("AdmissionGate.release() without a matching acquire()")
        self.active -= 1
        self._semaphore.release()

    def stats(self) -> dict[str, int]:
        return {
            "running": self.active,
            "queued": self.waiting,
            "max_concurrency": self.max_concurrency,
            "max_queue": self.max_queue,
        }


class GenerationJob:
    """One backend stream running in a worker thread; ``next_events`` awaits its events on the loop.

    Hand-off cost matters at hundreds of tokens per second on a CPU: the thread appends to a locked deque and
    wakes the loop only when no wake-up is already pending, and the loop takes everything that has arrived at
    once, so a slow loop gets batches instead of falling behind one wake-up per token. ``on_finish`` runs on
    the loop when the thread ends (however it ends).
    """

    def __init__(
        self,
        backend: ChatBackend,
        conversation: Conversation,
        params: SamplingParams,
        *,
        on_finish: Callable[[], None],
    ) -> None:
        self.cancel_token = CancelToken()
        self._backend = backend
        self._conversation = conversation
        self._params = params
        self._on_finish = on_finish
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._arrived: deque[Any] = deque()  # filled by the thread, under _lock
        self._wake_pending = False  # under _lock: a wake-up of the loop is already scheduled
        self._ready = asyncio.Event()
        self._ended = asyncio.Event()  # set on the loop once the thread has posted its last item
        self._taken: deque[Any] = deque()  # loop side only
        self._thread = threading.Thread(target=self._pump, name="llava-generation", daemon=True)

    def start(self) -> GenerationJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def _post(self, item: Any) -> None:
        with self._lock:
            self._arrived.append(item)
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:
            # The loop is closed (server shut down): nobody is left to read the event.
            self.cancel_token.cancel()

    def _pump(self) -> None:
        try:
            for event in self._backend.stream(self._conversation, self._params, self.cancel_token):
                self._post(event)
        except BaseException as exc:  # noqa: BLE001 - handed to the request, which maps it to an API error
            self._post(exc)
        finally:
            self._post(_END)
            try:
                self._loop.call_soon_threadsafe(self._ended.set)
                self._loop.call_soon_threadsafe(self._on_finish)
            except RuntimeError:
                pass

    async def _fill(self, timeout: float | None) -> None:
        """Move everything that has arrived to ``_taken``, waiting up to ``timeout`` if nothing has."""
        while not self._taken:
            # Clear before looking, so a wake-up that races with the look is never lost.
            self._ready.clear()
            with self._lock:
                self._taken.extend(self._arrived)
                self._arrived.clear()
                self._wake_pending = False
            if not self._taken:
                await asyncio.wait_for(self._ready.wait(), timeout)

    async def settle(self, seconds: float) -> None:
        """Wait ``seconds`` for more events to pile up, or less if the stream ends meanwhile (so the last
        chunk is never held back)."""
        if self._ended.is_set():
            return
        try:
            await asyncio.wait_for(self._ended.wait(), seconds)
        except TimeoutError:
            pass

    async def next_events(self, timeout: float | None = None) -> list[StreamEvent]:
        """Every event available now (at least one, waiting up to ``timeout``); [] after the last one.

        Re-raises what the backend raised, after handing out the events that came before it;
        ``TimeoutError`` when nothing arrives within ``timeout``.
        """
        await self._fill(timeout)
        events: list[StreamEvent] = []
        while self._taken:
            head = self._taken[0]
            if head is _END:
                return events  # _END stays, so every later call returns [] too
            if isinstance(head, BaseException):
                if events:
                    return events
                self._taken.popleft()
                self._taken.appendleft(_END)
                raise head
            events.append(self._taken.popleft())
        return events

    async def next_event(self, timeout: float | None = None) -> StreamEvent | None:
        """The next event, None at the end (same errors as ``next_events``)."""
        await self._fill(timeout)
        head = self._taken[0]
        if head is _END:
            return None
        self._taken.popleft()
        if isinstance(head, BaseException):
            self._taken.appendleft(_END)
            raise head
        return head


class DisconnectWatcher:
    """Watches an ASGI ``receive`` for ``http.disconnect`` once the body has been read.

    ``race(awaitable)`` returns the awaitable's result, or cancels it and raises ``ClientDisconnected`` if the
    client goes first. Use as an async context manager so the watching task never outlives the request.
    """

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._receive = receive
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message.get("type") == "http.disconnect":
                return

    async def __aenter__(self) -> DisconnectWatcher:
        self._task = asyncio.ensure_future(self._watch())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - only stopping our own watcher
                pass

    async def race(self, awaitable: Awaitable[T]) -> T:
        if self._task is None:
            raise RuntimeError("DisconnectWatcher.race() outside 'async with'")
        work = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({work, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        work.cancel()
        try:
            await work
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the client is gone, results are moot
            pass
        raise ClientDisconnected("the client closed the connection")
