"""Cascade corrects all errors, discloses close to the Shannon bound, counts round trips."""

import numpy as np
import pytest

from labctl.qkd.cascade.protocol import CascadeAlice, CascadeBob, CascadeRequest, reconcile
from labctl.qkd.cascade.schedule import CascadeSchedule, public_order
from labctl.qkd.errors import ReconciliationError
from labctl.qkd.secret import SecretBits


def _frame(n: int, q: float, seed: int) -> tuple[SecretBits, SecretBits, int]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    err = (rng.random(n) < q).astype(np.uint8)
    return SecretBits(a), SecretBits(a ^ err), int(err.sum())


@pytest.mark.parametrize("q", [0.01, 0.05, 0.10])
def test_optimized_cascade_corrects_and_beats_original(q: float) -> None:
    effs_opt, effs_orig = [], []
    for seed in range(6):
        a, b, errors = _frame(20_000, q, seed)
        actual_q = errors / 20_000
        opt = reconcile(a, b, CascadeSchedule.create(20_000, q, seed, "optimized"))
        orig = reconcile(a, b, CascadeSchedule.create(20_000, q, seed, "original"))
        assert opt.key == a
        assert opt.stats.corrected_bits == errors
        effs_opt.append(opt.stats.efficiency(actual_q))
        effs_orig.append(orig.stats.efficiency(actual_q))
    assert 1.0 < np.mean(effs_opt) < 1.12
    assert np.mean(effs_opt) < np.mean(effs_orig)


def test_round_trips_per_pass_are_logarithmic() -> None:
    a, b, _ = _frame(4096, 0.02, 9)
    sched = CascadeSchedule.create(4096, 0.02, 1)
    out = reconcile(a, b, sched)
    # Pass 1: one message for block parities, then one per halving of a 64-bit block.
    assert out.stats.search_rounds_per_pass[0] <= int(np.log2(sched.block_sizes[0]))
    assert out.stats.round_trips >= sched.passes


def test_error_free_frame_discloses_only_block_parities() -> None:
    a, _, _ = _frame(8192, 0.0, 1)
    sched = CascadeSchedule.create(8192, 0.02, 3)
    out = reconcile(a, a, sched)
    expected = sum(sched.block_count(j) for j in range(sched.passes)) - (sched.passes - 1)
    assert out.stats.disclosed_bits == expected and out.key == a


@pytest.mark.parametrize("compiled", [True, False])
def test_messages_round_trip_bytes_and_alice_rejects_bad_queries(compiled: bool) -> None:
    a, _, _ = _frame(1000, 0.0, 2)
    sched = CascadeSchedule.create(1000, 0.05, 4)
    alice = CascadeAlice(a, sched, compiled=compiled)
    bad = [
        ([0], [10], [2000], "outside the frame"),
        ([0], [-1], [5], "outside the frame"),
        ([1, 0], [7, 9], [20, 9], "outside the frame"),
        ([14], [0], [5], "query for pass >= 14"),
    ]
    for passes, start, end, error in bad:
        req = CascadeRequest(1, np.array(passes, np.uint8), np.array(start), np.array(end))
        with pytest.raises(ReconciliationError, match=error):
            alice.handle(CascadeRequest.from_bytes(req.to_bytes()))
    assert repr(alice) == "CascadeAlice(n_bits=1000, passes=14)"


@pytest.mark.parametrize("sizes", [(7, 13, 1, 999), (3, 1000, 1, 2), (1000,)])
def test_odd_block_sizes_and_one_bit_blocks_still_correct_every_error(
    sizes: tuple[int, ...],
) -> None:
    a, b, errors = _frame(1000, 0.05, 11)
    out = reconcile(a, b, CascadeSchedule(1000, sizes, seed=5))
    if sizes[0] == 1000:  # one block, one pass: only an odd number of errors is visible
        assert out.stats.corrected_bits == errors % 2
    else:
        assert out.key == a and out.stats.corrected_bits == errors


def test_alice_answers_range_queries_of_a_pass_not_yet_announced() -> None:
    a, _, _ = _frame(500, 0.0, 4)
    sched = CascadeSchedule.create(500, 0.05, 8)
    alice = CascadeAlice(a, sched)
    order = sched.shuffle(3)[0]
    req = CascadeRequest(1, np.array([3, 0], np.uint8), np.array([10, 0]), np.array([250, 500]))
    got = alice.handle(CascadeRequest.from_bytes(req.to_bytes())).parities
    bits = a.bits
    assert got.tolist() == [int(bits[order[10:250]].sum()) % 2, int(bits.sum()) % 2]


def test_public_shuffles_are_int32_permutations_with_their_inverse() -> None:
    sched = CascadeSchedule.create(5000, 0.03, 77)
    order, position = sched.shuffle(2)
    assert order.dtype == np.int32 and np.array_equal(np.sort(order), np.arange(5000))
    assert np.array_equal(position[order], np.arange(5000))
    # The compiled Fisher-Yates and the pure-Python oracle give the same permutation.
    assert np.array_equal(order, public_order(5000, 77, 2, compiled=False))
    with pytest.raises(ValueError, match=r"n_bits must be in \[1, 2\^31\)"):
        CascadeSchedule(2**31, (4,), 1)


def test_public_shuffles_are_uniform_over_permutations() -> None:
    # 12,000 seeds over the 120 permutations of 5 items: 100 expected each. Chi-square
    # with 119 degrees of freedom exceeds 190 with probability < 1e-4.
    counts: dict[tuple[int, ...], int] = {}
    for seed in range(12_000):
        key = tuple(public_order(5, seed, 1).tolist())
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 120
    chi2 = sum((c - 100) ** 2 / 100 for c in counts.values())
    assert chi2 < 190


@pytest.mark.parametrize("n,q", [(2000, 0.01), (5000, 0.08), (30_000, 0.03)])
def test_compiled_and_numpy_paths_send_the_same_messages(n: int, q: float) -> None:
    a, b, _ = _frame(n, q, 11)
    sched = CascadeSchedule.create(n, q, 21)
    outcomes = []
    for compiled in (True, False):
        alice, requests = CascadeAlice(a, sched, compiled=compiled), []
        protocol = CascadeBob(b, sched, compiled=compiled).run()
        try:
            request = next(protocol)
            while True:
                # Queries of one round trip are independent: compare them as a set.
                queries = zip(request.pass_index.tolist(), request.start, request.end, strict=False)
                requests.append((request.kind, sorted((p, int(s), int(e)) for p, s, e in queries)))
                request = protocol.send(alice.handle(request))
        except StopIteration as done:
            outcomes.append((done.value, requests))
    (fast, fast_msgs), (slow, slow_msgs) = outcomes
    assert fast.key == slow.key == a
    assert fast_msgs == slow_msgs  # same queries in every round trip
    assert fast.stats.disclosed_bits == slow.stats.disclosed_bits
    assert fast.stats.round_trips == slow.stats.round_trips
