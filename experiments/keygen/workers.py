"""Several blocks of one link in flight at once: W workers, in-order results and key commits.

A block's post-processing is a conversation between Alice and Bob; while one party
computes, the other waits. On two machines (or two processes) one block at a time leaves
each party idle for the other's share, so W conversations run side by side, each on its
own authenticated channel: while Bob waits for Alice on block k he works on block k+1.

* :class:`ParallelPipeline` — Bob's side: a bounded queue (``submit`` never blocks; a full
  queue drops the block and counts it), W worker tasks each owning one channel's node, and
  results handed to ``on_result`` in submission order whatever order they finish in.
* :class:`CommitSequencer` — both sides: a block's key is written to the key store only
  after every earlier block has been stored or has ended without key, so both stores list
  the keys in block order. Sequence numbers are given at submit to accepted blocks only, so
  there are no gaps; Bob sends each block's number in ``block/start``.
* :func:`serve_alice` — Alice's side: one AliceNode per channel, sharing her store and
  sequencer; the first failure stops them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from experiments.keygen.acquisition import RawBlock
from experiments.keygen.nodes import AliceNode, AliceSource, BlockResult, BobNode
from experiments.keygen.pipeline import BacklogStats, CommitSequencer
from experiments.keygen.settings import KeygenSettings
from labctl.qkd.auth import AuthenticatedChannel
from labctl.store.keystore import KeyStore

T = TypeVar("T")
R = TypeVar("R")


_FAILED = object()


class ParallelPipeline(Generic[T, R]):
    """Bounded queue + W workers; results in submission order; the first error stops all.

    ``processes[w](seq, item)`` post-processes one block on worker w's own channel.
    """

    def __init__(
        self,
        processes: Sequence[Callable[[int, T], Awaitable[R]]],
        on_result: Callable[[R], None],
        *,
        max_queue: int,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"ParallelPipeline: max_queue must be >= 1, got {max_queue}")
        if not processes:
            raise ValueError("ParallelPipeline: needs at least one worker")
        self._processes = list(processes)
        self._on_result = on_result
        self._max_queue = max_queue
        # Unbounded underneath (the bound is enforced in submit) so that shutdown
        # sentinels never wait for room.
        self._queue: asyncio.Queue[tuple[int, T] | None] = asyncio.Queue()
        self._queued = 0  # blocks in the queue (shutdown sentinels not counted)
        self._busy = 0
        self._next_seq = 0
        self._next_out = 0
        self._finished: dict[int, object] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._progressed = asyncio.Event()
        self.stats = BacklogStats()
        self.error: BaseException | None = None

    @property
    def workers(self) -> int:
        """Number of workers (blocks that can be in flight at once)."""
        return len(self._processes)

    @property
    def failed(self) -> bool:
        """True once post-processing raised (see ``error``)."""
        return self.error is not None

    def start(self) -> None:
        """Start the worker tasks on the running loop."""
        self._tasks = [
            asyncio.create_task(self._work(p), name=f"keygen-worker-{w}")
            for w, p in enumerate(self._processes)
        ]

    def submit(self, item: T) -> bool:
        """Queue a block; False (counted as dropped) when the queue is full or a worker died."""
        self.stats.submitted += 1
        if self.failed or self._queued >= self._max_queue:
            self.stats.dropped += 1
            return False
        self._queue.put_nowait((self._next_seq, item))
        self._queued += 1
        self._next_seq += 1
        self._sample()
        return True

    def pending(self) -> int:
        """Blocks queued or in progress right now."""
        return self._queued + self._busy

    def _sample(self) -> None:
        self.stats.backlog = self.pending()
        self.stats.max_backlog = max(self.stats.max_backlog, self.stats.backlog)

    async def _work(self, process: Callable[[int, T], Awaitable[R]]) -> None:
        while True:
            entry = await self._queue.get()
            if entry is None:
                return
            seq, item = entry
            self._queued -= 1
            self._busy += 1
            try:
                result: object = await process(seq, item)
            except Exception as exc:
                self._finished[seq] = _FAILED
                self.abort(exc)
                return
            finally:
                self._busy -= 1
                self._progressed.set()
            self._finished[seq] = result
            self._deliver()

    def _deliver(self, *, flush: bool = False) -> None:
        # In order; ``flush`` (after an abort) also hands over what finished after a block
        # that never will: those blocks ran to the end (an earlier block's failure had
        # already ended its turn, see CommitSequencer), so their results are real.
        while self._next_out in self._finished or (flush and self._finished):
            if self._next_out not in self._finished:
                self._next_out = min(self._finished)
            result = self._finished.pop(self._next_out)
            self._next_out += 1
            if result is _FAILED:
                continue
            self.stats.processed += 1
            self._on_result(result)  # type: ignore[arg-type]
        self._sample()

    def _drain_queue(self) -> None:
        while not self._queue.empty():
            if self._queue.get_nowait() is not None:
                self._queued -= 1
                self.stats.dropped += 1

    async def wait_pending_at_most(self, n: int) -> None:
        """Wait (real time) until at most ``n`` blocks are pending or every worker stopped."""
        while self.pending() > n and any(not t.done() for t in self._tasks):
            self._progressed.clear()
            await self._progressed.wait()

    def abort(self, error: BaseException) -> None:
        """Stop post-processing now: blocks in progress are abandoned, finished ones delivered."""
        if self.error is None:
            self.error = error
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()
        self._drain_queue()
        self._deliver(flush=True)

    async def finish(self, timeout_s: float, *, drop_queued: bool = False) -> None:
        """Process what is queued, then stop the workers (cancelled after ``timeout_s``).

        ``drop_queued``: blocks still waiting are dropped (counted) and only the blocks in
        progress are finished, e.g. when a run ends with post-processing behind.
        """
        if not self._tasks:
            return
        if drop_queued:
            self._drain_queue()
            self._sample()
        for _ in self._tasks:
            self._queue.put_nowait(None)
        _done, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
        if pending:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            raise TimeoutError(f"post-processing did not finish within {timeout_s} s")
        self._deliver(flush=self.failed)


def bob_workers(bobs: Sequence[BobNode]) -> list[Callable[[int, RawBlock], Awaitable[BlockResult]]]:
    """ParallelPipeline's ``processes`` for Bob's nodes (one per channel, shared sequencer)."""

    def worker(bob: BobNode) -> Callable[[int, RawBlock], Awaitable[BlockResult]]:
        async def process(seq: int, raw: RawBlock) -> BlockResult:
            return await bob.process(raw, seq)

        return process

    return [worker(b) for b in bobs]


async def serve_alice(
    channels: Sequence[AuthenticatedChannel],
    store: KeyStore,
    settings: KeygenSettings,
    source: AliceSource,
    run_id: str | None = None,
) -> tuple[list[BlockResult], list[AliceNode]]:
    """Alice on W channels at once (one node each, shared store and commit order).

    Returns her results in block order and the nodes (their stage profiles). The first
    failure on any channel cancels the others and propagates.
    """
    sequencer = CommitSequencer()
    nodes = [AliceNode(ch, store, settings, source, run_id, sequencer=sequencer) for ch in channels]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(node.serve()) for node in nodes]
    results = [r for task in tasks for r in task.result()]
    return sorted(results, key=lambda r: r.block), nodes
