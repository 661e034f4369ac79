"""The report's figures: matplotlib (Agg, no pyplot state) rendered to base64 PNG data URIs.

Each function takes the records of :mod:`labctl.report.series` (or a dataset) and returns
a :class:`Figure` (title, data URI, caption) or None when the run has nothing to plot.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labctl.report.reader import Dataset
from labctl.report.series import Block, CalibrationResult, Incident, SyncPoint

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

WIDTH_IN = 9.0
DPI = 100
SEVERITY_COLOURS = {"info": "#4477aa", "warning": "#ee8800", "error": "#cc3311"}
DETECTORS = ("Z0", "Z1", "X0", "X1")
MAX_BARS = 200


@dataclass(frozen=True, slots=True)
class Figure:
    """One embedded figure."""

    title: str
    data_uri: str
    caption: str = ""


def _new(rows: int = 1, cols: int = 1, height_in: float = 3.2) -> tuple[MplFigure, list[Axes]]:
    # Figure() without pyplot: no global state, safe in any thread, always the Agg canvas.
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(WIDTH_IN, height_in * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _integer_x(ax: Axes) -> None:
    """Block numbers on the x axis: integer ticks only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _png(fig: MplFigure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def qber(blocks: Sequence[Block]) -> Figure | None:
    """QBER in the key (Z) and test (X) bases of every block, over run time."""
    points = [b for b in blocks if b.qber_z is not None or b.qber_x is not None]
    if not points:
        return None
    fig, (ax,) = _new()
    for name, values in (
        ("Z (key basis)", [b.qber_z for b in points]),
        ("X (test basis)", [b.qber_x for b in points]),
    ):
        xs = [b.block for b, v in zip(points, values, strict=True) if v is not None]
        ys = [100 * v for v in values if v is not None]
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel("block")
    _integer_x(ax)
    ax.set_ylabel("QBER (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    span = f"run time {points[0].t_s:.1f} to {points[-1].t_s:.1f} s"
    return Figure("QBER per block", _png(fig), f"{len(points)} blocks post-processed, {span}")


def key(blocks: Sequence[Block]) -> Figure | None:
    """Sifted and secret bits per block, and the secret key accumulated over run time."""
    if not blocks:
        return None
    fig, (per_block, total) = _new(2, 1, height_in=2.8)
    index = [b.block for b in blocks]
    if len(blocks) <= MAX_BARS:
        per_block.bar(index, [b.sifted_bits for b in blocks], width=0.8, label="sifted bits")
        per_block.bar(index, [b.secret_bits for b in blocks], width=0.5, label="secret bits")
    else:  # thousands of bars draw slowly and read as a solid area: lines say the same
        per_block.plot(index, [b.sifted_bits for b in blocks], lw=0.8, label="sifted bits")
        per_block.plot(index, [b.secret_bits for b in blocks], lw=0.8, label="secret bits")
    per_block.set_yscale("log")
    per_block.set_xlabel("block")
    _integer_x(per_block)
    per_block.set_ylabel("bits")
    per_block.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    per_block.grid(alpha=0.3, axis="y")
    times = [b.t_s for b in blocks]
    secret, sifted = (
        _cumulative([b.secret_bits for b in blocks]),
        _cumulative([b.sifted_bits for b in blocks]),
    )
    total.step(times, sifted, where="post", marker=".", label="sifted bits")
    total.step(times, secret, where="post", marker=".", label="secret bits")
    total.set_yscale("symlog")
    total.set_xlabel("run time (s)")
    total.set_ylabel("bits so far")
    total.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    total.grid(alpha=0.3)
    caption = f"{secret[-1]:,} secret bits from {sifted[-1]:,} sifted bits in {len(blocks)} blocks"
    return Figure("Sifted and secret key", _png(fig), caption)


def detectors(blocks: Sequence[Block], calibrations: Sequence[CalibrationResult]) -> Figure | None:
    """Detection rate per block, and each detector's dark counts and relative efficiency."""
    per_detector = _detector_calibration(calibrations)
    if not blocks and not per_detector:
        return None
    rows = int(bool(blocks)) + int(bool(per_detector))
    fig, axes = _new(rows, 1, height_in=2.8)
    ax_iter = iter(axes)
    if blocks:
        ax = next(ax_iter)
        rates = [b.detections / b.acquired_s if b.acquired_s > 0 else 0.0 for b in blocks]
        ax.plot([b.block for b in blocks], rates, marker="o", markersize=3)
        ax.set_xlabel("block")
        _integer_x(ax)
        ax.set_ylabel("detections / s acquired")
        ax.grid(alpha=0.3)
    if per_detector:
        ax = next(ax_iter)
        names = list(per_detector)
        dark = [per_detector[n][0] for n in names]
        ax.bar(names, dark, color="#4477aa")
        ax.set_ylabel("dark count rate (Hz)")
        twin = ax.twinx()
        twin.plot(names, [per_detector[n][1] for n in names], "o", color="#cc3311")
        twin.set_ylabel("relative efficiency", color="#cc3311")
        ax.set_title("detector calibration", fontsize=10)
    return Figure(
        "Detector counts",
        _png(fig),
        "detections of all four detectors per second of acquisition; dark counts and "
        "relative efficiencies from the last detector calibration",
    )


def _detector_calibration(
    calibrations: Sequence[CalibrationResult],
) -> dict[str, tuple[float, float]]:
    latest = next((c for c in reversed(calibrations) if c.routine == "detectors"), None)
    if latest is None:
        return {}
    found: dict[str, tuple[float, float]] = {}
    for name in DETECTORS:
        values = latest.data.get(name)
        if isinstance(values, dict):
            dark = values.get("dark_count_rate_hz")
            eff = values.get("relative_efficiency")
            if isinstance(dark, int | float) and isinstance(eff, int | float):
                found[name] = (float(dark), float(eff))
    return found


def sync(points: Sequence[SyncPoint]) -> Figure | None:
    """Bob's clock offset (change since the first synchronization) and drift over run time."""
    if not points:
        return None
    fig, (ax_offset, ax_drift) = _new(1, 2, height_in=3.0)
    first = points[0].offset_ps
    times = [p.t_s for p in points]
    ax_offset.plot(times, [p.offset_ps - first for p in points], marker="o", markersize=4)
    ax_offset.set_xlabel("run time (s)")
    ax_offset.set_ylabel(f"offset − {first:,.0f} (ps)")
    ax_offset.grid(alpha=0.3)
    drift = [(p.t_s, p.drift_ppb) for p in points if p.drift_ppb is not None]
    ax_drift.plot([t for t, _ in drift], [d for _, d in drift], marker="o", markersize=4)
    ax_drift.set_xlabel("run time (s)")
    ax_drift.set_ylabel("drift (ppb)")
    ax_drift.grid(alpha=0.3)
    caption = f"{len(points)} synchronizations; last offset {points[-1].offset_ps:,.1f} ps"
    return Figure("Clock synchronization", _png(fig), caption)


def timeline(incidents: Sequence[Incident], end_s: float, blocks: Sequence[Block]) -> Figure:
    """Alarms, faults, suspensions, failed blocks and the stop on one run-time axis."""
    lanes = sorted({i.source for i in incidents}) or ["run"]
    fig, (ax,) = _new(height_in=max(1.6, 0.45 * len(lanes) + 1.0))
    if blocks:
        ax.axvspan(blocks[0].t_s, blocks[-1].t_s, color="#228833", alpha=0.08, lw=0)
    # One draw call per lane and severity: a long run can hold thousands of entries.
    groups: dict[tuple[int, str], list[Incident]] = {}
    for incident in incidents:
        groups.setdefault((lanes.index(incident.source), incident.severity), []).append(incident)
    for (y, severity), members in groups.items():
        colour = SEVERITY_COLOURS.get(severity, "#cc3311")
        spans = [(i.t_s, max(i.until_s - i.t_s, 0.0)) for i in members if i.until_s is not None]
        if spans:
            ax.broken_barh(spans, (y - 0.2, 0.4), color=colour, alpha=0.5)
        ax.plot([i.t_s for i in members], [y] * len(members), "D", color=colour, markersize=6)
    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.set_xlim(left=min([0.0, *[i.t_s for i in incidents]]), right=max(end_s, 1e-9) * 1.02)
    ax.set_xlabel("run time (s)  (green: key generation; orange: warning; red: error)")
    ax.grid(alpha=0.3, axis="x")
    count = f"{len(incidents)} {'entry' if len(incidents) == 1 else 'entries'}"
    return Figure("Alarms and faults", _png(fig), count)


def dataset(ds: Dataset) -> Figure | None:
    """One calibration dataset: curves per channel/port, else each column against the first."""
    names = list(ds.columns)
    if len(names) < 2 or not any(ds.columns[n] for n in names):
        return None
    rows = len(ds.columns[names[0]])
    caption = f"dataset {ds.name} ({rows} rows)"
    groups = {v for v in ds.columns[names[0]] if v is not None}
    if names[0] in ("channel", "port") and len(names) >= 3 and rows >= 3 * len(groups):
        return Figure(ds.name, _png(_grouped(ds, names)), caption)
    y_names = names[1:]
    cols = min(3, len(y_names))
    fig, axes = _new(-(-len(y_names) // cols), cols, height_in=2.4)
    few = rows <= 8  # a handful of settings (ports, intensity classes): points, not a curve
    for ax, y_name in zip(axes, y_names, strict=False):
        style = {"linestyle": "none", "markersize": 6} if few else {"markersize": 3}
        ax.plot(_nan(ds, names[0]), _nan(ds, y_name), marker="o", **style)
        ax.set_xlabel(names[0])
        ax.set_ylabel(y_name)
        if _spans_decades(ds.column(y_name)) and min(ds.column(y_name)) >= 0:
            ax.set_yscale("symlog", linthresh=1.0)
        ax.grid(alpha=0.3)
    for ax in axes[len(y_names) :]:
        ax.set_visible(False)
    return Figure(ds.name, _png(fig), caption)


def _grouped(ds: Dataset, names: list[str]) -> MplFigure:
    """Columns 2.. against column 1, one curve per value of column 0 (channel or port)."""
    group, x_name, y_names = names[0], names[1], names[2:]
    fig, (ax,) = _new(height_in=3.0)
    keys = sorted({v for v in ds.columns[group] if v is not None})
    x_values, y_values = _nan(ds, x_name), {n: _nan(ds, n) for n in y_names}
    for k in keys:
        rows = [i for i, v in enumerate(ds.columns[group]) if v == k]
        for y_name in y_names:
            xs = [x_values[i] for i in rows]
            ys = [y_values[y_name][i] for i in rows]
            label = f"{group} {k:g}" + (f" {y_name}" if len(y_names) > 1 else "")
            ax.plot(xs, ys, marker="o" if len(rows) < 50 else "", markersize=3, label=label)
    ax.set_xlabel(x_name)
    ax.set_ylabel(", ".join(y_names))
    if _spans_decades([v for n in y_names for v in ds.column(n)]):
        ax.set_yscale("symlog", linthresh=1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _nan(ds: Dataset, name: str) -> list[float]:
    """Column ``name`` with NULLs as NaN (matplotlib leaves a gap), rows kept aligned."""
    return [math.nan if v is None else v for v in ds.columns[name]]


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [abs(v) for v in values if v]
    return bool(positive) and max(positive) / min(positive) > 1e3


def _cumulative(values: Sequence[int]) -> list[int]:
    total, out = 0, []
    for v in values:
        total += v
        out.append(total)
    return out
