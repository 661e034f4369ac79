"""Detector characterization: dark counts, relative efficiency, afterpulsing, dead time, jitter.

- dark count rate: laser off, each channel's count rate;
- dead time and afterpulsing: the inter-arrival histogram of each channel under weak light.
  Nothing arrives closer than the dead time; afterpulses are the excess over the exponential
  that the later gaps follow;
- relative efficiency: click probability per pulse for each of Alice's four states (from
  the synchronized capture), corrected for the detector's live fraction, turned into mean
  photon numbers (-ln(1 - p)) and summed over the states: that sum is the same for any
  fiber rotation, so it compares the detectors alone;
- timing jitter: FWHM of the residual peak against the pulse clock.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from experiments.calibration.common import CalibrationFailed, Capture, RoutineResult, Session
from experiments.sync.acquire import vacuum_code
from labctl.interfaces.units import PS_PER_S, ps_to_seconds

I64 = npt.NDArray[np.int64]
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
GAP_BIN_NS = 10.0
GAP_RANGE_NS = 3000.0
TAIL_START_NS = 1000.0  # afterpulses have died out after this (checked: the excess is fitted)


def dead_time_ps(gaps_ps: I64) -> float:
    """Dead time: the edge of the inter-arrival histogram (the 5th shortest gap, so one glitch
    cannot move it; any quantile would sit above the edge by the light's waiting time)."""
    if gaps_ps.size < 100:
        return float("nan")
    return float(np.partition(gaps_ps, 4)[4])


def afterpulse_probability(gaps_ps: I64, dead_ps: float, n_clicks: int) -> float:
    """Fraction of clicks followed by an afterpulse: excess short gaps over the exponential."""
    cut = dead_ps + TAIL_START_NS * 1000.0
    tail = gaps_ps[gaps_ps > cut]
    if tail.size < 50 or n_clicks == 0:
        return float("nan")
    rate = 1.0 / float(np.mean(tail - cut))
    short = gaps_ps[(gaps_ps >= dead_ps) & (gaps_ps <= cut)]
    span = cut - dead_ps
    expected = tail.size * math.expm1(rate * span)
    excess = short.size - expected
    if excess <= 0:
        return 0.0
    # Mean delay of the excess: the short gaps' sum minus what the exponential part adds.
    n_exp = tail.size * math.exp(rate * span)
    exp_sum = n_exp * (1.0 / rate - math.exp(-rate * span) * (span + 1.0 / rate))
    mean_delay = max(0.0, (float(np.sum(short - dead_ps)) - exp_sum) / excess)
    # An afterpulse only shows when no photon click came first: correct by the mean survival.
    return excess * (1.0 + rate * mean_delay) / n_clicks


def state_click_probability(
    session: Session, capture: Capture, live: dict[int, float], dark_hz: dict[int, float]
) -> tuple[dict[int, np.ndarray], int]:
    """Per tagger channel: -ln(1 - p) for each (Alice state, intensity class), p per pulse."""
    alice = session.alice
    pattern = alice.pattern(capture.pulse_index)
    n_pulses = capture.span_s * PS_PER_S / alice.period_ps
    p_basis = np.array([alice.basis_z_probability, 1.0 - alice.basis_z_probability])
    p_class = np.array(alice.intensity_probability)
    n_classes = p_class.size
    vacuum = vacuum_code(alice)
    key = (pattern.basis.astype(np.int64) * 2 + pattern.bit) * n_classes + pattern.intensity
    out: dict[int, np.ndarray] = {}
    for ch in session.sync_settings.channels:
        sel = capture.channel == ch
        counts = np.bincount(key[sel], minlength=4 * n_classes).reshape(4, n_classes)
        pulses = n_pulses * np.outer(np.repeat(p_basis, 2) * 0.5, p_class)
        p = counts / (pulses * max(live[ch], 1e-9))
        if vacuum is not None:
            # Clicks on vacuum pulses are the background (darks and afterpulses) of every pulse.
            p = p - counts[:, vacuum].sum() / (pulses[:, vacuum].sum() * max(live[ch], 1e-9))
        else:
            p = p - dark_hz.get(ch, 0.0) * ps_to_seconds(alice.period_ps)
        out[ch] = -np.log1p(-np.clip(p, -0.5, 0.999999))
    signal = int(np.argmax(alice.intensity_mu))
    return out, signal


def live_fractions(
    capture: Capture, dead: dict[int, float], channels: list[int], period_ps: float
) -> dict[int, float]:
    """Live fraction of each channel: the share of pulse slots not inside a dead time.

    With pulses every P a click at one pulse blinds the next round(dead / P) - 1 pulses (a
    photon exactly one dead time later is counted again), so the non-paralyzable live
    fraction is 1 - rate * (round(dead / P) - 1) * P.
    """
    out = {}
    for ch in channels:
        rate = float(np.count_nonzero(capture.channel == ch)) / max(capture.span_s, 1e-12)
        tau = dead.get(ch, 0.0)
        blind = 0.0 if math.isnan(tau) else max(round(tau / period_ps) - 1, 0) * period_ps
        out[ch] = 1.0 - rate * ps_to_seconds(blind)
    return out


async def calibrate_detectors(session: Session) -> RoutineResult:
    """Dark counts, dead time, afterpulsing, relative efficiency and jitter of every detector."""
    await session.require("laser", "detectors", "tagger", "switch")
    cfg = session.settings.section("detectors")
    run = session.run
    det = session.get("detectors")
    names = session.detector_names()
    channel_of = session.tagger_channel_of()
    with run.progress.task("detectors", total=3) as bar:
        laser = session.get("laser")
        await laser.set_output(False)
        for channel in range(det.n_channels):
            await det.set_enabled(channel, True)
        dark = await det.get_count_rates_hz(cfg["dark_integration_s"])
        dark_by_name = dict(zip(names, dark, strict=True))
        light_problems = light_with_laser_off(
            (await det.health()).readings, names, cfg["max_current_excess_ua"]
        )
        darks = run.dataset("cal_detectors_dark", setpoints=["channel"], measured=["dark_rate_hz"])
        darks.add_many([{"channel": i, "dark_rate_hz": r} for i, r in enumerate(dark)])
        bar.advance()
        await session.light_on(cfg["afterpulse_power_mw"])
        times, chans, _span = await session.raw_tags(cfg["afterpulse_capture_s"])
        hist = run.dataset(
            "cal_detectors_interarrival", setpoints=["channel", "gap_ns"], measured=["counts"]
        )
        edges = np.arange(0.0, GAP_RANGE_NS + GAP_BIN_NS, GAP_BIN_NS)
        dead: dict[int, float] = {}
        after: dict[int, float] = {}
        for name in names:
            ch = channel_of[name]
            mine = times[chans == ch]
            if mine.size < 200:
                raise CalibrationFailed(
                    f"detector {name} (tagger channel {ch}) counts nothing under light "
                    f"({mine.size} tags): latched, disarmed or no light"
                )
            gaps = np.diff(mine)
            dead[ch] = dead_time_ps(gaps)
            after[ch] = afterpulse_probability(gaps, dead[ch], mine.size)
            counts, _ = np.histogram(gaps / 1000.0, bins=edges)
            hist.add_many(
                [
                    {"channel": ch, "gap_ns": float(e), "counts": int(c)}
                    for e, c in zip(edges[:-1], counts, strict=True)
                ]
            )
        bar.advance()
        await session.light_on()
        capture = await session.capture(cfg["capture_s"])
        channels = [channel_of[n] for n in names]
        live = live_fractions(capture, dead, channels, capture_period(session))
        dark_ch = {channel_of[n]: dark_by_name[n] for n in names}
        m, signal = state_click_probability(session, capture, live, dark_ch)
        weight = {ch: float(m[ch][:, signal].sum()) for ch in channels}
        jitter: dict[int, float] = {}
        half = capture_period(session) / 4
        for ch in channels:
            resid = capture.residual_ps[(capture.channel == ch)]
            resid = resid[np.abs(resid - np.median(resid)) < half]
            mad = float(np.median(np.abs(resid - np.median(resid))))
            jitter[ch] = FWHM_PER_SIGMA * 1.4826 * mad
        bar.advance()
    mean_weight = float(np.mean(list(weight.values())))
    if mean_weight <= 0:
        raise CalibrationFailed("no detector clicks correlate with Alice's pulses: no light?")
    values: dict[str, Any] = {}
    problems = []
    for name in names:
        ch = channel_of[name]
        entry = {
            "dark_count_rate_hz": dark_by_name[name],
            "relative_efficiency": weight[ch] / mean_weight,
            "afterpulse_probability": after[ch],
            "dead_time_ns": dead[ch] / 1000.0,
            "jitter_fwhm_ps": jitter[ch],
            "live_fraction": live[ch],
        }
        values[name] = entry
        problems += _judge(name, entry, cfg)
    session.dark_rates_hz = {n: values[n]["dark_count_rate_hz"] for n in names}
    session.dead_time_ps = {n: dead[channel_of[n]] for n in names}
    problems += light_problems
    passed = not problems
    reason = "all detectors within limits" if passed else "; ".join(problems)
    return RoutineResult(
        "detectors", session.name_of("detectors"), passed, reason, values, "cal_detectors_dark"
    )


def light_with_laser_off(
    readings: dict[str, float | int | str | bool], names: list[str], max_excess_ua: float
) -> list[str]:
    """Channels whose bias-line current exceeds their bias with Alice's laser off: light
    reaches them that is not Alice's (e.g. blinding). Channels that report no current are
    not judged."""
    problems = []
    for i, name in enumerate(names):
        current, bias = readings.get(f"ch{i}_current_ua"), readings.get(f"ch{i}_bias_ua")
        if isinstance(current, int | float) and isinstance(bias, int | float):
            excess = float(current) - float(bias)
            if excess > max_excess_ua:
                problems.append(
                    f"{name} draws {excess:.3f} uA above its bias with the laser off "
                    f"(> {max_excess_ua:g} uA): foreign light on the detector"
                )
    return problems


def capture_period(session: Session) -> float:
    """Alice's pulse period in picoseconds."""
    return float(session.alice.period_ps)


def _judge(name: str, entry: dict[str, float], cfg: dict[str, Any]) -> list[str]:
    problems = []
    dark, eff = entry["dark_count_rate_hz"], entry["relative_efficiency"]
    after, jitter = entry["afterpulse_probability"], entry["jitter_fwhm_ps"]
    if dark > cfg["max_dark_rate_hz"]:
        problems.append(f"{name} dark count rate {dark:.0f} Hz > {cfg['max_dark_rate_hz']:g} Hz")
    if _implausibly_dark(dark, cfg["min_dark_rate_hz"], cfg["dark_integration_s"]):
        problems.append(
            f"{name} dark count rate {dark:.1f} Hz < {cfg['min_dark_rate_hz']:g} Hz with bias "
            "on: not counting photons (blinded?)"
        )
    if eff < cfg["min_relative_efficiency"]:
        problems.append(
            f"{name} relative efficiency {eff:.2f} < {cfg['min_relative_efficiency']:g}"
        )
    if after > cfg["max_afterpulse_probability"]:
        problems.append(f"{name} afterpulsing {after:.3f} > {cfg['max_afterpulse_probability']:g}")
    if jitter > cfg["max_jitter_fwhm_ps"]:
        problems.append(f"{name} jitter {jitter:.0f} ps FWHM > {cfg['max_jitter_fwhm_ps']:g} ps")
    low, high = cfg["dead_time_ns"]
    if not low <= entry["dead_time_ns"] <= high:
        problems.append(
            f"{name} dead time {entry['dead_time_ns']:.1f} ns outside {low:g}..{high:g} ns"
        )
    return problems


DARK_ALPHA = 1e-3
"""How unlikely a count this low must be, at the lowest plausible dark rate, to fail."""


def _implausibly_dark(rate_hz: float, min_rate_hz: float, integration_s: float) -> bool:
    """True when the dark counts seen are significantly below ``min_rate_hz``.

    A detector with its bias on counts at least ``min_rate_hz`` in the dark; fewer counts
    than that fail only where a Poisson count at ``min_rate_hz`` over the integration would
    be this low with probability under ``DARK_ALPHA`` (a short integration proves nothing).
    """
    if rate_hz >= min_rate_hz:
        return False
    expected = min_rate_hz * integration_s
    seen = max(0, round(rate_hz * integration_s))
    term = math.exp(-expected)
    cdf = term
    for k in range(1, seen + 1):
        term *= expected / k
        cdf += term
    return cdf < DARK_ALPHA
