"""Several blocks in flight: ParallelPipeline, CommitSequencer and Alice on W channels."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from pathlib import Path
from typing import Any, cast

import pytest

from labctl.link.block import RawBlock
from labctl.link.nodes import BlockResult, BobNode
from labctl.link.pipeline import CommitSequencer
from labctl.link.settings import KeygenSettings
from labctl.link.workers import ParallelPipeline, bob_workers, serve_alice
from labctl.qkd.auth.channel import AuthenticatedChannel, MemoryTransport, Message, memory_pair
from labctl.qkd.auth.transcript import AuthPool, TranscriptAuthenticator, open_local_pair
from labctl.qkd.errors import AuthenticationError, ChannelClosed, QkdError
from labctl.store.keystore import KeyStore
from tests.experiments.keygen.keygen_helpers import HashSource, make_block

# ---------------------------------------------------------------- CommitSequencer


async def test_sequencer_turns_follow_sequence_numbers() -> None:
    seq = CommitSequencer()
    order: list[int] = []

    async def commit(n: int) -> None:
        await seq.wait_turn(n)
        order.append(n)
        seq.done(n)

    tasks = [asyncio.create_task(commit(n)) for n in (3, 1, 2)]
    await asyncio.sleep(0)
    assert order == []  # nobody may commit before block 0 is done
    seq.done(0)
    await asyncio.gather(*tasks)
    assert order == [1, 2, 3]
    assert seq.committed_through == 4
    seq.done(2)  # idempotent for numbers already passed
    assert seq.committed_through == 4


async def test_sequencer_out_of_order_done_advances_when_gap_closes() -> None:
    seq = CommitSequencer()
    seq.done(2)
    seq.done(1)
    assert seq.committed_through == 0
    seq.done(0)
    assert seq.committed_through == 3


# ---------------------------------------------------------------- ParallelPipeline


async def test_results_in_submission_order_while_workers_finish_out_of_order() -> None:
    delays_s = [0.05, 0.0, 0.03, 0.0, 0.01, 0.0]
    finished: list[int] = []
    delivered: list[int] = []

    async def process(seq: int, item: int) -> int:
        await asyncio.sleep(delays_s[item])
        finished.append(item)
        return item

    pipe: ParallelPipeline[int, int] = ParallelPipeline(
        [process] * 3, delivered.append, max_queue=len(delays_s)
    )
    pipe.start()
    for item in range(len(delays_s)):
        assert pipe.submit(item)
    await pipe.finish(timeout_s=5.0)
    assert delivered == list(range(len(delays_s)))
    assert finished != delivered  # they really overlapped
    assert pipe.stats.processed == len(delays_s) and pipe.stats.dropped == 0
    assert pipe.stats.max_backlog == len(delays_s)


async def test_bounded_queue_drops_exactly_what_does_not_fit() -> None:
    gate = asyncio.Event()
    seqs: list[int] = []

    async def process(seq: int, item: int) -> int:
        seqs.append(seq)
        await gate.wait()
        return item

    delivered: list[int] = []
    pipe: ParallelPipeline[int, int] = ParallelPipeline(
        [process, process], delivered.append, max_queue=2
    )
    pipe.start()
    assert pipe.submit(0) and pipe.submit(1)
    await asyncio.sleep(0)  # both workers took one block each
    accepted = [pipe.submit(i) for i in range(2, 7)]
    assert accepted == [True, True, False, False, False]
    assert pipe.pending() == 4 and pipe.stats.dropped == 3
    gate.set()
    await pipe.finish(timeout_s=5.0)
    assert delivered == [0, 1, 2, 3]
    assert sorted(seqs) == [0, 1, 2, 3]  # sequence numbers have no gaps for dropped blocks


async def test_failure_of_block_b_finishes_earlier_blocks_and_drops_later_ones() -> None:
    delivered: list[int] = []
    started: list[int] = []
    failed = asyncio.Event()

    async def process(seq: int, item: int) -> int:
        started.append(item)
        if item == 0:
            await failed.wait()  # still in progress when block 1 fails: must complete
        if item == 1:
            await asyncio.sleep(0.01)
            failed.set()
            raise ChannelClosed("peer went away")
        if item == 2:
            await failed.wait()  # completes after block 1 failed: dropped
        return item

    pipe: ParallelPipeline[int, int] = ParallelPipeline(
        [process] * 3, delivered.append, max_queue=8
    )
    pipe.start()
    for item in range(5):
        pipe.submit(item)
    await pipe.finish(timeout_s=5.0)
    assert isinstance(pipe.error, ChannelClosed)
    # 0 ran to the end after the failure and is delivered; 2 finished but comes after the
    # failed block; 3 and 4 never started (no new block after a failure).
    assert delivered == [0]
    assert started == [0, 1, 2]
    assert not pipe.submit(9)
    assert pipe.stats.processed == 1 and pipe.stats.dropped == 4  # 2, 3, 4 and 9


async def test_tampering_stops_every_worker_at_once() -> None:
    delivered: list[int] = []

    async def process(seq: int, item: int) -> int:
        if item == 1:
            await asyncio.sleep(0.01)
            raise AuthenticationError("bad MAC")
        if item in (0, 2):
            await asyncio.sleep(10.0)  # abandoned: nothing further is stored
        return item

    pipe: ParallelPipeline[int, int] = ParallelPipeline(
        [process] * 3, delivered.append, max_queue=8
    )
    pipe.start()
    for item in range(5):
        pipe.submit(item)
    t0 = time.monotonic()
    await pipe.finish(timeout_s=5.0)
    assert time.monotonic() - t0 < 1.0
    assert isinstance(pipe.error, AuthenticationError)
    assert delivered == []


async def test_finish_can_drop_waiting_blocks_and_complete_those_in_progress() -> None:
    gate = asyncio.Event()
    delivered: list[int] = []

    async def process(seq: int, item: int) -> int:
        await gate.wait()
        return item

    pipe: ParallelPipeline[int, int] = ParallelPipeline(
        [process, process], delivered.append, max_queue=10
    )
    pipe.start()
    for item in range(6):
        pipe.submit(item)
    await asyncio.sleep(0)  # workers hold 0 and 1; 2..5 wait
    finishing = asyncio.create_task(pipe.finish(timeout_s=5.0, drop_queued=True))
    await asyncio.sleep(0)
    gate.set()
    await finishing
    assert delivered == [0, 1]
    assert pipe.stats.dropped == 4 and pipe.stats.processed == 2
    assert pipe.pending() == 0


async def test_finish_times_out_and_cancels_stuck_workers() -> None:
    async def process(seq: int, item: int) -> int:
        await asyncio.sleep(30.0)
        return item

    pipe: ParallelPipeline[int, int] = ParallelPipeline([process], lambda r: None, max_queue=1)
    pipe.start()
    pipe.submit(0)
    with pytest.raises(TimeoutError):
        await pipe.finish(timeout_s=0.05)


def test_constructor_refuses_empty_worker_list_and_zero_queue() -> None:
    with pytest.raises(ValueError):
        ParallelPipeline([], lambda r: None, max_queue=1)
    with pytest.raises(ValueError):
        ParallelPipeline([lambda s, i: asyncio.sleep(0)], lambda r: None, max_queue=0)


# ---------------------------------------------------------------- real nodes, W channels


async def _process(bob: BobNode, seq: int, raw: RawBlock) -> BlockResult:
    return await bob.process(raw, seq)


def _wegman_carter_pairs(
    tmp_path: Path, n: int
) -> tuple[list[tuple[AuthenticatedChannel, AuthenticatedChannel]], tuple[AuthPool, AuthPool]]:
    """n channel pairs whose ends share one pool per party (slots taken across channels)."""
    pools = open_local_pair(tmp_path / "a.sqlite", tmp_path / "b.sqlite")
    pairs = []
    for _ in range(n):
        ta, tb = MemoryTransport.pair()
        key = os.urandom(32)
        pairs.append(
            (
                AuthenticatedChannel(
                    ta, key, "alice", 60.0, transcript=TranscriptAuthenticator(pools[0])
                ),
                AuthenticatedChannel(
                    tb, key, "bob", 60.0, transcript=TranscriptAuthenticator(pools[1])
                ),
            )
        )
    return pairs, pools


@pytest.mark.parametrize("auth", ["hmac", "wegman-carter"])
async def test_two_workers_store_identical_keys_in_block_order_on_both_sides(
    tmp_path: Path, auth: str
) -> None:
    # Wegman-Carter: a pool target above the seed's, so every block refills both pools
    # while the other worker's block is taking slots.
    settings = KeygenSettings(block_pulses=20_000_000, auth=auth, auth_pool_slots=200)
    pools: tuple[AuthPool, AuthPool] | None = None
    if auth == "hmac":
        pairs = [memory_pair(os.urandom(32), 60.0) for _ in range(2)]
    else:
        pairs, pools = _wegman_carter_pairs(tmp_path, 2)
    # Block 0 is larger than the others, so block 1 tends to finish first and wait its turn.
    blocks = [
        make_block(0, 30_000_000, 10),
        make_block(1, 20_000_000, 11),
        make_block(2, 20_000_000, 12),
    ]
    delivered: list[BlockResult] = []
    with KeyStore(tmp_path / "a.sqlite") as sa, KeyStore(tmp_path / "b.sqlite") as sb:
        alice_task = asyncio.create_task(
            serve_alice([p[0] for p in pairs], sa, settings, HashSource())
        )
        sequencer = CommitSequencer()
        bobs = [BobNode(p[1], sb, settings, sequencer=sequencer) for p in pairs]
        pipe: ParallelPipeline[RawBlock, BlockResult] = ParallelPipeline(
            [functools.partial(_process, b) for b in bobs],
            delivered.append,
            max_queue=4,
        )
        pipe.start()
        for raw in blocks:
            assert pipe.submit(raw)
        await pipe.finish(timeout_s=60.0)
        for bob in bobs:
            await bob.close()
        alice_results, alice_nodes = await alice_task
        assert pipe.error is None
        assert [r.block for r in delivered] == [0, 1, 2]
        assert [r.status for r in delivered] == ["key"] * 3
        assert [r.block for r in alice_results] == [0, 1, 2]
        stored_a, stored_b = list(sa.keys()), list(sb.keys())
    assert [k.block for k in stored_b] == [0, 1, 2]
    assert [k.block for k in stored_a] == [0, 1, 2]
    assert [k.key_id for k in stored_a] == [k.key_id for k in stored_b]
    assert [r.key_id for r in delivered] == [k.key_id for k in stored_b]
    for ka, kb in zip(stored_a, stored_b, strict=True):
        assert ka.key.to_bytes() == kb.key.to_bytes()
    assert sequencer.committed_through == 3
    if pools is not None:
        alice_pool, bob_pool = pools
        assert bob_pool.checks_sent + bob_pool.checks_verified == 9  # 3 per block
        assert sum(r.auth_key_bits for r in delivered) == bob_pool.refill_bits > 0
        assert alice_pool.refill_bits == bob_pool.refill_bits
        for d in ("ab", "ba"):
            assert alice_pool.streams[d].end == bob_pool.streams[d].end
        assert sum(len(k.key) for k in stored_b) == sum(
            r.secret_bits - r.auth_key_bits for r in delivered
        )
    # Every block was profiled on both sides: the stages saw CPU.
    assert sum(b.profile.blocks for b in bobs) == 3
    assert sum(n.profile.blocks for n in alice_nodes) == 3
    assert all(sum(b.profile.cpu_s.values()) > 0 for b in bobs)


class _HoldSend:
    """Alice's channel whose ``kind`` messages wait for ``gate`` (a block kept in flight)."""

    def __init__(self, channel: AuthenticatedChannel, kind: str, gate: asyncio.Event) -> None:
        self._channel, self._kind, self._gate = channel, kind, gate

    async def send(self, kind: str, payload: bytes) -> None:
        if kind == self._kind:
            await self._gate.wait()
        await self._channel.send(kind, payload)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


class _FailOnRecv:
    """Bob's channel that fails (``error``) on receiving ``kind``, then opens ``gate``."""

    def __init__(
        self, channel: AuthenticatedChannel, kind: str, gate: asyncio.Event, error: QkdError
    ) -> None:
        self._channel, self._kind, self._gate, self._error = channel, kind, gate, error

    async def recv(self, expect: str | None = None, timeout_s: float | None = None) -> Message:
        message = await self._channel.recv(expect=expect, timeout_s=timeout_s)
        if message.kind == self._kind:
            self._gate.set()
            raise self._error
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


async def _fail_block_1(
    tmp_path: Path, error: QkdError
) -> tuple[ParallelPipeline[RawBlock, BlockResult], list[BlockResult], BaseException | None]:
    """3 workers, blocks 0-4: block 1 fails on Bob's side when Alice's pa/seed arrives,
    while block 0 is held in flight (its pa/seed waits for that failure) and block 2 runs.
    Returns Bob's pipeline, his delivered results and what serve_alice raised; asserts
    that both stores are identical (ids, bits, order)."""
    settings = KeygenSettings(block_pulses=20_000_000)
    pairs = [memory_pair(os.urandom(32), 20.0) for _ in range(3)]
    gate = asyncio.Event()
    alice_channels = [cast(AuthenticatedChannel, _HoldSend(pairs[0][0], "pa/seed", gate))]
    alice_channels += [p[0] for p in pairs[1:]]
    bob_channels = [
        pairs[0][1],
        cast(AuthenticatedChannel, _FailOnRecv(pairs[1][1], "pa/seed", gate, error)),
    ]
    bob_channels.append(pairs[2][1])
    delivered: list[BlockResult] = []
    with KeyStore(tmp_path / "a.sqlite") as sa, KeyStore(tmp_path / "b.sqlite") as sb:
        alice_task = asyncio.create_task(serve_alice(alice_channels, sa, settings, HashSource()))
        sequencer = CommitSequencer()
        bobs = [BobNode(ch, sb, settings, sequencer=sequencer) for ch in bob_channels]
        pipe: ParallelPipeline[RawBlock, BlockResult] = ParallelPipeline(
            bob_workers(bobs), delivered.append, max_queue=8
        )
        pipe.start()
        for block in range(5):
            assert pipe.submit(make_block(block, 20_000_000, 20 + block))
        await pipe.finish(timeout_s=60.0)
        await pairs[1][1].close()  # the failed worker's link is dropped, not closed cleanly
        for w in (0, 2):
            try:
                await bobs[w].close()
            except QkdError:
                pass
        alice_error: BaseException | None = None
        try:
            await alice_task
        except BaseException as exc:
            alice_error = exc
        stored_a, stored_b = list(sa.keys()), list(sb.keys())
    assert [k.key_id for k in stored_a] == [k.key_id for k in stored_b]
    assert [k.block for k in stored_a] == [k.block for k in stored_b]
    for ka, kb in zip(stored_a, stored_b, strict=True):
        assert ka.key.to_bytes() == kb.key.to_bytes()
    return pipe, delivered, alice_error


async def test_failed_block_keeps_earlier_keys_and_drops_later_ones_at_both_ends(
    tmp_path: Path,
) -> None:
    pipe, delivered, alice_error = await _fail_block_1(tmp_path, ChannelClosed("link cut"))
    assert isinstance(pipe.error, ChannelClosed)
    # Block 0 finished after block 1 failed and is stored at both ends; block 2 reached its
    # commit point after the failure and was dropped at both ends (Bob sent key/dropped);
    # 3 and 4 never started.
    assert [(r.block, r.status) for r in delivered] == [(0, "key")]
    assert pipe.stats.dropped == 3
    with KeyStore(tmp_path / "b.sqlite") as sb:
        assert [k.block for k in sb.keys()] == [0]
    # Alice's worker 1 lost its link mid-block: reported, the others ended normally.
    assert isinstance(alice_error, ExceptionGroup)
    assert [type(e) for e in alice_error.exceptions] == [ChannelClosed]


async def test_tampering_on_one_block_stores_nothing_further_at_either_end(
    tmp_path: Path,
) -> None:
    pipe, delivered, _ = await _fail_block_1(tmp_path, AuthenticationError("bad MAC"))
    assert isinstance(pipe.error, AuthenticationError)
    assert delivered == []  # block 0 (in flight) was abandoned, not stored
    with KeyStore(tmp_path / "a.sqlite") as sa:
        assert len(sa) == 0
