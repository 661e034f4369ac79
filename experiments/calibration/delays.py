"""Time-tagger channel delays: each detector's histogram peak against Alice's pulse clock.

The synchronized residuals of every channel form a peak (detector jitter wide); its centroid
relative to the reference channel is that channel's cable delay (whole pulse periods come
from the qubit-based index alignment). The tagger's delays are then set so every channel
peaks together, and a second capture verifies it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from experiments.calibration.common import CalibrationFailed, RoutineResult, Session

HIST_BIN_PS = 4


async def calibrate_delays(session: Session) -> RoutineResult:
    """Measure and set the tagger's per-channel delays; verify the residual peaks align."""
    await session.require("laser", "detectors", "tagger", "switch")
    cfg = session.settings.section("delays")
    tagger = session.get("tagger")
    run = session.run
    with run.progress.task("delays", total=3) as bar:
        await session.light_on()
        sync = await session.synchronize()
        bar.advance()
        capture = await session.capture(cfg["capture_s"])
        period = sync.period_ps
        channels = sorted(session.sync_settings.channels)
        # Residual against the common pulse clock: add back each channel's modelled offset.
        total = {
            ch: sync.channel_offset_ps.get(ch, 0.0) + sync.channel_shift.get(ch, 0) * period
            for ch in channels
        }
        dataset = run.dataset(
            "cal_delays_histogram",
            setpoints=["channel", "offset_ps"],
            measured=["counts"],
        )
        edges = np.arange(-period / 2, period / 2 + HIST_BIN_PS, HIST_BIN_PS)
        peaks: dict[int, float] = {}
        for ch in channels:
            sel = capture.channel == ch
            if not sel.any():
                raise CalibrationFailed(f"tagger channel {ch} recorded no tags (detector off?)")
            resid = capture.residual_ps[sel]
            counts, _ = np.histogram(resid, bins=edges)
            dataset.add_many(
                [
                    {"channel": ch, "offset_ps": float(e), "counts": int(c)}
                    for e, c in zip(edges[:-1], counts, strict=True)
                ]
            )
            centre = float(np.median(resid[np.abs(resid) < period / 4]))
            peaks[ch] = total[ch] + centre
        bar.advance()
        delays_before = {ch: await tagger.get_channel_delay_ps(ch) for ch in channels}
        reference = min(channels, key=lambda c: abs(peaks[c]))
        new_delays = {
            ch: round(delays_before[ch] - (peaks[ch] - peaks[reference])) for ch in channels
        }
        for ch, delay in new_delays.items():
            await tagger.set_channel_delay_ps(ch, delay)
        # The tags moved by the change: the model's channel offsets are now (about) zero.
        assert session.tracker is not None
        session.tracker.result = replace(
            session.tracker.result,
            channel_offset_ps={},
            channel_shift={},
            phase_ps=session.tracker.result.phase_ps + peaks[reference],
        )
        check = await session.capture(cfg["capture_s"])
        near = np.abs(check.residual_ps) < period / 4
        residual = {
            ch: float(np.median(check.residual_ps[(check.channel == ch) & near])) for ch in channels
        }
        bar.advance()
    worst = max(abs(v) for v in residual.values())
    passed = worst <= cfg["max_residual_ps"]
    reason = (
        f"channels aligned within {worst:.1f} ps"
        if passed
        else f"after setting delays a channel is still {worst:.1f} ps off "
        f"(limit {cfg['max_residual_ps']} ps)"
    )
    return RoutineResult(
        "delays",
        session.name_of("tagger"),
        passed,
        reason,
        {
            "delay_ps": {str(c): d for c, d in new_delays.items()},
            "measured_offset_ps": {str(c): peaks[c] - peaks[reference] for c in channels},
            "residual_ps": {str(c): v for c, v in residual.items()},
        },
        "cal_delays_histogram",
    )
