"""Detector blinding: linear threshold detectors under CW light, what attenuation reveals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.interfaces.units import db_to_transmission
from sims.twins import SimDetector
from sims.world import World
from sims.world.blinding import photon_energy_j, trigger_clicks
from tests.sims.world.world_helpers import collect, quiet_world, sifted_errors

DARK_HZ = 1000.0


def _world(dead_time_ns: float = 50.0, **eve: float | bool) -> World:
    return quiet_world(
        eve={"blinding": True, "blinding_detection_efficiency": 0.5, **eve},
        detectors={"dark_count_rate_hz": DARK_HZ, "dead_time_ns": dead_time_ns},
        switch={"insertion_loss_db": 0.7, "crosstalk_db": -50.0},
    )


def test_blinded_detectors_click_only_on_eves_triggers_without_errors() -> None:
    world = _world()
    channel, time_ps, _, stop_ps = collect(world, "bob", 0.002)
    errors, sifted = sifted_errors(world, channel, time_ps, stop_ps)
    assert errors == 0 and sifted > 10_000  # Eve's faked states, no darks, no misalignment


def test_laser_off_blinded_detectors_count_nothing_not_even_darks() -> None:
    world = _world()
    world.set_laser_enabled(False)
    assert world.detector_count_rates_hz(0.05) == [0.0, 0.0, 0.0, 0.0]
    world.set_blinding(False)
    rates = world.detector_count_rates_hz(0.05)
    n = DARK_HZ * 0.05
    assert all(abs(r * 0.05 - n) < 5 * math.sqrt(n) for r in rates)


def test_switch_attenuation_releases_the_detectors_which_count_the_cw_light() -> None:
    world = _world()
    world.set_laser_enabled(False)  # no triggers: only the CW light's photons count
    world.set_switch_port(4)  # parking port: Bob's receiver sees the -50 dB crosstalk only
    t_s = 0.01
    rates = world.detector_count_rates_hz(t_s)
    eve = world.settings.eve
    # CW power per detector: Eve's power x switch (0.7 dB insertion + 50 dB crosstalk) / 4.
    power_w = eve.blinding_power_uw * 1e-6 * db_to_transmission(50.7) / 4
    in_hz = power_w / photon_energy_j(1550.0) * 0.5 + DARK_HZ
    dead_s = 50e-9
    expected = in_hz / (1.0 + in_hz * dead_s)  # non-paralyzable dead time
    for rate in rates:
        assert abs(rate - expected) < 5 * math.sqrt(expected / t_s)
    assert min(rates) > 100 * DARK_HZ  # far above the darks a parked detector should show


def test_strong_cw_keeps_the_detectors_blind_through_the_attenuation() -> None:
    world = _world(blinding_power_uw=1.0e5)
    world.set_switch_port(4)
    assert world.detector_count_rates_hz(0.05) == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("margin", [1.5, 2.5])
def test_trigger_margin_above_two_clicks_both_bases(margin: float) -> None:
    world = _world(dead_time_ns=0.0, blinding_trigger_margin=margin)
    _, time_ps, _, stop_ps = collect(world, "bob", 0.001)
    # Above twice the threshold the other basis's detectors fire too: three clicks a trigger.
    n_pulses = stop_ps / world.period_ps
    per_trigger = len(time_ps) / (n_pulses * (1.0 - math.exp(-0.2 * 0.5)))
    assert abs(per_trigger - (1.0 if margin < 2 else 3.0)) < 0.1 * per_trigger


async def test_detector_current_rises_with_the_blinding_light() -> None:
    world = _world()
    twin = SimDetector("det", world)
    async with twin:
        blinded = await twin.health()
        world.set_blinding(False)
        clear = await twin.health()
    per_detector_w = 1e-6 * db_to_transmission(0.7) / 4  # 1 uW default, 0 dB receiver loss
    for i in range(4):
        assert clear.readings[f"ch{i}_current_ua"] == clear.readings[f"ch{i}_bias_ua"] == 12.0
        rise = blinded.readings[f"ch{i}_current_ua"] - blinded.readings[f"ch{i}_bias_ua"]
        assert rise == pytest.approx(per_detector_w * 1e6)


@pytest.mark.parametrize(
    "fires",
    [
        np.eye(4, dtype=np.bool_),  # each state fires its own detector
        np.eye(4, dtype=np.bool_)[[1, 0, 3, 2]],
        np.zeros((4, 4), dtype=np.bool_),  # not blinded: no clicks
        np.diag([True, False, True, True]),  # one state fires nothing
        np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.bool_),
    ],
)
def test_trigger_clicks_are_the_table_s_clicks_in_pulse_then_detector_order(
    fires: np.ndarray,
) -> None:
    rng = np.random.default_rng(5)
    index = np.sort(rng.choice(10**6, 5000, replace=False)).astype(np.int64)
    state = rng.integers(0, 4, index.size).astype(np.uint8)
    expected = [
        (int(i), d) for i, s in zip(index, state, strict=True) for d in range(4) if fires[s, d]
    ]
    clicked, detector = trigger_clicks(index, state, fires)
    assert detector.dtype == np.uint8
    assert list(zip(clicked.tolist(), detector.tolist(), strict=True)) == expected
