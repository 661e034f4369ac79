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
  sequencer.

Stopping with several blocks in flight. The commit point is the existing final
acknowledgement ``key/stored`` (B->A): Bob stores at his turn and acknowledges, Alice stores
on the acknowledgement at her turn; a block Alice has acknowledged-for is always stored.
Bob decides for every block, so both ends agree:

* a block b fails without tampering (channel closed or timed out, Alice stopped): blocks
  before b finish (both store or both drop); blocks after b are dropped at their commit
  point, Bob sends ``key/dropped`` instead of ``key/stored`` and Alice drops them too;
  no new block starts. Workers are not cancelled.
* an AuthenticationError (MAC, replay, out-of-order or unexpected message: tampering) stops
  everything at once: workers are cancelled and nothing further is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from labctl.link.block import RawBlock
from labctl.link.node_base import to_json
from labctl.link.nodes import AliceNode, AliceSource, BlockResult, BobNode
from labctl.link.pipeline import BacklogStats, BlockDropped, CommitSequencer
from labctl.link.settings import KeygenSettings
from labctl.qkd.auth.channel import AuthenticatedChannel
from labctl.qkd.errors import AuthenticationError, ChannelClosed, QkdError
from labctl.store.keystore import KeyStore

T = TypeVar("T")
R = TypeVar("R")


_FAILED = object()


def is_tampering(error: BaseException | None) -> bool:
    """An error that means the channel was tampered with: key output stops at once."""
    return isinstance(error, AuthenticationError)


class ParallelPipeline(Generic[T, R]):
    """Bounded queue + W workers; results in submission order.

    ``processes[w](seq, item)`` post-processes one block on worker w's own channel. When
    block b raises, no new block starts and the queue is dropped; blocks before b run to
    the end and are delivered, blocks after b are dropped (counted, not delivered) — the
    same rule the CommitSequencer applies to their keys. A tampering error
    (:func:`is_tampering`) instead cancels every worker at once. A process raising
    BlockDropped ended without key by that rule: counted as dropped, not an error.
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
        self._failed_seq: int | None = None  # the earliest block that failed
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
            except BlockDropped:
                result = _FAILED
                self.stats.dropped += 1
            except Exception as exc:
                self._finished[seq] = _FAILED
                if is_tampering(exc):
                    self.abort(exc)
                else:
                    self._fail(seq, exc)
                    self._deliver()
                return  # this worker's channel is out of step or gone
            finally:
                self._busy -= 1
                self._progressed.set()
            if self._failed_seq is not None and seq > self._failed_seq and result is not _FAILED:
                result = _FAILED  # after the failed block: dropped at both ends
                self.stats.dropped += 1
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

    def _fail(self, seq: int, error: BaseException) -> None:
        """Block ``seq`` failed: no new blocks; earlier ones finish, later ones are dropped."""
        if self.error is None:
            self.error = error
        if self._failed_seq is None or seq < self._failed_seq:
            self._failed_seq = seq
        self._drain_queue()

    def _drain_queue(self) -> None:
        sentinels = 0
        while not self._queue.empty():
            if self._queue.get_nowait() is None:
                sentinels += 1  # finish() already asked the workers to stop: keep that
            else:
                self._queued -= 1
                self.stats.dropped += 1
        for _ in range(sentinels):
            self._queue.put_nowait(None)

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
            try:
                return await bob.process(raw, seq)
            except BlockDropped:
                # Alice waits for key/stored at this block's commit point: tell her the
                # key is not kept, so she drops it too (and the channel stays in step).
                try:
                    await bob.send("key/dropped", to_json({"seq": seq}))
                except QkdError:
                    pass  # link gone: Alice, without key/stored, stores nothing either
                raise
            except Exception as exc:
                # Runs before any later block's commit wakes up (no await since the
                # failure), so none of them stores: later blocks are dropped.
                if bob.sequencer is not None:
                    if is_tampering(exc):
                        bob.sequencer.halt()
                    else:
                        bob.sequencer.fail(seq)
                if isinstance(exc, ChannelClosed):
                    raise ChannelClosed(
                        f"block {raw.block}: Alice closed the channel (stopped, or failed): {exc}"
                    ) from None
                raise

        return process

    return [worker(b) for b in bobs]


async def serve_alice(
    channels: Sequence[AuthenticatedChannel],
    store: KeyStore,
    settings: KeygenSettings,
    source: AliceSource,
    run_id: str | None = None,
    stop: asyncio.Event | None = None,
) -> tuple[list[BlockResult], list[AliceNode]]:
    """Alice on W channels at once (one node each, shared store and commit order).

    Returns her results in block order and the nodes (their stage profiles). ``stop`` set:
    each node takes no new block and ends after the one it holds (AliceNode.serve). A
    failure on one channel does not cancel the others (a block Bob acknowledged must still
    be stored); a tampering error cancels them all at once. Errors are raised at the end as
    an ExceptionGroup, tampering first.
    """
    sequencer = CommitSequencer()
    nodes = [AliceNode(ch, store, settings, source, run_id, sequencer=sequencer) for ch in channels]
    tasks = [
        asyncio.create_task(node.serve(stop), name=f"alice-worker-{w}")
        for w, node in enumerate(nodes)
    ]
    try:
        pending: set[asyncio.Task[list[BlockResult]]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            if any(not t.cancelled() and is_tampering(t.exception()) for t in done):
                sequencer.halt()
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                break
    except BaseException:  # cancelled (a second Ctrl-C): stop now
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    errors = [
        exc for t in tasks if not t.cancelled() and isinstance(exc := t.exception(), Exception)
    ]
    if errors:
        errors.sort(key=lambda e: not is_tampering(e))
        raise ExceptionGroup("alice: post-processing failed", errors)
    results = [r for task in tasks for r in task.result()]
    return sorted(results, key=lambda r: r.block), nodes
