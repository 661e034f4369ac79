"""Assemble the report's HTML: one file, no external resources (figures are data URIs)."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from labctl.report.figures import Figure
from labctl.report.series import CalibrationResult, Incident

SUMMARY_ROWS = (
    ("status", ""),
    ("reason", ""),
    ("blocks", ""),
    ("blocks_with_key", ""),
    ("key_block_share", ""),
    ("pulses", ""),
    ("detections", ""),
    ("sifted_bits", "bits"),
    ("qber_z", "%"),
    ("qber_x", "%"),
    ("secret_bits", "bits"),
    ("key_rate_per_pulse", "bits/pulse"),
    ("run_time_s", "s"),
    ("secret_key_rate_bps", "bit/s (run time)"),
    ("secret_key_rate_acquisition_bps", "bit/s (acquiring)"),
    ("ec_efficiency", ""),
    ("channel_uses", ""),
    ("round_trips", ""),
    ("sync_offset_ps", "ps"),
    ("sync_drift_ppb", "ppb"),
)
"""What the summary table shows, in order (never key ids or key material)."""

MAX_INCIDENT_ROWS = 400
"""Rows of the incident table; the timeline figure always shows every entry."""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #228833; font-weight: bold; } .fail { color: #cc3311; font-weight: bold; }
.warning { color: #ee8800; } .error { color: #cc3311; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
details { margin: 0.3em 0; } pre { font-size: 0.8em; white-space: pre-wrap; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def number(value: object, unit: str = "") -> str:
    """A value as the report prints it (QBER given as a fraction is shown in %)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if unit == "%":
            return f"{100 * value:.3f} %"
        text = f"{value:,.1f}" if abs(value) >= 1e4 else f"{value:.4g}"
        return f"{text} {unit}".rstrip()
    if isinstance(value, int):
        return f"{value:,} {unit}".rstrip()
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table of already-escaped cells; columns in ``numeric`` right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_section(summary: Mapping[str, Any] | None, metadata: Mapping[str, Any]) -> str:
    """The run's totals (summary.json), else what metadata.json says."""
    source: Mapping[str, Any] = summary if summary is not None else metadata
    rows = [
        (_e(name), _e(number(source[name], unit))) for name, unit in SUMMARY_ROWS if name in source
    ]
    for name in ("plan", "duration_s"):
        if name in metadata:
            rows.append((_e(name), _e(number(metadata[name], "s" if name == "duration_s" else ""))))
    return "<h2>Summary</h2>" + table(("quantity", "value"), rows, numeric=(1,))


def calibration_section(results: Sequence[CalibrationResult]) -> str:
    """One row per calibration routine run, with its measured values folded away."""
    if not results:
        return "<h2>Calibration</h2><p>No calibration in this run.</p>"
    rows = []
    for r in results:
        verdict = '<span class="pass">pass</span>' if r.passed else '<span class="fail">fail</span>'
        values = table(("value", ""), ((_e(k), _e(v)) for k, v in r.values.items()), (1,))
        details = f"<details><summary>{len(r.values)} values</summary>{values}</details>"
        rows.append((f"{r.t_s:.3f}", _e(r.routine), verdict, _e(r.reason), details))
    header = ("run time (s)", "routine", "result", "reason", "measured")
    return "<h2>Calibration</h2>" + table(header, rows, numeric=(0,))


def incident_section(
    incidents: Sequence[Incident], log_lines: Sequence[str], log_total: int = 0
) -> str:
    """The timeline's entries as a table, then the log's warnings and errors."""
    shown = list(incidents)
    note = ""
    if len(shown) > MAX_INCIDENT_ROWS:  # a long run: the first and last entries, counted
        half = MAX_INCIDENT_ROWS // 2
        note = f"<p>{len(shown) - 2 * half} entries in the middle of the run are not listed.</p>"
        shown = shown[:half] + shown[-half:]
    rows = [
        (
            f"{i.t_s:.3f}" + ("" if i.until_s is None else f" - {i.until_s:.3f}"),
            _e(i.source),
            f'<span class="{_e(i.severity)}">{_e(i.severity)}</span>',
            _e(i.text),
        )
        for i in shown
    ]
    parts = [table(("run time (s)", "source", "severity", "what"), rows, numeric=(0,)), note]
    if log_lines:
        total = max(log_total, len(log_lines))
        last = "" if total == len(log_lines) else f", the last {len(log_lines)} shown"
        parts.append(
            f"<details><summary>{total} warning/error line(s) in run.log{last}</summary>"
            f"<pre>{_e(chr(10).join(log_lines))}</pre></details>"
        )
    return "".join(parts)


def figure_html(figure: Figure) -> str:
    """One embedded figure with its caption."""
    return (
        f'<figure><img src="{figure.data_uri}" alt="{_e(figure.title)}">'
        f"<figcaption>{_e(figure.title)}: {_e(figure.caption)}</figcaption></figure>"
    )


def document(title: str, sections: Sequence[str], generated_s: float | None = None) -> str:
    """The whole HTML page."""
    stamp = time.strftime(
        "%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() if generated_s is None else generated_s)
    )
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>Report generated {stamp} by labctl.</p>\n{body}\n"
        "</body></html>\n"
    )
