"""Mean photon number per intensity class from click rates and the known losses.

For every detector, Alice state and intensity class the click probability per pulse
(synchronized capture, live-fraction and dark corrected) gives a mean photon number at the
detector, -ln(1 - p). Summed over Bob's four detectors it is mu * T * eta for any fiber
rotation, with T the known line transmittance and eta the detectors' known efficiency.
"""

from __future__ import annotations

import numpy as np

from experiments.calibration.common import CalibrationFailed, RoutineResult, Session
from experiments.calibration.detectors import dead_time_ps, live_fractions, state_click_probability


def link_transmittance(session: Session, *, with_switch: bool = True) -> float:
    """Known transmittance from Alice to Bob's detectors (excluding their efficiency)."""
    loss = session.settings.require("link", "fiber_loss_db") + session.settings.require(
        "link", "receiver_loss_db"
    )
    if with_switch:
        loss += session.settings.require("link", "switch_loss_db")
    return float(10.0 ** (-loss / 10.0))


async def dead_times(
    session: Session, time_ps: np.ndarray, channel: np.ndarray
) -> dict[int, float]:
    """Dead time per tagger channel: from detector characterization, else from these tags."""
    out = {}
    for name, ch in session.tagger_channel_of().items():
        known = session.dead_time_ps.get(name)
        out[ch] = known if known is not None else dead_time_ps(np.diff(time_ps[channel == ch]))
    return out


async def calibrate_mean_photon_number(session: Session) -> RoutineResult:
    """Mean photon number of each of Alice's intensity classes at her nominal power."""
    await session.require("laser", "detectors", "tagger", "switch")
    cfg = session.settings.section("mean_photon_number")
    transmittance = link_transmittance(session)
    efficiency = float(session.settings.require("link", "detector_efficiency"))
    alice = session.alice
    run = session.run
    with run.progress.task("mean photon number", total=2) as bar:
        await session.light_on()
        capture = await session.capture(cfg["capture_s"])
        bar.advance()
        dead = await dead_times(session, capture.time_ps, capture.channel)
        channels = list(session.sync_settings.channels)
        live = live_fractions(capture, dead, channels, float(alice.period_ps))
        dark = {
            ch: session.dark_rates_hz.get(n, 0.0) for n, ch in session.tagger_channel_of().items()
        }
        m, _signal = state_click_probability(session, capture, live, dark)
        total = np.sum([m[ch] for ch in channels], axis=0)  # (state, class)
        mu = total.mean(axis=0) / (transmittance * efficiency)
        power = await session.get("laser").get_power_mw()
        scale = power / alice.nominal_power_mw
        design = np.array(alice.intensity_mu) * scale
        dataset = run.dataset(
            "cal_mean_photon_number", setpoints=["intensity_class"], measured=["mu", "mu_design"]
        )
        dataset.add_many(
            [
                {"intensity_class": k, "mu": float(mu[k]), "mu_design": float(design[k])}
                for k in range(mu.size)
            ]
        )
        bar.advance()
    if float(mu.max()) < 0.05 * float(design.max()):
        raise CalibrationFailed(
            f"no light at Bob: measured mean photon numbers {np.round(mu, 4).tolist()} are "
            "at the dark-count level (laser off, fiber cut or switch not on Bob's port?)"
        )
    problems = []
    tolerance = float(cfg["tolerance"])
    for k, name in enumerate(alice.intensity_names):
        if design[k] > 0 and abs(mu[k] / design[k] - 1.0) > tolerance:
            problems.append(
                f"{name} mu {mu[k]:.4f} vs design {design[k]:.4f} (> {tolerance:.0%} off)"
            )
        if design[k] == 0 and mu[k] > tolerance * float(design.max()):
            problems.append(f"{name} mu {mu[k]:.4f} should be 0")
    values = {
        "mu": {name: float(mu[k]) for k, name in enumerate(alice.intensity_names)},
        "mu_design": {name: float(design[k]) for k, name in enumerate(alice.intensity_names)},
        "power_mw": power,
        "transmittance": transmittance,
        "detector_efficiency": efficiency,
    }
    passed = not problems
    summary = ", ".join(f"{n} {mu[k]:.3f}" for k, n in enumerate(alice.intensity_names))
    reason = f"mu: {summary}" if passed else "; ".join(problems)
    return RoutineResult(
        "mean_photon_number",
        session.name_of("laser"),
        passed,
        reason,
        values,
        "cal_mean_photon_number",
    )
