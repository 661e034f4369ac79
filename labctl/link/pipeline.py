"""Block pipeline: acquisition hands blocks over without ever waiting for post-processing.

``submit`` never blocks: a block goes into a bounded queue, or — when post-processing has
fallen ``max_queue`` blocks behind — it is dropped and counted. One worker task post-
processes blocks in order (Alice and Bob share one classical channel, so blocks of a link
are sequential; the numpy-heavy steps run in worker threads). The backlog (blocks waiting
plus the one in progress) is sampled at every submit, so a run reports whether
post-processing kept up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BacklogStats:
    """How far post-processing fell behind acquisition."""

    submitted: int = 0
    processed: int = 0
    dropped: int = 0
    max_backlog: int = 0
    backlog: int = 0


class BlockPipeline(Generic[T, R]):
    """Bounded queue + one worker; the first exception of ``process`` stops the worker."""

    def __init__(
        self,
        process: Callable[[T], Awaitable[R]],
        on_result: Callable[[R], None],
        *,
        max_queue: int,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"BlockPipeline: max_queue must be >= 1, got {max_queue}")
        self._process = process
        self._on_result = on_result
        self._queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize=max_queue)
        self._busy = False
        self.stats = BacklogStats()
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._progressed = asyncio.Event()

    def start(self) -> None:
        """Start the worker task on the running loop."""
        self._task = asyncio.create_task(self._work(), name="keygen-postprocess")

    @property
    def failed(self) -> bool:
        """True once post-processing raised (see ``error``)."""
        return self.error is not None

    def submit(self, item: T) -> bool:
        """Queue a block; False (counted as dropped) when the queue is full or the worker died."""
        self.stats.submitted += 1
        if self.failed:
            self.stats.dropped += 1
            return False
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return False
        self._sample()
        return True

    def _sample(self) -> None:
        self.stats.backlog = self._queue.qsize() + (1 if self._busy else 0)
        self.stats.max_backlog = max(self.stats.max_backlog, self.stats.backlog)

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            self._busy = True
            try:
                result = await self._process(item)
            except Exception as exc:
                self.error = exc
                self._drain_queue()
                return
            finally:
                self._busy = False
                self._progressed.set()
            self.stats.processed += 1
            self._sample()
            self._on_result(result)

    def _drain_queue(self) -> None:
        while not self._queue.empty():
            if self._queue.get_nowait() is not None:
                self.stats.dropped += 1

    def pending(self) -> int:
        """Blocks queued or in progress right now."""
        return self._queue.qsize() + (1 if self._busy else 0)

    async def wait_pending_at_most(self, n: int) -> None:
        """Wait (real time) until at most ``n`` blocks are pending or the worker stopped."""
        while self.pending() > n and self._task is not None and not self._task.done():
            self._progressed.clear()
            await self._progressed.wait()

    def abort(self, error: BaseException) -> None:
        """Stop post-processing now (the peer failed): the block in progress is abandoned."""
        if self.error is None:
            self.error = error
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._drain_queue()

    async def finish(self, timeout_s: float) -> None:
        """Process what is queued, then stop the worker (cancelled after ``timeout_s``)."""
        if self._task is None:
            return
        if not self._task.done():
            await self._queue.put(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except asyncio.CancelledError:
            if self.error is None:
                raise
        except TimeoutError:
            self._task.cancel()
            raise


class BlockDropped(Exception):
    """A block's key may not be stored: an earlier block failed (see CommitSequencer.fail)."""


class CommitSequencer:
    """Turns for key-store commits: sequence number s commits after 0..s-1 are done.

    After ``fail(b)`` no block after b gets its turn (``wait_turn`` raises BlockDropped):
    blocks before b still commit, so a failure never leaves a gap in the key order.
    """

    def __init__(self) -> None:
        self._next = 0
        self._done: set[int] = set()
        self._changed = asyncio.Event()
        self._failed_at: int | None = None

    @property
    def committed_through(self) -> int:
        """Every sequence number below this one is done."""
        return self._next

    async def wait_turn(self, seq: int) -> None:
        """Wait until every block before ``seq`` is done."""
        while self._next < seq and not self._dropped(seq):
            event = self._changed
            await event.wait()
        if self._dropped(seq):
            raise BlockDropped(f"block {seq} dropped: block {self._failed_at} failed before it")

    def _dropped(self, seq: int) -> bool:
        return self._failed_at is not None and seq > self._failed_at

    def fail(self, seq: int) -> None:
        """Block ``seq`` failed: every later block is dropped (earlier ones still commit)."""
        if self._failed_at is None or seq < self._failed_at:
            self._failed_at = seq
        self._changed.set()
        self._changed = asyncio.Event()

    def halt(self) -> None:
        """Nothing not yet committed may commit (tampering: key output stops at once)."""
        self.fail(self._next - 1)

    def done(self, seq: int) -> None:
        """Block ``seq`` is stored or ended without key (idempotent)."""
        if seq < self._next:
            return
        self._done.add(seq)
        while self._next in self._done:
            self._done.remove(self._next)
            self._next += 1
        # Wake every waiter, then give later ones a fresh event to wait on.
        self._changed.set()
        self._changed = asyncio.Event()
