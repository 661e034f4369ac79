"""K frames in lock-step: per frame, exactly what the frame gets when reconciled alone."""

import asyncio
from collections.abc import Generator

import numpy as np
import pytest

from labctl.qkd.auth.channel import memory_pair
from labctl.qkd.cascade.batch import CascadeBatchBob, batch_alice, reconcile_batch
from labctl.qkd.cascade.layout import FrameLayout
from labctl.qkd.cascade.link import run_bob_batch, serve_alice_batch
from labctl.qkd.cascade.protocol import (
    CascadeAlice,
    CascadeBob,
    CascadeReply,
    CascadeRequest,
    reconcile,
)
from labctl.qkd.cascade.schedule import CascadeSchedule
from labctl.qkd.errors import ReconciliationError
from labctl.qkd.secret import SecretBits

Query = tuple[int, int, int, int]
"""(kind, pass, start, end) of one query, positions relative to its frame."""


def _frames(n: int, rates: list[float], seed: int) -> tuple[list[SecretBits], list[SecretBits]]:
    rng = np.random.default_rng(seed)
    alice, bob = [], []
    for q in rates:
        a = rng.integers(0, 2, n, dtype=np.uint8)
        err = (rng.random(n) < q).astype(np.uint8)
        alice.append(SecretBits(a))
        bob.append(SecretBits(a ^ err))
    return alice, bob


def _record(
    protocol: Generator[CascadeRequest, CascadeReply, object], alice: CascadeAlice
) -> tuple[object, list[CascadeRequest]]:
    requests = []
    try:
        request = next(protocol)
        while True:
            requests.append(request)
            request = protocol.send(alice.handle(request))
    except StopIteration as done:
        return done.value, requests


def _per_frame(requests: list[CascadeRequest], layout: FrameLayout) -> list[list[set[Query]]]:
    """Each frame's non-empty round trips, queries shifted back into the frame."""
    out: list[list[set[Query]]] = [[] for _ in range(layout.frames)]
    for req in requests:
        passes = req.pass_index.astype(np.int64)
        if req.kind == 0:  # block parities of a pass: every frame takes part
            for rounds in out:
                rounds.append({(0, int(passes[0]), 0, 0)})
            continue
        stride = layout.frame_stride[passes]
        frame = req.start // stride
        for f in np.unique(frame):
            sel = frame == f
            shift = int(f) * stride[sel]
            out[int(f)].append(
                {
                    (1, int(p), int(s), int(e))
                    for p, s, e in zip(
                        passes[sel], req.start[sel] - shift, req.end[sel] - shift, strict=True
                    )
                }
            )
    return out


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize(("n", "q"), [(3000, 0.05), (2500, 0.01), (1000, 0.10)])
def test_each_frame_sends_the_queries_it_sends_alone(compiled: bool, n: int, q: float) -> None:
    # Mixed error rates (one frame error-free) and distinct seeds; n is not a multiple of
    # the block sizes, so every frame's last block is short and the layout pads.
    rates = [q, 0.0, 2 * q, q / 2, q]
    alice_keys, bob_keys = _frames(n, rates, seed=3)
    schedules = [CascadeSchedule.create(n, q, seed=100 + f) for f in range(len(rates))]
    layout = FrameLayout(schedules, compiled=compiled)
    assert int(layout.frame_stride[0]) > n  # padding exercised
    batch, requests = _record(
        CascadeBatchBob(bob_keys, schedules, layout=layout).run(),
        batch_alice(alice_keys, schedules, layout=layout),
    )
    seen = _per_frame(requests, layout)
    for f, (a, b, sched) in enumerate(zip(alice_keys, bob_keys, schedules, strict=True)):
        alone, alone_requests = _record(
            CascadeBob(b, sched, compiled=compiled).run(),
            CascadeAlice(a, sched, compiled=compiled),
        )
        single = _per_frame(alone_requests, FrameLayout((sched,)))[0]
        assert seen[f] == single  # same queries, round trip by round trip
        assert batch.keys[f] == alone.key == a  # type: ignore[attr-defined]
        assert batch.disclosed_bits[f] == alone.stats.disclosed_bits  # type: ignore[attr-defined]
        assert batch.corrected_bits[f] == alone.stats.corrected_bits  # type: ignore[attr-defined]
        assert batch.efficiency(f, 0.05) == alone.stats.efficiency(0.05)  # type: ignore[attr-defined]
    assert sum(batch.disclosed_bits) == batch.stats.disclosed_bits  # type: ignore[attr-defined]
    # Shared channel: one message per round trip for all frames.
    assert batch.stats.round_trips == len(requests)  # type: ignore[attr-defined]


def test_batch_equals_frames_alone_and_compiled_equals_numpy() -> None:
    n, q = 4000, 0.03
    alice_keys, bob_keys = _frames(n, [q] * 8, seed=5)
    schedules = [CascadeSchedule.create(n, q, seed=7)] * 4 + [
        CascadeSchedule.create(n, q, seed=8 + f) for f in range(4)
    ]
    fast = reconcile_batch(alice_keys, bob_keys, schedules)
    slow = reconcile_batch(alice_keys, bob_keys, schedules, compiled=False)
    assert fast.keys == slow.keys == tuple(alice_keys)
    assert fast.disclosed_bits == slow.disclosed_bits
    assert fast.stats.round_trips == slow.stats.round_trips
    alone = [reconcile(a, b, s) for a, b, s in zip(alice_keys, bob_keys, schedules, strict=True)]
    assert fast.disclosed_bits == tuple(o.stats.disclosed_bits for o in alone)
    # The batch waits for its slowest frame in every pass: at least the slowest frame's
    # round trips, at most the sum over frames.
    trips = [o.stats.round_trips for o in alone]
    assert max(trips) <= fast.stats.round_trips <= sum(trips)
    assert "frames=8" in repr(fast) and "0b" not in repr(fast)


@pytest.mark.parametrize("compiled", [True, False])
def test_alice_refuses_ranges_across_frames_or_into_padding(compiled: bool) -> None:
    n = 1000
    alice_keys, _ = _frames(n, [0.0] * 3, seed=1)
    schedules = [CascadeSchedule.create(n, 0.05, seed=f) for f in range(3)]
    alice = batch_alice(alice_keys, schedules, compiled=compiled)
    stride = -(-n // schedules[0].block_sizes[0]) * schedules[0].block_sizes[0]
    assert stride > n
    for start, end in ((n - 4, stride + 4), (n - 4, n + 1), (3 * stride - 2, 3 * stride + 2)):
        req = CascadeRequest(1, np.array([0], np.uint8), np.array([start]), np.array([end]))
        with pytest.raises(ReconciliationError, match="outside the frame"):
            alice.handle(req)
    # Inside frame 2 of pass 0 (no shuffle): the parity of those bits of Alice's frame 2.
    req = CascadeRequest(
        1, np.array([0], np.uint8), np.array([2 * stride + 10]), np.array([2 * stride + 90])
    )
    assert int(alice.handle(req).parities[0]) == int(alice_keys[2].bits[10:90].sum()) % 2
    assert "frames=3" in repr(alice)


def test_frames_must_share_length_and_block_sizes() -> None:
    with pytest.raises(ValueError, match="one length"):
        FrameLayout([CascadeSchedule.create(1000, 0.05, 1), CascadeSchedule.create(1001, 0.05, 1)])
    with pytest.raises(ValueError, match="one length"):
        FrameLayout([CascadeSchedule.create(1000, 0.05, 1), CascadeSchedule.create(1000, 0.01, 1)])
    a, _ = _frames(100, [0.0, 0.0], seed=2)
    with pytest.raises(ReconciliationError, match="expected 2 frames of 200"):
        CascadeBatchBob(a, [CascadeSchedule.create(200, 0.05, 1)] * 2)


async def test_batch_over_the_authenticated_channel() -> None:
    n, q = 2000, 0.04
    alice_keys, bob_keys = _frames(n, [q] * 6, seed=9)
    schedules = [CascadeSchedule.create(n, q, seed=40 + f) for f in range(6)]
    alice_ch, bob_ch = memory_pair(bytes(range(32)), timeout_s=10)
    served, outcome = await asyncio.gather(
        serve_alice_batch(alice_ch, alice_keys, schedules),
        run_bob_batch(bob_ch, bob_keys, schedules),
    )
    assert outcome.keys == tuple(alice_keys)
    assert served == outcome.stats.round_trips
    assert outcome.disclosed_bits == reconcile_batch(alice_keys, bob_keys, schedules).disclosed_bits


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("j", [1, 3])
def test_block_parities_after_a_range_query_of_an_unannounced_pass(compiled: bool, j: int) -> None:
    n = 1500
    alice_keys, _ = _frames(n, [0.0] * 3, seed=6)
    schedules = [CascadeSchedule.create(n, 0.05, seed=20 + f) for f in range(3)]
    early = batch_alice(alice_keys, schedules, compiled=compiled)
    stride = FrameLayout(schedules).frame_stride
    # Frame 1 of pass j: asking a range first builds Alice's prefix row of that pass ...
    start, end = int(stride[j]) + 5, int(stride[j]) + 60
    req = CascadeRequest(1, np.array([j], np.uint8), np.array([start]), np.array([end]))
    order = schedules[1].shuffle(j)[0]
    assert int(early.handle(req).parities[0]) == int(alice_keys[1].bits[order[5:60]].sum()) % 2
    # ... and block parities then come from it: the same as from the shuffled head.
    late = batch_alice(alice_keys, schedules, compiled=compiled)
    blocks = CascadeRequest.blocks(j)
    assert np.array_equal(early.handle(blocks).parities, late.handle(blocks).parities)
    assert early.handle(blocks).parities.size == 3 * (-(-n // schedules[0].block_sizes[j]) - 1)


def test_fresh_seeds_of_a_batch_get_each_frames_own_shuffle() -> None:
    # Seeds never used before: the layout shuffles them in one kernel call per pass.
    schedules = [CascadeSchedule.create(777, 0.03, seed=910_000 + f) for f in range(4)]
    schedules.append(schedules[1])  # a frame sharing a seed shares the permutation
    layout = FrameLayout(schedules)
    for j in (1, 5):
        orders = layout.orders(j)
        for f, sched in enumerate(schedules):
            assert np.array_equal(orders[f], sched.shuffle(j)[0])
            assert np.array_equal(layout.positions(j)[f], sched.shuffle(j)[1])
        assert orders[4] is orders[1]
