"""Fault injection: every fault kind, from the API and from config, at its sim time."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from labctl.interfaces import (
    ConfigError,
    ConnectionLost,
    InstrumentTimeout,
    ProtocolError,
    TagBatch,
)
from sims.faults import (
    AttackWindow,
    BlindingWindow,
    DetectorLatch,
    Disconnect,
    DriftJump,
    FaultSchedule,
    GarbledReply,
    TaggerOverflow,
    Timeout,
    parse_faults,
)
from sims.twins import SimDetector, SimLaser, SimTimeTagger
from tests.sims.twins.twin_helpers import binomial_band, build, quiet_world, sifted_errors


async def _read_until(tagger: SimTimeTagger, t_s: float) -> list[TagBatch]:
    """Bob's batches until sim time reaches ``t_s``."""
    batches = []
    while tagger.clock.now_s() < t_s:
        batches.append(await tagger.read_batch(timeout_s=1.0))
    return batches


def _qber_between(world, batches: list[TagBatch], t0_s: float, t1_s: float) -> tuple[int, int]:
    """Sifted (errors, count) of the batches lying wholly in [t0_s, t1_s] of Bob's clock."""
    delay_ps = world.truth.fiber_delay_ps
    inside = [
        b
        for b in batches
        if b.start_ps >= t0_s * 1e12 + delay_ps and b.stop_ps <= t1_s * 1e12 + delay_ps
    ]
    return sifted_errors(world, inside)


# ---------------------------------------------------------------- link faults


async def test_disconnect_drops_the_link_then_allows_reconnect() -> None:
    world = quiet_world()
    laser = build(SimLaser, "laser", world)
    FaultSchedule.for_world(world).schedule(
        Disconnect(at_s=1.0, duration_s=2.0, instrument="laser")
    )
    async with laser:
        await laser.set_power_mw(1.0)
        world.clock.advance_to(1.5)
        with pytest.raises(ConnectionLost) as caught:
            await laser.get_power_mw()
        assert (caught.value.instrument, caught.value.command) == ("laser", "get_power_mw")
        with pytest.raises(ConnectionLost, match="until sim t=3 s"):
            await laser.connect()
        world.clock.advance_to(3.0)
        await laser.connect()
        assert await laser.get_power_mw() == 1.0


async def test_a_disconnect_nobody_saw_still_breaks_the_link() -> None:
    world = quiet_world()
    laser = build(SimLaser, "laser", world)
    FaultSchedule.for_world(world).schedule(
        Disconnect(at_s=1.0, duration_s=0.5, instrument="laser")
    )
    async with laser:
        world.clock.advance_to(2.0)  # the window passed while nobody talked
        with pytest.raises(ConnectionLost, match="link dropped"):
            await laser.get_output()
        await laser.connect()
        await laser.get_output()


async def test_disconnect_hits_only_its_instrument() -> None:
    world = quiet_world()
    laser, detector = build(SimLaser, "laser", world), build(SimDetector, "det", world)
    FaultSchedule.for_world(world).schedule(Disconnect(at_s=0.0, instrument="laser"))
    async with detector:
        assert await detector.get_enabled(0) is True
    with pytest.raises(ConnectionLost):
        await laser.connect()


async def test_timeout_waits_in_sim_time_not_wall_time() -> None:
    world = quiet_world()
    laser = build(SimLaser, "laser", world, timeout_s=60.0)
    FaultSchedule.for_world(world).schedule(
        Timeout(at_s=0.5, duration_s=1.0, instrument="laser", count=1)
    )
    async with laser:
        world.clock.advance_to(0.75)
        wall_start = time.monotonic()
        with pytest.raises(InstrumentTimeout) as caught:
            await laser.set_output(True)
        assert time.monotonic() - wall_start < 5.0
        assert world.clock.now_s() == pytest.approx(60.75)
        assert (caught.value.instrument, caught.value.command) == ("laser", "set_output")
        await laser.set_output(True)  # count=1: the next call is answered
        assert await laser.get_output() is True


async def test_read_batch_timeout_uses_the_callers_timeout() -> None:
    world = quiet_world()
    tagger = build(SimTimeTagger, "tb", world, side="bob")
    FaultSchedule.for_world(world).schedule(Timeout(at_s=0.0, duration_s=10.0, instrument="tb"))
    async with tagger:  # connect is not hit by a Timeout: only commands are
        with pytest.raises(InstrumentTimeout, match=r"within 2\.5 s"):
            await tagger.read_batch(timeout_s=2.5)
    assert world.clock.now_s() == pytest.approx(2.5)


async def test_garbled_reply_raises_protocol_error_once() -> None:
    world = quiet_world()
    detector = build(SimDetector, "det", world)
    FaultSchedule.for_world(world).schedule(GarbledReply(at_s=0.0, instrument="det"))
    async with detector:
        with pytest.raises(ProtocolError) as caught:
            await detector.get_bias_ua(0)
        assert (caught.value.instrument, caught.value.command) == ("det", "get_bias_ua")
        assert await detector.get_bias_ua(0) == 12.0


# ---------------------------------------------------------------- world faults


async def test_detector_latch_at_its_sim_time() -> None:
    world = quiet_world()
    detector = build(SimDetector, "det", world)
    schedule = FaultSchedule.for_world(world)
    schedule.schedule(DetectorLatch(at_s=0.01, detector=2))
    async with detector:
        assert not await detector.is_latched(2)
        rates = await detector.get_count_rates_hz(0.02)  # crosses t = 0.01 s
        assert await detector.is_latched(2)
        assert schedule.fired[0][0] == pytest.approx(0.01)
        assert not (await detector.health()).ok
        # Latched half of the window: about half the counts of a neighbour of equal efficiency.
        assert rates[2] == pytest.approx(rates[3] / 2, rel=0.05)
        assert (await detector.get_count_rates_hz(0.001))[2] == 0.0


async def test_drift_jump_changes_the_qber_from_its_sim_time() -> None:
    world = quiet_world()
    tagger = build(SimTimeTagger, "tb", world, side="bob")
    theta = math.pi / 3
    FaultSchedule.for_world(world).schedule(
        DriftJump(at_s=0.02, angle_rad=theta, axis=(0.0, 0.0, 1.0))
    )
    async with tagger:
        await tagger.start_stream()
        batches = await _read_until(tagger, 0.04)
    e_det = world.settings.receiver.misalignment
    before_e, before_n = _qber_between(world, batches, 0.0, 0.02)
    after_e, after_n = _qber_between(world, batches, 0.02, 0.04)
    # A rotation by theta about s3 turns both H/V and D/A states: QBER sin^2(theta / 2).
    expected_after = e_det + (1 - 2 * e_det) * math.sin(theta / 2) ** 2
    assert abs(before_e / before_n - e_det) < binomial_band(e_det, before_n)
    assert abs(after_e / after_n - expected_after) < binomial_band(expected_after, after_n)


async def test_attack_window_gives_intercept_resend_qber_inside_only() -> None:
    world = quiet_world()
    tagger = build(SimTimeTagger, "tb", world, side="bob")
    FaultSchedule.for_world(world).schedule(AttackWindow(at_s=0.01, until_s=0.02, fraction=1.0))
    async with tagger:
        await tagger.start_stream()
        batches = await _read_until(tagger, 0.03)
    e_det = world.settings.receiver.misalignment
    # Eve resends in a random basis: a quarter of sifted bits flip, on top of e_det.
    expected_in = e_det + (1 - 2 * e_det) * 0.25
    for t0, t1, expected in ((0.0, 0.01, e_det), (0.01, 0.02, expected_in), (0.02, 0.03, e_det)):
        errors, sifted = _qber_between(world, batches, t0, t1)
        assert abs(errors / sifted - expected) < binomial_band(expected, sifted), (t0, t1)
    assert world.snapshot()["eve"]["fraction"] == 0.0


async def test_blinding_window_blinds_the_detectors_inside_only() -> None:
    world = quiet_world()
    detector = build(SimDetector, "det", world)
    window = BlindingWindow(at_s=0.01, until_s=0.02)
    FaultSchedule.for_world(world).schedule(window)
    async with detector:
        before = await detector.health()
        world.clock.advance_to(0.015)
        inside = await detector.health()
        world.clock.advance_to(0.025)
        after = await detector.health()
    rise = [
        h.readings["ch0_current_ua"] - h.readings["ch0_bias_ua"] for h in (before, inside, after)
    ]
    assert rise[0] == 0.0 and rise[1] > 0.05 and rise[2] == 0.0
    assert FaultSchedule.for_world(world).fired == [(0.01, window), (0.02, window)]
    assert parse_faults([{"kind": "blinding", "at_s": 1, "until_s": 2}], where="faults") == [
        BlindingWindow(at_s=1.0, until_s=2.0)
    ]
    with pytest.raises(ConfigError, match="until_s"):
        parse_faults([{"kind": "blinding", "at_s": 2, "until_s": 1}], where="faults")


async def test_tagger_overflow_drops_tags_and_flags_the_batch() -> None:
    world = quiet_world()
    tagger = build(SimTimeTagger, "tb", world, side="bob")
    FaultSchedule.for_world(world).schedule(TaggerOverflow(at_s=0.01, side="bob", duration_s=0.002))
    async with tagger:
        await tagger.start_stream()
        batches = await _read_until(tagger, 0.02)
        health = await tagger.health()
    delay_ps = world.truth.fiber_delay_ps
    lo_ps, hi_ps = 0.01e12 + delay_ps, 0.012e12 + delay_ps
    times = np.concatenate([b.time_ps for b in batches])
    assert np.count_nonzero((times >= lo_ps) & (times < hi_ps)) == 0
    flagged = [b for b in batches if b.overflow]
    assert flagged and all(b.start_ps < hi_ps and b.stop_ps > lo_ps for b in flagged)
    missed = sum(b.missed_events for b in flagged)
    # The dropped tags are the ones the 2 ms window would have held at the steady rate.
    steady = [b for b in batches if not b.overflow and b.stop_ps <= lo_ps]
    rate_per_ps = sum(len(b) for b in steady) / sum(b.duration_ps for b in steady)
    expected = rate_per_ps * (hi_ps - lo_ps)
    assert missed == pytest.approx(expected, rel=0.05)
    assert health.readings["missed_events"] == missed


# ---------------------------------------------------------------- config and API


def test_faults_from_twin_settings_default_to_that_twin() -> None:
    world = quiet_world()
    build(
        SimLaser,
        "laser",
        world,
        faults=[
            {"kind": "disconnect", "at_s": 5, "duration_s": 1},
            {"kind": "garbled", "at_s": 6, "instrument": "det"},
            {"kind": "latch", "at_s": 7, "detector": "X0"},
            {"kind": "attack", "at_s": 8, "until_s": 9, "fraction": 0.5},
            {"kind": "drift_jump", "at_s": 8, "angle_rad": 0.3, "axis": [1, 0, 0]},
            {"kind": "overflow", "at_s": 9, "side": "alice", "duration_s": 0.1},
            {"kind": "timeout", "at_s": 10, "duration_s": 2, "count": 3},
        ],
    )
    schedule = FaultSchedule.for_world(world)
    assert [(f.kind, f.instrument) for f in schedule.instrument_faults] == [
        ("disconnect", "laser"),
        ("garbled", "det"),
        ("timeout", "laser"),
    ]
    pending = schedule.pending
    assert (7.0, DetectorLatch(at_s=7.0, detector=2)) in pending
    assert (8.0, DriftJump(at_s=8.0, angle_rad=0.3, axis=(1.0, 0.0, 0.0))) in pending
    attack = AttackWindow(at_s=8.0, until_s=9.0, fraction=0.5)
    assert (8.0, attack) in pending and (9.0, attack) in pending  # on, then off
    assert len(pending) == 5


@pytest.mark.parametrize(
    ("entry", "field", "text"),
    [
        ({"kind": "meltdown", "at_s": 1}, "faults[0].kind", "unknown fault kind"),
        ({"kind": "latch", "detector": 1}, "faults[0].at_s", "missing"),
        ({"kind": "latch", "at_s": 1, "channel": 1}, "faults[0].channel", "unknown field"),
        ({"kind": "latch", "at_s": 1, "detector": "Z9"}, "faults[0].detector", "Z9"),
        ({"kind": "attack", "at_s": 2, "until_s": 1}, "faults[0]", "until_s"),
        ({"kind": "attack", "at_s": 1, "fraction": 1.5}, "faults[0]", "fraction"),
        ({"kind": "overflow", "at_s": 1, "side": "eve"}, "faults[0]", "side"),
        ({"kind": "timeout", "at_s": -1}, "faults[0]", "at_s"),
        ({"kind": "timeout", "at_s": "soon"}, "faults[0].at_s", "number"),
        ("disconnect", "faults[0]", "mapping"),
    ],
)
def test_bad_fault_entries_name_the_field(entry: object, field: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(SimLaser, "laser", quiet_world(), faults=[entry])
    assert caught.value.field == f"instruments.laser.settings.{field}"
    assert text in str(caught.value)


def test_api_link_fault_must_name_its_instrument() -> None:
    schedule = FaultSchedule.for_world(quiet_world())
    with pytest.raises(ValueError, match="instrument"):
        schedule.schedule(Disconnect(at_s=1.0))


def test_each_world_has_its_own_schedule() -> None:
    one, two = quiet_world(), quiet_world()
    assert FaultSchedule.for_world(one) is FaultSchedule.for_world(one)
    assert FaultSchedule.for_world(one) is not FaultSchedule.for_world(two)


def test_parse_faults_accepts_nothing() -> None:
    assert parse_faults(None, where="faults") == []
    with pytest.raises(ConfigError, match="list"):
        parse_faults({"kind": "latch"}, where="faults")
