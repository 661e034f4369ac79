"""The model behind ``labctl watch``: folds the node's MQTT messages into what an operator
needs at a glance, and renders it with rich.

Sources (see docs/asyncapi.yaml): ``$state``/``$meta``; run documents (``seq`` and, in
``data``, any of ``qber_z``, ``qber_x``, ``qber``, ``sifted_rate_bps``, ``skr_bps``,
``detector_counts`` {detector: counts}, ``calibrated_ts``; documents on the ``alarm`` stream
carry ``message`` and ``severity``); link metrics ``link/{id}/{qber|sifted|skr}``; telemetry
``tele/{detector}/count_rate_hz`` or ``counts``, a tagger's or detector's per-channel
``tele/{instrument}/ch{i}_count_rate_hz`` (one row per channel) and
``tele/{instrument}/calibration_age_s``.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from labctl.stream.recorder import RunLog
from labctl.stream.topics import Topics

_CHANNEL_RATE = re.compile(r"ch(\d+)_count_rate_hz")
_RATE_KEYS = ("qber_z", "qber_x", "qber", "sifted_rate_bps", "skr_bps")


@dataclass(slots=True)
class DashboardModel:
    """Latest values seen for one node."""

    topics: Topics
    state: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    last_seq: int | None = None
    link: dict[str, float] = field(default_factory=dict)
    detectors: dict[str, float] = field(default_factory=dict)
    calibrated_ts: dict[str, float] = field(default_factory=dict)
    alarms: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    messages: int = 0
    bad_messages: int = 0
    runs: RunLog = field(default_factory=RunLog)

    def apply(self, topic: str, payload: bytes, now_s: float | None = None) -> None:
        """Fold one message into the model; malformed ones are counted, never raised."""
        now = time.time() if now_s is None else now_s
        self.messages += 1
        try:
            levels = self.topics.parse(topic)
            if levels == ("$state",):
                self.state = payload.decode(errors="replace")
                if self.state in ("error", "lost", "degraded"):
                    self.alarms.append(f"node state {self.state}")
                return
            body = json.loads(payload)
            if not isinstance(body, dict):
                raise ValueError("payload is not an object")
            if levels == ("$meta",):
                self.meta = body
            elif levels[0] == "run" and len(levels) == 3:
                self._document(body)
            elif levels[0] == "link" and len(levels) == 3:
                self.link.update({k: float(body[k]) for k in _RATE_KEYS if k in body})
            elif levels[0] == "tele" and len(levels) == 3:
                self._telemetry(levels[1], levels[2], body, now)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self.bad_messages += 1

    def _document(self, doc: dict[str, Any]) -> None:
        if not self.runs.add(doc):
            return
        self.run_id = str(doc["run_id"])
        seq = int(doc["seq"])
        self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        data = doc.get("data") or {}
        self.link.update({k: float(data[k]) for k in _RATE_KEYS if k in data})
        for det, counts in (data.get("detector_counts") or {}).items():
            self.detectors[str(det)] = float(counts)
        if "calibrated_ts" in data:
            self.calibrated_ts[str(data.get("instrument", "station"))] = float(
                data["calibrated_ts"]
            )
        if doc.get("stream") == "alarm":
            severity = data.get("severity", "alarm")
            self.alarms.append(f"{severity}: {data.get('message', '?')}")
        if doc.get("kind") == "stop":
            self.alarms.append(f"run {self.run_id} stopped: {data.get('exit_status', '?')}")

    def _telemetry(self, instrument: str, quantity: str, body: dict[str, Any], now: float) -> None:
        if quantity in ("count_rate_hz", "counts"):
            self.detectors[instrument] = float(body[quantity])
        elif (channel := _CHANNEL_RATE.fullmatch(quantity)) is not None:
            self.detectors[f"{instrument} ch{channel.group(1)}"] = float(body[quantity])
        elif quantity == "calibration_age_s":
            self.calibrated_ts[instrument] = now - float(body[quantity])

    def render(self, now_s: float | None = None) -> RenderableType:
        """A rich renderable of the current state."""
        now = time.time() if now_s is None else now_s
        seq = "-" if self.last_seq is None else str(self.last_seq)
        head = Text.assemble(
            ("labctl watch  ", "bold"),
            f"{self.topics.lab}/{self.topics.node}  state: ",
            (self.state, "bold green" if self.state in ("running", "ready") else "bold red"),
            f"  run: {self.run_id or '-'}  seq: {seq}",
        )
        keys = Table(title="key", show_header=True)
        for col in ("QBER Z", "QBER X", "sifted rate (bit/s)", "secret key rate (bit/s)"):
            keys.add_column(col, justify="right")
        keys.add_row(
            _pct(self.link.get("qber_z", self.link.get("qber"))),
            _pct(self.link.get("qber_x")),
            _num(self.link.get("sifted_rate_bps")),
            _num(self.link.get("skr_bps")),
        )
        dets = Table(title="detectors", show_header=True)
        dets.add_column("detector")
        dets.add_column("counts", justify="right")
        for name in sorted(self.detectors):
            dets.add_row(name, _num(self.detectors[name]))
        cal = Table(title="calibration", show_header=True)
        cal.add_column("instrument")
        cal.add_column("age (s)", justify="right")
        for name in sorted(self.calibrated_ts):
            cal.add_row(name, f"{max(0.0, now - self.calibrated_ts[name]):.0f}")
        alarms = Text("alarms: " + ("; ".join(self.alarms) if self.alarms else "none"))
        foot = Text(f"messages: {self.messages} (bad {self.bad_messages})", style="dim")
        return Group(head, keys, dets, cal, alarms, foot)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
