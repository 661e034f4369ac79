"""Smoke test through the real drivers: laser on, switch routed, detectors armed, tags flow
at the rate the physics predicts (closed form from the world settings, Poisson tolerance)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labctl.interfaces.tags import TagBatch
from tests.sims.wire.wired import wired_station

KINDS = ["laser", "polarization_controller", "detector", "time_tagger", "optical_switch"]
SMOKE_WORLD: dict[str, Any] = {
    "seed": 33,
    "slice_max_s": 0.002,
    "source": {"rate_hz": 1.0e8, "nominal_power_mw": 1.0},
    "switch": {"initial_port": 4, "bob_port": 1, "parking_port": 4},
    # No dead time, afterpulses or tagger limits, so the closed form below is exact.
    "detectors": {"dead_time_ns": 0.0, "afterpulse_probability": 0.0, "efficiency": 0.8},
    "taggers": {"bob": {"max_rate_hz": 1.0e10, "buffer_s": 10.0}},
}
# World defaults these settings rely on (sims/world/API.md).
FIBER_KM, FIBER_DB_PER_KM, SWITCH_DB, OPTICS_DB = 25.0, 0.2, 0.7, 1.0
MISALIGNMENT, BOB_Z, ALICE_Z, DARK_HZ = 0.01, 0.5, 0.5, 100.0
INTENSITIES = [(0.5, 0.8), (0.1, 0.1), (0.0, 0.1)]  # (mu, probability)
POWER_MW = 1.0


def expected_rates_hz(rate_hz: float, power_mw: float) -> list[float]:
    """Click rate of Z0, Z1, X0, X1 with no rotation: average over Alice's states."""
    transmittance = 10 ** (-(FIBER_KM * FIBER_DB_PER_KM + SWITCH_DB + OPTICS_DB) / 10)
    eta = 0.8
    rates = []
    for detector in range(4):
        z_detector = detector < 2
        split = BOB_Z if z_detector else 1 - BOB_Z
        p_click = 0.0
        for mu, probability in INTENSITIES:
            mean = mu * power_mw * transmittance * split * eta
            # Alice's basis matches this analyser: her bit decides 1-e or e; else 1/2.
            match_z = ALICE_Z if z_detector else 1 - ALICE_Z
            matched = 0.5 * (-math.expm1(-mean * (1 - MISALIGNMENT)))
            matched += 0.5 * (-math.expm1(-mean * MISALIGNMENT))
            crossed = -math.expm1(-mean * 0.5)
            p_click += probability * (match_z * matched + (1 - match_z) * crossed)
        rates.append(rate_hz * p_click + DARK_HZ)
    return rates


async def test_tags_arrive_at_the_predicted_rates() -> None:
    async with wired_station(
        KINDS, world_settings=SMOKE_WORLD, driver_settings={"detector": {}}
    ) as setup:
        laser = setup.drivers["laser"]
        switch = setup.drivers["switch"]
        detectors = setup.drivers["detectors"]
        tagger = setup.drivers["tagger-bob"]
        pc = setup.drivers["pc-bob"]

        await laser.set_power_mw(POWER_MW)
        await laser.set_output(True)
        await switch.set_port(1)
        await pc.set_voltages_mv([0.0, 0.0, 0.0, 0.0])
        for channel in range(detectors.n_channels):
            await detectors.set_bias_ua(channel, 12.0)
            await detectors.set_enabled(channel, True)
        # What the drivers did reached the world through the wire.
        world = setup.world.snapshot()
        assert world["laser"]["enabled"] is True
        assert setup.world.switch_port() == 1
        assert all(d["enabled"] for d in world["detectors"])

        await tagger.start_stream()
        batches: list[TagBatch] = []
        while sum(len(b) for b in batches) < 300_000:
            batches.append(await tagger.read_batch(timeout_s=5.0))
        await tagger.stop_stream()

    assert not any(b.overflow for b in batches)
    duration_s = sum(b.duration_ps for b in batches) * 1e-12
    counts = np.sum([b.counts_per_channel(4) for b in batches], axis=0)
    for channel, rate_hz in enumerate(expected_rates_hz(1.0e8, POWER_MW)):
        expected = rate_hz * duration_s
        # Clicks are Bernoulli per pulse: variance below the Poisson mean; 5 sigma.
        assert abs(counts[channel] - expected) < 5 * math.sqrt(expected), (
            f"channel {channel}: {counts[channel]} tags, closed form {expected:.0f}"
        )
