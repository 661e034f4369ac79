"""Twins really act on the shared world: safe states, health, clock, and the QBER link."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.interfaces import InstrumentTimeout
from sims.twins import (
    SimDetector,
    SimLaser,
    SimOpticalSwitch,
    SimPolarizationController,
    SimTimeTagger,
)
from tests.sims.twins.twin_helpers import binomial_band, build, quiet_world, sifted_errors

DARK_RATE_HZ = 100.0  # the world default per detector


def poisson_ceiling(mean: float, sigmas: float = 6.0) -> float:
    """A count that a Poisson variable of this mean exceeds with negligible probability."""
    return mean + sigmas * math.sqrt(mean) + 1.0


async def test_laser_safe_state_leaves_only_dark_counts() -> None:
    world = quiet_world()
    laser, detector = build(SimLaser, "laser", world), build(SimDetector, "det", world)
    async with laser, detector:
        lit = await detector.get_count_rates_hz(0.001)
        await laser.safe_state()
        integration_s = 0.5
        dark = await detector.get_count_rates_hz(integration_s)
    assert world.snapshot()["laser"]["enabled"] is False
    assert min(lit) > 1.0e5  # light reaches every detector when on
    expected = 4 * DARK_RATE_HZ * integration_s
    assert sum(dark) * integration_s <= poisson_ceiling(expected)


async def test_detector_safe_state_silences_every_channel() -> None:
    world = quiet_world()
    detector = build(SimDetector, "det", world)
    async with detector:
        await detector.safe_state()
        rates = await detector.get_count_rates_hz(0.01)
    assert rates == [0.0, 0.0, 0.0, 0.0]
    assert [d["enabled"] for d in world.snapshot()["detectors"]] == [False] * 4


async def test_switch_parking_cuts_bobs_light_to_crosstalk() -> None:
    world = quiet_world()
    switch, detector = build(SimOpticalSwitch, "switch", world), build(SimDetector, "d", world)
    async with switch, detector:
        on_port = sum(await detector.get_count_rates_hz(0.002))
        await switch.safe_state()
        parked = sum(await detector.get_count_rates_hz(0.02))
    assert world.switch_port() == world.settings.switch.parking_port
    # -50 dB crosstalk: the light part falls by 1e5; darks (400 Hz) remain.
    assert parked < on_port * 1e-4 + poisson_ceiling(4 * DARK_RATE_HZ * 0.02) / 0.02


async def test_polarization_safe_state_zeroes_the_world_controller() -> None:
    world = quiet_world()
    pc = build(SimPolarizationController, "pc", world, voltages_mv=[1000, 2000, -3000, 4000])
    async with pc:
        await pc.safe_state()
    assert world.pc_voltages_mv() == [0.0, 0.0, 0.0, 0.0]


async def test_latched_detector_is_unhealthy_with_the_reason() -> None:
    world = quiet_world()
    detector = build(SimDetector, "det", world)
    async with detector:
        assert (await detector.health()).ok
        world.latch_detector(1)
        health = await detector.health()
        assert not health.ok
        assert "channel 1 (Z1)" in health.detail
        assert health.readings["ch1_latched"] is True
        assert await detector.is_latched(1)
        rates = await detector.get_count_rates_hz(0.001)
        assert rates[1] == 0.0 and rates[0] > 0.0
        await detector.reset_latch(1)
        assert (await detector.health()).ok
        assert (await detector.get_count_rates_hz(0.001))[1] > 0.0


async def test_read_batch_advances_sim_time_by_the_batch() -> None:
    world = quiet_world()
    tagger = build(SimTimeTagger, "tb", world, side="bob")
    async with tagger:
        await tagger.start_stream()
        t0_s = world.clock.now_s()
        batches = [await tagger.read_batch(timeout_s=1.0) for _ in range(5)]
        elapsed_s = world.clock.now_s() - t0_s
    covered_ps = batches[-1].stop_ps - batches[0].start_ps
    assert elapsed_s > 0.0
    assert math.isclose(elapsed_s, covered_ps * 1e-12, rel_tol=0.05)
    assert all(len(b) > 0 for b in batches)


async def test_read_batch_without_stream_times_out_in_sim_time_only() -> None:
    world = quiet_world()
    tagger = build(SimTimeTagger, "tb", world, side="bob")
    async with tagger:
        t0_s = world.clock.now_s()
        with pytest.raises(InstrumentTimeout) as caught:
            await tagger.read_batch(timeout_s=30.0)
    assert (caught.value.instrument, caught.value.command) == ("tb", "read_batch")
    assert math.isclose(world.clock.now_s() - t0_s, 30.0, rel_tol=1e-9)


def expected_qber(e_det: float, voltage_mv: float, v_pi_mv: float) -> float:
    """QBER with squeezer 2 (45 degree axis) at ``voltage_mv`` and everything else aligned.

    Retardance delta = pi V / V_pi about s2 leaves X states alone and turns Z states by
    delta, so Z errs with sin^2(delta / 2) and X does not: averaged over equal bases,
    e_det + (1 - 2 e_det) sin^2(delta / 2) / 2 (dark counts are 1e-5 of clicks here).
    """
    delta = math.pi * voltage_mv / v_pi_mv
    return e_det + (1.0 - 2.0 * e_det) * math.sin(delta / 2.0) ** 2 / 2.0


async def test_turning_bobs_controller_changes_the_qber_bobs_tagger_sees() -> None:
    world = quiet_world()
    pc = build(SimPolarizationController, "pc-bob", world)
    tagger = build(SimTimeTagger, "tagger-bob", world, side="bob")
    e_det = world.settings.receiver.misalignment
    v_pi = world.settings.polarization_controller.v_pi_mv
    measured = {}
    async with pc, tagger:
        await tagger.start_stream()
        for voltage_mv in (0.0, 500.0, 1000.0, 2000.0):
            await pc.set_voltages_mv([0.0, voltage_mv, 0.0, 0.0])
            batches = []
            while sum(len(b) for b in batches) < 60_000:
                batches.append(await tagger.read_batch(timeout_s=1.0))
            measured[voltage_mv] = sifted_errors(world, batches)
    for voltage_mv, (errors, sifted) in measured.items():
        expected = expected_qber(e_det, voltage_mv, v_pi)
        assert abs(errors / sifted - expected) < binomial_band(expected, sifted), (
            voltage_mv,
            errors / sifted,
            expected,
        )
    qbers = [e / n for e, n in measured.values()]
    assert np.all(np.diff(qbers) > 0)
