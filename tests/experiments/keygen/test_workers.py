"""Several blocks in flight: ParallelPipeline, CommitSequencer and Alice on W channels."""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path

import pytest
from keygen_helpers import HashSource, make_block

from experiments.keygen.acquisition import RawBlock
from experiments.keygen.nodes import BlockResult, BobNode
from experiments.keygen.pipeline import CommitSequencer
from experiments.keygen.settings import KeygenSettings
from experiments.keygen.workers import ParallelPipeline, serve_alice
from labctl.qkd.auth import memory_pair
from labctl.store.keystore import KeyStore

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


async def test_first_error_stops_every_worker_and_keeps_finished_results() -> None:
    delivered: list[int] = []
    started: list[int] = []

    async def process(seq: int, item: int) -> int:
        started.append(item)
        if item == 1:
            await asyncio.sleep(0.01)
            raise RuntimeError("peer failed")
        if item == 2:
            await asyncio.sleep(10.0)  # abandoned when block 1 fails
        return item

    pipe: ParallelPipeline[int, int] = ParallelPipeline(
        [process] * 3, delivered.append, max_queue=8
    )
    pipe.start()
    for item in range(5):
        pipe.submit(item)
    await pipe.finish(timeout_s=5.0)
    assert isinstance(pipe.error, RuntimeError)
    # 0, 3 and 4 ran to the end (workers 0 and 2 took 3 and 4 while 1 and 2 were running);
    # 1 failed, 2 was abandoned.
    assert delivered == [0, 3, 4]
    assert started == [0, 1, 2, 3, 4]
    assert not pipe.submit(9)
    assert pipe.stats.dropped == 1 and pipe.stats.processed == 3


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


async def test_two_workers_store_identical_keys_in_block_order_on_both_sides(
    tmp_path: Path,
) -> None:
    settings = KeygenSettings(block_pulses=20_000_000)
    pairs = [memory_pair(os.urandom(32), 60.0) for _ in range(2)]
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
    # Every block was profiled on both sides: the stages saw CPU.
    assert sum(b.profile.blocks for b in bobs) == 3
    assert sum(n.profile.blocks for n in alice_nodes) == 3
    assert all(sum(b.profile.cpu_s.values()) > 0 for b in bobs)
