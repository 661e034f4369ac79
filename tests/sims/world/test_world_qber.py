"""QBER against closed forms: misalignment sin^2 law, dark floor, controller, eavesdroppers."""

from __future__ import annotations

import math

import pytest

from sims.world import World
from tests.sims.world.world_helpers import collect, quiet_world, sifted_errors


def _qber(world: World, duration_s: float) -> tuple[int, int]:
    channel, time_ps, _, stop_ps = collect(world, "bob", duration_s)
    return sifted_errors(world, channel, time_ps, stop_ps)


def _assert_rate(errors: int, sifted: int, expected: float, n_sigma: float = 5.0) -> None:
    sigma = math.sqrt(expected * (1.0 - expected) / sifted) + 1.0 / sifted
    measured = errors / sifted
    assert abs(measured - expected) <= n_sigma * sigma, (
        f"QBER {measured:.5f} from {sifted} sifted, expected {expected:.5f}"
    )


@pytest.mark.parametrize("theta_deg", [0.0, 10.0, 25.0, 45.0])
def test_qber_follows_sin_squared_of_misalignment_angle(theta_deg: float) -> None:
    e_det = 0.02
    world = quiet_world(receiver={"misalignment": e_det})
    theta = math.radians(theta_deg)
    # A real-space rotation of linear polarization by theta is 2 theta about s3.
    world.jump_polarization(2.0 * theta, axis=(0.0, 0.0, 1.0))
    errors, sifted = _qber(world, 0.004)
    assert sifted > 20_000
    _assert_rate(errors, sifted, e_det + (1.0 - 2.0 * e_det) * math.sin(theta) ** 2)


def test_dark_counts_set_a_qber_floor() -> None:
    e_det, dark_hz, mu, eta = 0.01, 3.0e5, 0.05, 0.5
    world = quiet_world(
        source={"intensities": {"signal": {"mu": mu, "probability": 1.0}}},
        receiver={"misalignment": e_det},
        detectors={"efficiency": eta, "dark_count_rate_hz": dark_hz},
    )
    theta = math.radians(15.0)
    world.jump_polarization(2.0 * theta, axis=(0.0, 0.0, 1.0))
    errors, sifted = _qber(world, 0.02)
    period_s = world.period_ps * 1e-12
    e_signal = e_det + (1.0 - 2.0 * e_det) * math.sin(theta) ** 2
    # The analyser of Alice's basis gets half the photons (passive 50/50 choice); its right
    # and wrong detector click independently, each also by darks within the pulse slot.
    no_dark = math.exp(-dark_hz * period_s)
    p_right = 1.0 - math.exp(-mu * eta * 0.5 * (1.0 - e_signal)) * no_dark
    p_wrong = 1.0 - math.exp(-mu * eta * 0.5 * e_signal) * no_dark
    # Single-click sifted events: the other basis must be silent, which cancels in the ratio.
    wrong_only, right_only = p_wrong * (1.0 - p_right), p_right * (1.0 - p_wrong)
    expected = wrong_only / (wrong_only + right_only)
    assert expected > e_signal + 0.01  # the floor is visible
    _assert_rate(errors, sifted, expected)


def test_polarization_controller_voltages_change_the_measured_qber() -> None:
    e_det = 0.01
    world = quiet_world(receiver={"misalignment": e_det})
    v_pi = world.settings.polarization_controller.v_pi_mv
    errors, sifted = _qber(world, 0.002)
    _assert_rate(errors, sifted, e_det)
    # Squeezer 0 is a retarder about s1: H/V pass, D/A turn by delta towards circular.
    delta = math.pi / 3.0
    world.set_pc_voltages_mv([v_pi * delta / math.pi, 0.0, 0.0, 0.0])
    channel, time_ps, _, stop_ps = collect(world, "bob", 0.004)
    pattern_basis_x = channel >> 1 == 1
    x_errors, x_sifted = sifted_errors(
        world, channel[pattern_basis_x], time_ps[pattern_basis_x], stop_ps
    )
    z_errors, z_sifted = sifted_errors(
        world, channel[~pattern_basis_x], time_ps[~pattern_basis_x], stop_ps
    )
    _assert_rate(x_errors, x_sifted, e_det + (1.0 - 2.0 * e_det) * (1.0 - math.cos(delta)) / 2.0)
    _assert_rate(z_errors, z_sifted, e_det)


@pytest.mark.parametrize("fraction", [1.0, 0.4])
def test_intercept_resend_gives_a_quarter_of_the_attacked_fraction(fraction: float) -> None:
    world = quiet_world(eve={"intercept_resend_fraction": fraction})
    errors, sifted = _qber(world, 0.004)
    _assert_rate(errors, sifted, fraction / 4.0)


def test_attack_window_switches_on_and_off() -> None:
    world = quiet_world()
    world.set_eve_fraction(1.0)
    errors, sifted = _qber(world, 0.002)
    _assert_rate(errors, sifted, 0.25)
    world.set_eve_fraction(0.0)
    world.stop_stream("bob")
    errors, sifted = _qber(world, 0.002)
    assert errors == 0 and sifted > 5_000


def test_blinding_attack_gives_faked_clicks_without_errors() -> None:
    mu, eve_eff = 0.2, 0.5
    world = quiet_world(
        eve={"blinding": True, "blinding_detection_efficiency": eve_eff},
        detectors={"dark_count_rate_hz": 1.0e6},
    )
    channel, time_ps, _, stop_ps = collect(world, "bob", 0.004)
    errors, sifted = sifted_errors(world, channel, time_ps, stop_ps)
    assert errors == 0 and sifted > 10_000  # blinded detectors see no darks, Eve's result only
    # Eve detects 1 - exp(-mu eta_E); her bright trigger splits over both of Bob's bases and
    # exceeds the threshold only at the detector matching her state: one click per trigger.
    n = 1.0e8 * (stop_ps // world.period_ps) * 1e-8
    expected = n * (1.0 - math.exp(-mu * eve_eff))
    assert abs(len(time_ps) - expected) <= 5.0 * math.sqrt(expected)
    world.set_blinding(False)
    world.stop_stream("bob")
    errors, sifted = _qber(world, 0.002)
    assert errors > 0  # dark counts are back
