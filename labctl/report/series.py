"""Turn a run's documents into the records the report plots and lists.

Times are the run clock of the documents (``ts``, seconds; the simulated world's clock for
simulated stations, on which scheduled faults' ``at_s`` also lie), shown relative to the
start document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labctl.report.reader import RunRecord

SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Block:
    """One post-processed key block (a ``qkd`` document with a ``block`` index)."""

    block: int
    t_s: float
    status: str
    reason: str
    pulses: int
    detections: int
    sifted_bits: int
    secret_bits: int
    qber_z: float | None
    qber_x: float | None
    acquired_s: float


@dataclass(frozen=True, slots=True)
class SyncPoint:
    """One synchronization result: Bob's clock offset and drift against Alice's."""

    t_s: float
    offset_ps: float
    drift_ppb: float | None


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """One calibration routine's outcome (a ``calibration`` document with ``routine``)."""

    t_s: float
    routine: str
    passed: bool
    reason: str
    values: dict[str, str] = field(default_factory=dict)
    """Measured values flattened to ``name -> text`` (nested keys joined by dots)."""
    data: dict[str, Any] = field(default_factory=dict)
    """The document's data as written (for the figures)."""


@dataclass(frozen=True, slots=True)
class Incident:
    """Something an operator should see on the timeline: alarm, fault, suspension, stop."""

    t_s: float
    source: str
    severity: str
    text: str
    until_s: float | None = None


@dataclass(slots=True)
class RunSeries:
    """All records of one run, times relative to the run's start."""

    start_s: float
    end_s: float
    blocks: list[Block] = field(default_factory=list)
    sync: list[SyncPoint] = field(default_factory=list)
    calibrations: list[CalibrationResult] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)


def run_series(record: RunRecord) -> RunSeries:
    """Every record of ``record``, in document order."""
    start_s = next((_f(e.get("ts")) for e in record.events if e.get("kind") == "start"), None)
    if start_s is None:
        start_s = min((_f(e.get("ts")) or 0.0 for e in record.events), default=0.0)
    end_s = max((_f(e.get("ts")) or 0.0 for e in record.events), default=start_s) - start_s
    series = RunSeries(start_s, max(end_s, 0.0))
    for event in record.events:
        _fold(series, event)
    series.incidents.extend(_scheduled_faults(record.start_data().get("config"), start_s))
    series.incidents.sort(key=lambda i: i.t_s)
    return series


def _fold(series: RunSeries, event: Mapping[str, Any]) -> None:
    data = event.get("data")
    if not isinstance(data, dict):
        return
    t_s = (_f(event.get("ts")) or 0.0) - series.start_s
    kind, stream = event.get("kind"), event.get("stream")
    if kind == "stop":
        _stop(series, t_s, data)
    elif stream == "qkd":
        _qkd(series, t_s, data)
    elif stream == "sync":
        _sync(series, t_s, data)
    elif stream == "calibration":
        _calibration(series, t_s, data)
    elif stream == "runner":
        _runner(series, t_s, data)
    elif stream == "alarm":
        severity = str(data.get("severity", "warning"))
        severity = severity if severity in SEVERITIES else "error"
        series.incidents.append(Incident(t_s, "alarm", severity, str(data.get("message", data))))


def _qkd(series: RunSeries, t_s: float, data: Mapping[str, Any]) -> None:
    if "block" in data:
        block = Block(
            block=int(data["block"]),
            t_s=t_s,
            status=str(data.get("status", "")),
            reason=str(data.get("reason", "")),
            pulses=int(data.get("pulses") or 0),
            detections=int(data.get("detections") or 0),
            sifted_bits=int(data.get("sifted_bits") or 0),
            secret_bits=int(data.get("secret_bits") or 0),
            qber_z=_f(data.get("qber_z")),
            qber_x=_f(data.get("qber_x")),
            acquired_s=_f(data.get("acquired_s")) or 0.0,
        )
        series.blocks.append(block)
        if block.status != "key":
            text = f"block {block.block}: {block.status} ({block.reason})"
            series.incidents.append(Incident(t_s, "qkd", "warning", text))
    elif "action" in data:
        text = f"{data['action']}: {data.get('reason', '')}".rstrip(": ")
        series.incidents.append(Incident(t_s, "qkd", "error", text))


def _sync(series: RunSeries, t_s: float, data: Mapping[str, Any]) -> None:
    offset = _f(data.get("offset_ps"))
    if offset is not None:
        series.sync.append(SyncPoint(t_s, offset, _f(data.get("drift_ppb"))))
    elif "action" in data:
        text = f"{data['action']}: {data.get('reason', '')}".rstrip(": ")
        series.incidents.append(Incident(t_s, "sync", "warning", text))


def _calibration(series: RunSeries, t_s: float, data: Mapping[str, Any]) -> None:
    routine = data.get("routine")
    if not isinstance(routine, str):
        return  # the report of a whole calibration pass repeats the routines' documents
    passed = bool(data.get("passed"))
    skip = {"routine", "passed", "reason"}
    values = dict(_flatten({k: v for k, v in data.items() if k not in skip}))
    reason = str(data.get("reason", ""))
    series.calibrations.append(CalibrationResult(t_s, routine, passed, reason, values, dict(data)))
    severity = "info" if passed else "error"
    verdict = "passed" if passed else "FAILED"
    text = f"{routine} {verdict}: {reason}"
    series.incidents.append(Incident(t_s, "calibration", severity, text))


_RUNNER_SEVERITY = {
    "suspended": "warning",
    "remedy-failed": "error",
    "request-ignored": "warning",
}


def _runner(series: RunSeries, t_s: float, data: Mapping[str, Any]) -> None:
    action = str(data.get("action", "?"))
    details = ", ".join(f"{k} {v}" for k, v in data.items() if k != "action" and v is not None)
    text = action if not details else f"{action}: {details}"
    series.incidents.append(Incident(t_s, "runner", _RUNNER_SEVERITY.get(action, "info"), text))


def _stop(series: RunSeries, t_s: float, data: Mapping[str, Any]) -> None:
    status = str(data.get("exit_status", "?"))
    severity = {"ok": "info", "degraded": "warning"}.get(status, "error")
    text = f"run stopped: {status} ({data.get('reason', '')})"
    series.incidents.append(Incident(t_s, "run", severity, text))
    for name, error in (data.get("safe_state_errors") or {}).items():
        series.incidents.append(Incident(t_s, "run", "error", f"safe_state({name}): {error}"))


def _scheduled_faults(config: object, start_s: float) -> list[Incident]:
    """Faults the station file schedules on its simulated twins (``settings.faults``)."""
    if not isinstance(config, dict):
        return []
    found: list[Incident] = []
    instruments = config.get("instruments")
    for name, spec in (instruments or {}).items() if isinstance(instruments, dict) else ():
        settings = spec.get("settings") if isinstance(spec, dict) else None
        faults = settings.get("faults") if isinstance(settings, dict) else None
        for fault in faults if isinstance(faults, list) else ():
            at_s = _f(fault.get("at_s")) if isinstance(fault, dict) else None
            if at_s is None or not isinstance(fault, dict):
                continue
            until = _f(fault.get("until_s"))
            duration = _f(fault.get("duration_s"))
            if until is None and duration is not None:
                until = at_s + duration
            extra = ", ".join(
                f"{k} {v}" for k, v in fault.items() if k not in ("kind", "at_s", "until_s")
            )
            text = f"fault {fault.get('kind', '?')} via {name}" + (f" ({extra})" if extra else "")
            found.append(
                Incident(
                    at_s - start_s,
                    "fault",
                    "warning",
                    text,
                    None if until is None else until - start_s,
                )
            )
    return found


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, str]]:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name, _text(value)


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def _f(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
