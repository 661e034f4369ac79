"""Key output only on trust: valid calibrations and no standing alarm.

A key is stored only when every calibration it depends on passed and has not expired, and
no alarm (an attack monitor, a calibration) stood at any time between the start of the
block's acquisition and the monitors' check right after it. Otherwise blocks still run
(acquired, sifted, estimated: the monitors need their statistics) but Bob answers
``key/dropped`` where he would store the key, and Alice drops it too: neither store holds
it.

Every alarm is a document on the run's ``alarm`` stream (``events.jsonl`` and MQTT
``run/{run_id}/alarm``): ``{"action": "raised", "source", "message", "severity"}`` when it
is raised and ``{"action": "cleared", ...}`` when its condition is gone. The summary lists
every alarm with the run-clock times it was raised and cleared and what key output was
when the run ended (``trust`` in summary.json).

Settings: the ``trust:`` section of the station file (:class:`TrustSettings`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from labctl.interfaces.errors import ConfigError
from labctl.store.calibration import Calibration

REQUIRED_CALIBRATIONS = ("delays", "detectors", "polarization", "mean_photon_number", "switch")
"""What key depends on: timing, detector response, alignment, photon numbers, routing."""


@dataclass(frozen=True)
class TrustSettings:
    """The ``trust:`` section: what key depends on and how the attack monitors judge."""

    require: tuple[str, ...] = REQUIRED_CALIBRATIONS
    """Calibrations that must have passed and not expired for any key to be stored."""
    check_probability: float = 0.25
    """Chance, after each block, of a dark check on the switch's parking port (random
    times: Eve cannot know when it comes); every block while a dark-count alarm stands."""
    dark_integration_s: float = 0.05
    """Count time of the dark check: enough darks that zero of them is significant."""
    alpha: float = 1e-6
    """False-alarm probability of each statistical test (dark counts, QBER)."""
    current_tolerance_ua: float = 0.05
    """A detector's measured current above its bias by more than this: light on it."""
    qber_margin: float = 0.03
    """QBER significantly above the calibrated QBER plus this: intercept-resend alarm."""
    qber_floor_fraction: float = 0.25
    """QBER significantly below this share of the calibrated QBER: faked states."""
    crosstalk_margin: float = 10.0
    """The dark check's upper bound allows this many times the calibrated crosstalk leak."""
    decoy_gain_margin: float = 0.05
    """A middle intensity class may detect this share more or less than a passive lossy
    channel through the extreme classes predicts (intensity settings, detector dead time)."""
    click_rate_factor: float = 4.0
    """Clicks per pulse above this many times what the calibrated mean photon numbers give
    through the calibrated link: light the source cannot make (blinding). A block's tags
    are counted, no longer kept, once its clicks pass the ceiling."""

    @classmethod
    def from_section(
        cls, section: Mapping[str, Any] | None, *, file: str | None = None
    ) -> TrustSettings:
        """Validate a ``trust:`` mapping (None = defaults); ConfigError names the key."""
        values = dict(section or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {unknown}; known: {sorted(known)}", file=file, field="trust"
            )
        out: dict[str, Any] = {}
        for name, value in values.items():
            where = f"trust.{name}"
            if name == "require":
                if isinstance(value, str) or not isinstance(value, list | tuple):
                    raise ConfigError(
                        f"must be a list of calibration names, got {value!r}",
                        file=file,
                        field=where,
                    )
                out[name] = tuple(str(v) for v in value)
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"must be a number, got {value!r}", file=file, field=where)
            number = float(value)
            if name in ("check_probability", "qber_floor_fraction") and not 0.0 <= number <= 1.0:
                raise ConfigError(f"must be in [0, 1], got {value!r}", file=file, field=where)
            if name == "alpha" and not 0.0 < number < 1.0:
                raise ConfigError(f"must be in (0, 1), got {value!r}", file=file, field=where)
            if not math.isfinite(number) or number < 0.0:
                raise ConfigError(f"must be finite and >= 0, got {value!r}", file=file, field=where)
            if name == "click_rate_factor" and number < 1.0:
                raise ConfigError(f"must be >= 1, got {value!r}", file=file, field=where)
            if name == "dark_integration_s" and number <= 0.0:
                raise ConfigError(f"must be > 0, got {value!r}", file=file, field=where)
            out[name] = number
        return cls(**out)


class AlarmSink(Protocol):
    """Where alarms go: the run's documents (events.jsonl, MQTT) and log."""

    def emit(self, stream: str, data: dict[str, Any]) -> Any: ...


class CalibrationSource(Protocol):
    """The calibration store as the gate reads it."""

    def all(self) -> list[Calibration]: ...


@dataclass
class Alarm:
    """One alarm: raised at ``raised_s`` (run clock), cleared at ``cleared_s`` (None: stands)."""

    source: str
    message: str
    raised_s: float
    cleared_s: float | None = None

    def overlaps(self, t0_s: float, t1_s: float) -> bool:
        """True when the alarm stood at some time in [t0_s, t1_s]."""
        end = math.inf if self.cleared_s is None else self.cleared_s
        return self.raised_s <= t1_s and end >= t0_s


@dataclass
class BlockSpan:
    """A block's acquisition start and the time of the monitors' check after it."""

    start_s: float
    checked_s: float | None = None


SPANS_KEPT = 256
"""Block spans kept for verdicts: far more blocks than post-processing ever lags behind."""


@dataclass
class TrustGate:
    """Alarms, calibration validity and the per-block verdict: store the key or not."""

    sink: AlarmSink
    settings: TrustSettings = field(default_factory=TrustSettings)
    alarms: list[Alarm] = field(default_factory=list)
    spans: dict[int, BlockSpan] = field(default_factory=dict)
    held_blocks: int = 0
    """Blocks whose key was not stored because of the gate."""
    failed_in_run: dict[str, tuple[float, str]] = field(default_factory=dict)
    """Calibrations that failed in this run: (time, reason); a later pass supersedes."""

    # -- alarms --------------------------------------------------------------------------
    def standing(self, source: str | None = None) -> list[Alarm]:
        """Alarms not cleared (of ``source`` only, when given)."""
        return [
            a for a in self.alarms if a.cleared_s is None and (source is None or a.source == source)
        ]

    def set(self, source: str, message: str | None, now_s: float) -> None:
        """Raise ``source``'s alarm with ``message``, or clear it when ``message`` is None."""
        current = self.standing(source)
        if message is None:
            for alarm in current:
                alarm.cleared_s = now_s
                self.sink.emit(
                    "alarm",
                    {
                        "action": "cleared",
                        "severity": "info",
                        "source": source,
                        "message": f"cleared: {alarm.message}",
                        "raised_s": alarm.raised_s,
                        "cleared_s": now_s,
                        "key_output": "open" if not self.standing() else "stopped",
                    },
                )
            return
        if current:
            return  # still standing: one alarm per episode, not one per check
        self.alarms.append(Alarm(source, message, now_s))
        self.sink.emit(
            "alarm",
            {
                "action": "raised",
                "severity": "alarm",
                "source": source,
                "message": message,
                "raised_s": now_s,
                "key_output": "stopped",
            },
        )

    # -- calibrations --------------------------------------------------------------------
    def calibration_failed(self, kind: str, reason: str, now_s: float) -> None:
        """A routine of this run failed: key depends on it, so output stops until it passes."""
        self.failed_in_run[kind] = (now_s, reason)

    def check_calibrations(self, store: CalibrationSource | None, now_s: float) -> None:
        """Raise (or clear) the ``calibration`` alarm from the store and this run's failures."""
        latest: dict[str, Calibration] = {}
        entries = [] if store is None else store.all()
        for stored in entries:
            if stored.kind not in latest or stored.time_s > latest[stored.kind].time_s:
                latest[stored.kind] = stored
        problems = []
        for kind in self.settings.require:
            entry = latest.get(kind)
            failed = self.failed_in_run.get(kind)
            if failed is not None and (entry is None or entry.time_s <= failed[0]):
                problems.append(f"{kind} failed: {failed[1]}")
            elif entry is None:
                problems.append(f"{kind} never passed")
            elif not entry.is_valid(now_s):
                problems.append(f"{kind} expired at {entry.expires_s:.0f} s")
        self.set("calibration", "; ".join(problems) if problems else None, now_s)

    # -- blocks --------------------------------------------------------------------------
    def block_started(self, block: int, now_s: float) -> None:
        """Block ``block`` starts acquiring now."""
        self.spans[block] = BlockSpan(now_s)
        while len(self.spans) > SPANS_KEPT:  # oldest first: a night is thousands of blocks
            del self.spans[next(iter(self.spans))]

    def block_checked(self, block: int, now_s: float) -> None:
        """The monitors have checked the link after block ``block``."""
        span = self.spans.get(block)
        if span is not None:
            span.checked_s = now_s

    def verdict(self, block: int, per_block: frozenset[str] = frozenset()) -> str | None:
        """Why block ``block``'s key must not be stored, or None (store it).

        A standing alarm holds every block; an alarm that stood at some time during the
        block's acquisition or up to the check after it holds that block too, except the
        ``per_block`` ones, whose evidence is each block's own statistics (already judged
        on this block when the verdict is asked).
        """
        span = self.spans.get(block)
        if span is None or span.checked_s is None:
            return "no monitor check after the block"
        reasons = [
            f"{a.source}: {a.message}"
            for a in self.alarms
            if a.cleared_s is None
            or (a.source not in per_block and a.overlaps(span.start_s, span.checked_s))
        ]
        if reasons:
            self.held_blocks += 1
            return "; ".join(dict.fromkeys(reasons))
        return None

    def summary(self) -> dict[str, Any]:
        """The ``trust`` entry of summary.json."""
        standing = self.standing()
        return {
            "key_output": "stopped" if standing else "open",
            "reason": "; ".join(f"{a.source}: {a.message}" for a in standing),
            "held_blocks": self.held_blocks,
            "alarms": [
                {
                    "source": a.source,
                    "message": a.message,
                    "raised_s": a.raised_s,
                    "cleared_s": a.cleared_s,
                }
                for a in self.alarms
            ],
        }
