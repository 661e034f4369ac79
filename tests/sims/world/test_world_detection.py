"""Detection probability per intensity class, dark counts, laser and switch: closed forms."""

from __future__ import annotations

import math

import numpy as np

from tests.sims.world.world_helpers import collect, quiet_world

THREE_CLASSES = {
    "signal": {"mu": 0.6, "probability": 0.5},
    "decoy": {"mu": 0.1, "probability": 0.3},
    "vacuum": {"mu": 0.0, "probability": 0.2},
}


def _click_fraction_per_class(
    dark_hz: float, efficiency: float, duration_s: float
) -> list[tuple[int, int, float]]:
    """(pulses, pulses with a click, expected probability) for each intensity class."""
    world = quiet_world(
        source={"intensities": THREE_CLASSES},
        detectors={"efficiency": efficiency, "dark_count_rate_hz": dark_hz},
    )
    _, time_ps, _, stop_ps = collect(world, "bob", duration_s)
    period = world.period_ps
    n_end = stop_ps // period - 1
    clicked = np.unique(time_ps // period)
    clicked = clicked[(clicked >= 0) & (clicked < n_end)]
    intensity = world.alice_pattern(np.arange(n_end)).intensity
    per_class = np.bincount(intensity, minlength=3)
    clicked_per_class = np.bincount(intensity[clicked], minlength=3)
    # Four detectors, each a Poisson dark process: P(no dark in one pulse slot).
    no_dark = math.exp(-4.0 * dark_hz * period * 1e-12)
    result = []
    for code, entry in enumerate(THREE_CLASSES.values()):
        expected = 1.0 - math.exp(-efficiency * entry["mu"]) * no_dark
        result.append((int(per_class[code]), int(clicked_per_class[code]), expected))
    return result


def _clicks_per_pulse(mean_photons_absorbed: float) -> float:
    """Expected detector clicks per pulse, summed over the four detectors (basis split 1/2).

    A prepared state sends its photons with weight 1/2 to its own detector in its basis and
    1/4 to each detector of the other basis (the PBS splits it evenly).
    """
    x = mean_photons_absorbed
    return (1.0 - math.exp(-x / 2.0)) + 2.0 * (1.0 - math.exp(-x / 4.0))


def _within_binomial(n: int, k: int, p: float, n_sigma: float = 5.0) -> None:
    sigma = math.sqrt(n * p * (1.0 - p)) + 1.0
    assert abs(k - n * p) <= n_sigma * sigma, f"{k} clicks in {n} pulses, expected p={p:.5f}"


def test_click_probability_per_class_is_one_minus_exp_minus_eta_mu() -> None:
    for n, k, p in _click_fraction_per_class(dark_hz=0.0, efficiency=0.35, duration_s=0.004):
        assert n > 50_000
        _within_binomial(n, k, p)


def test_dark_counts_add_to_the_click_probability_of_every_class() -> None:
    results = _click_fraction_per_class(dark_hz=2.0e5, efficiency=0.35, duration_s=0.004)
    vacuum_n, vacuum_k, vacuum_p = results[2]
    assert vacuum_p > 1e-3  # the vacuum class sees darks only
    for n, k, p in results:
        _within_binomial(n, k, p)
    assert vacuum_k > 0 and vacuum_n > 0


def test_total_click_rate_scales_with_line_loss() -> None:
    # 10 km at 0.3 dB/km = 3 dB: half the photons; compare the mean clicks per pulse.
    rates = []
    for length_km in (0.0, 10.0):
        world = quiet_world(fiber={"length_km": length_km, "loss_db_per_km": 0.3})
        rates.append(sum(world.detector_count_rates_hz(0.004)))
    mu, eta, rate_hz = 0.2, 0.5, 1.0e8
    for measured, transmission in zip(rates, (1.0, 10 ** (-0.3)), strict=True):
        n = rate_hz * _clicks_per_pulse(mu * transmission * eta) * 0.004
        assert abs(measured * 0.004 - n) <= 5.0 * math.sqrt(n), (measured, n / 0.004)


def test_laser_off_leaves_only_dark_counts() -> None:
    world = quiet_world(detectors={"dark_count_rate_hz": 5.0e4})
    world.set_laser_enabled(False)
    rates = world.detector_count_rates_hz(0.02)
    for rate in rates:
        n = 5.0e4 * 0.02
        assert abs(rate * 0.02 - n) <= 5.0 * math.sqrt(n)
    world.set_laser_enabled(True)
    assert sum(world.detector_count_rates_hz(0.001)) > 10 * sum(rates)


def test_switch_away_from_bob_leaves_only_crosstalk() -> None:
    world = quiet_world(switch={"crosstalk_db": -30.0, "n_ports": 4, "bob_port": 1})
    on_bob = sum(world.detector_count_rates_hz(0.002))
    world.set_switch_port(3)
    off_bob = sum(world.detector_count_rates_hz(0.02))
    # -30 dB of crosstalk: the click rate falls by ~1000 (mu small, so linear in transmission).
    ratio = on_bob / off_bob
    assert 700.0 < ratio < 1400.0, ratio


def test_laser_power_scales_mean_photon_number() -> None:
    world = quiet_world(source={"nominal_power_mw": 2.0})
    world.set_laser_power_mw(4.0)  # mu doubles to 0.4
    rate = sum(world.detector_count_rates_hz(0.004))
    n = 1.0e8 * _clicks_per_pulse(0.4 * 0.5) * 0.004
    assert abs(rate * 0.004 - n) <= 5.0 * math.sqrt(n)
