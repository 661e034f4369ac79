"""Fault injection for the simulated lab, scheduled by simulated time.

Two families of faults:

* instrument faults (``Disconnect``, ``Timeout``, ``GarbledReply``) hit the link to one named
  twin during a window of sim time; the twin raises the typed error a real driver would
  (ConnectionLost, InstrumentTimeout, ProtocolError);
* world faults (``DetectorLatch``, ``DriftJump``, ``AttackWindow``, ``BlindingWindow``,
  ``TaggerOverflow``)
  change the shared optical world at their sim time, through a timer on the world's
  virtual clock, so every twin sees them at once.

One ``FaultSchedule`` per world (``FaultSchedule.for_world(world)``). Faults come from the
``faults:`` list in any twin's settings (instrument faults default to that twin) or from the
API: ``FaultSchedule.for_world(world).schedule(Disconnect(at_s=2.0, duration_s=1.0,
instrument="laser"))``.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from labctl.interfaces.errors import ConfigError
from sims.clock import VirtualClock

DETECTOR_NAMES = ("Z0", "Z1", "X0", "X1")
TAGGER_SIDES = ("alice", "bob")


def _check_time(owner: str, name: str, value: float, *, positive: bool = False) -> None:
    """Raise ValueError unless ``value`` is a finite non-negative (or positive) time."""
    if not math.isfinite(value) or value < 0.0 or (positive and value == 0.0):
        need = "a finite time > 0 s" if positive else "a finite time >= 0 s"
        raise ValueError(f"{owner}.{name}: must be {need}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Fault:
    """Base of every fault: ``at_s`` is the sim time (seconds since sim start) it begins."""

    at_s: float
    kind: ClassVar[str] = "fault"

    def __post_init__(self) -> None:
        _check_time(type(self).__name__, "at_s", self.at_s)


@dataclass(frozen=True, slots=True)
class LinkFault(Fault):
    """A fault on the link to one twin during ``[at_s, at_s + duration_s)``."""

    duration_s: float = 1.0
    instrument: str | None = None

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        _check_time(type(self).__name__, "duration_s", self.duration_s, positive=True)

    @property
    def until_s(self) -> float:
        """Sim time at which the window closes."""
        return self.at_s + self.duration_s

    def covers(self, now_s: float) -> bool:
        """True while ``now_s`` lies inside the window."""
        return self.at_s <= now_s < self.until_s


@dataclass(frozen=True, slots=True)
class Disconnect(LinkFault):
    """The link drops at ``at_s``; connect() fails until the window ends, then works again."""

    kind: ClassVar[str] = "disconnect"


@dataclass(frozen=True, slots=True)
class Timeout(LinkFault):
    """Calls inside the window get no answer: they wait their timeout, then InstrumentTimeout.

    ``count`` limits how many calls are swallowed (None = every call in the window).
    """

    count: int | None = None
    kind: ClassVar[str] = "timeout"

    def __post_init__(self) -> None:
        LinkFault.__post_init__(self)
        if self.count is not None and self.count < 1:
            raise ValueError(f"Timeout.count: must be >= 1 or null, got {self.count!r}")


@dataclass(frozen=True, slots=True)
class GarbledReply(LinkFault):
    """Replies inside the window do not parse (ProtocolError); ``count`` calls at most."""

    duration_s: float = math.inf
    count: int | None = 1
    kind: ClassVar[str] = "garbled"

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        if not self.duration_s > 0.0:
            raise ValueError(f"GarbledReply.duration_s: must be > 0 s, got {self.duration_s!r}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"GarbledReply.count: must be >= 1 or null, got {self.count!r}")


@dataclass(frozen=True, slots=True)
class DetectorLatch(Fault):
    """Detector ``detector`` (0..3 = Z0, Z1, X0, X1) latches and stays latched until reset."""

    detector: int = 0
    kind: ClassVar[str] = "latch"

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        if not 0 <= self.detector < len(DETECTOR_NAMES):
            raise ValueError(f"DetectorLatch.detector: must be 0..3, got {self.detector!r}")


@dataclass(frozen=True, slots=True)
class DriftJump(Fault):
    """The fiber's polarization rotation jumps by ``angle_rad`` (about ``axis``, random if None)."""

    angle_rad: float = 0.0
    axis: tuple[float, float, float] | None = None
    kind: ClassVar[str] = "drift_jump"

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        if not math.isfinite(self.angle_rad):
            raise ValueError(f"DriftJump.angle_rad: must be finite, got {self.angle_rad!r}")
        if self.axis is not None:
            if len(self.axis) != 3 or not any(a != 0.0 for a in self.axis):
                raise ValueError(f"DriftJump.axis: must be a non-zero 3-vector, got {self.axis!r}")


@dataclass(frozen=True, slots=True)
class AttackWindow(Fault):
    """Eve intercepts and resends a fraction ``fraction`` of pulses from at_s to until_s."""

    until_s: float = math.inf
    fraction: float = 1.0
    kind: ClassVar[str] = "attack"

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        if not self.until_s > self.at_s:
            raise ValueError(
                f"AttackWindow.until_s: must be after at_s={self.at_s}, got {self.until_s!r}"
            )
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"AttackWindow.fraction: must be in [0, 1], got {self.fraction!r}")


@dataclass(frozen=True, slots=True)
class BlindingWindow(Fault):
    """Eve blinds Bob's detectors and resends faked states from at_s to until_s.

    The physics (CW power, trigger margin, thresholds) is the world's
    (``world.settings.eve``, ``sims/world/blinding.py``); the window only switches it.
    """

    until_s: float = math.inf
    kind: ClassVar[str] = "blinding"

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        if not self.until_s > self.at_s:
            raise ValueError(
                f"BlindingWindow.until_s: must be after at_s={self.at_s}, got {self.until_s!r}"
            )


@dataclass(frozen=True, slots=True)
class TaggerOverflow(Fault):
    """The ``side`` tagger ('alice' or 'bob') drops every tag for ``duration_s``, flagged."""

    side: str = "bob"
    duration_s: float = 0.1
    kind: ClassVar[str] = "overflow"

    def __post_init__(self) -> None:
        Fault.__post_init__(self)
        if self.side not in TAGGER_SIDES:
            raise ValueError(f"TaggerOverflow.side: must be 'alice' or 'bob', got {self.side!r}")
        _check_time("TaggerOverflow", "duration_s", self.duration_s, positive=True)


FAULT_KINDS: dict[str, type[Fault]] = {
    cls.kind: cls
    for cls in (
        Disconnect,
        Timeout,
        GarbledReply,
        DetectorLatch,
        DriftJump,
        AttackWindow,
        BlindingWindow,
        TaggerOverflow,
    )
}


@dataclass(slots=True)
class _Window:
    """An instrument fault as scheduled, with the calls it may still swallow."""

    fault: LinkFault
    remaining: int | None


@dataclass(eq=False, slots=True)
class _Pending:
    """A world-fault action waiting on the clock (compared by identity)."""

    at_s: float
    fault: Fault


@dataclass(slots=True)
class _Fired:
    """A world fault that has been applied, and when (for logs and tests)."""

    fault: Fault
    applied_at_s: float


class FaultWorld(Protocol):
    """What the world faults change (``sims.world.World`` implements it)."""

    clock: VirtualClock

    def set_eve_fraction(self, fraction: float) -> None: ...
    def set_blinding(self, enabled: bool) -> None: ...
    def latch_detector(self, detector: int) -> None: ...
    def jump_polarization(self, angle_rad: float, axis: Sequence[float] | None = None) -> None: ...
    def force_tagger_overflow(self, side: str, duration_s: float) -> None: ...


_SCHEDULES: weakref.WeakKeyDictionary[FaultWorld, FaultSchedule] = weakref.WeakKeyDictionary()


@dataclass(eq=False)
class FaultSchedule:
    """Every fault planned for one simulated world, by sim time."""

    world: FaultWorld
    _windows: list[_Window] = field(default_factory=list)
    _fired: list[_Fired] = field(default_factory=list)
    _pending: list[_Pending] = field(default_factory=list)

    @classmethod
    def for_world(cls, world: FaultWorld) -> FaultSchedule:
        """The schedule shared by every twin of ``world`` (created on first use)."""
        schedule = _SCHEDULES.get(world)
        if schedule is None:
            schedule = cls(world)
            _SCHEDULES[world] = schedule
        return schedule

    def schedule(self, fault: Fault) -> None:
        """Plan ``fault``; a world fault due now or earlier is applied at once."""
        if isinstance(fault, LinkFault):
            if not fault.instrument:
                raise ValueError(f"{type(fault).__name__}.instrument: name the twin it hits")
            count = fault.count if isinstance(fault, Timeout | GarbledReply) else None
            self._windows.append(_Window(fault, count))
            return
        clock = self.world.clock
        if isinstance(fault, AttackWindow):
            self._at(clock, fault.at_s, fault, lambda: self.world.set_eve_fraction(fault.fraction))
            if math.isfinite(fault.until_s):
                self._at(clock, fault.until_s, fault, lambda: self.world.set_eve_fraction(0.0))
        elif isinstance(fault, BlindingWindow):
            self._at(clock, fault.at_s, fault, lambda: self.world.set_blinding(True))
            if math.isfinite(fault.until_s):
                self._at(clock, fault.until_s, fault, lambda: self.world.set_blinding(False))
        elif isinstance(fault, DetectorLatch):
            self._at(clock, fault.at_s, fault, lambda: self.world.latch_detector(fault.detector))
        elif isinstance(fault, DriftJump):
            axis = None if fault.axis is None else list(fault.axis)
            self._at(
                clock,
                fault.at_s,
                fault,
                lambda: self.world.jump_polarization(fault.angle_rad, axis),
            )
        elif isinstance(fault, TaggerOverflow):
            self._at(
                clock,
                fault.at_s,
                fault,
                lambda: self.world.force_tagger_overflow(fault.side, fault.duration_s),
            )
        else:
            raise TypeError(f"unknown fault type {type(fault).__name__}")

    def _at(
        self, clock: VirtualClock, at_s: float, fault: Fault, action: Callable[[], None]
    ) -> None:
        """Run ``action`` at sim time ``at_s`` (now if that has passed), recording it."""
        entry = _Pending(at_s, fault)

        def fire() -> None:
            action()
            self._fired.append(_Fired(fault, clock.now_s()))
            if entry in self._pending:
                self._pending.remove(entry)

        if at_s <= clock.now_s():
            fire()
        else:
            self._pending.append(entry)
            clock.call_at(at_s, fire)

    def link_fault(self, instrument: str, now_s: float) -> LinkFault | None:
        """The instrument fault hitting a call to ``instrument`` at ``now_s``, if any.

        A Timeout or GarbledReply with a ``count`` is used up by this call.
        """
        for window in self._windows:
            fault = window.fault
            if isinstance(fault, Disconnect):
                continue  # a dropped link is tracked by disconnect_between, not per call
            if fault.instrument != instrument or not fault.covers(now_s):
                continue
            if window.remaining is not None:
                if window.remaining <= 0:
                    continue
                window.remaining -= 1
            return fault
        return None

    def disconnect_between(self, instrument: str, t0_s: float, t1_s: float) -> Disconnect | None:
        """A Disconnect of ``instrument`` whose window overlaps ``[t0_s, t1_s]``, if any."""
        for window in self._windows:
            fault = window.fault
            if (
                isinstance(fault, Disconnect)
                and fault.instrument == instrument
                and fault.at_s <= t1_s
                and fault.until_s > t0_s
            ):
                return fault
        return None

    @property
    def fired(self) -> list[tuple[float, Fault]]:
        """World faults applied so far, as (sim time applied, fault)."""
        return [(f.applied_at_s, f.fault) for f in self._fired]

    @property
    def pending(self) -> list[tuple[float, Fault]]:
        """World-fault actions still waiting, as (sim time due, fault); an attack has two."""
        return [(p.at_s, p.fault) for p in self._pending]

    @property
    def instrument_faults(self) -> list[LinkFault]:
        """Every instrument fault scheduled (past, current and future)."""
        return [w.fault for w in self._windows]


def parse_fault(entry: Any, *, where: str, instrument: str | None = None) -> Fault:
    """Build one fault from a config mapping (``kind:`` plus its fields); ConfigError if bad."""
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"a fault is a mapping with 'kind' and 'at_s', got {entry!r}", field=where
        )
    kind = entry.get("kind")
    cls = FAULT_KINDS.get(str(kind))
    if cls is None:
        kinds = ", ".join(sorted(FAULT_KINDS))
        raise ConfigError(f"unknown fault kind {kind!r} (one of: {kinds})", field=f"{where}.kind")
    allowed = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "kind":
            continue
        if key not in allowed:
            raise ConfigError(
                f"unknown field for a {kind!r} fault (allowed: {', '.join(sorted(allowed))})",
                field=f"{where}.{key}",
            )
        values[str(key)] = _coerce(key, value, where)
    if "at_s" not in values:
        raise ConfigError("missing 'at_s' (sim time the fault starts, s)", field=f"{where}.at_s")
    if issubclass(cls, LinkFault) and values.get("instrument") is None:
        values["instrument"] = instrument
    if cls is DetectorLatch and isinstance(values.get("detector"), str):
        name = values["detector"]
        if name not in DETECTOR_NAMES:
            raise ConfigError(
                f"unknown detector {name!r} (one of {', '.join(DETECTOR_NAMES)} or 0..3)",
                field=f"{where}.detector",
            )
        values["detector"] = DETECTOR_NAMES.index(name)
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err), field=where) from None


def _coerce(key: str, value: Any, where: str) -> Any:
    """Turn YAML scalars into the types the fault dataclasses hold."""
    if key == "axis" and value is not None:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError("axis must be a list of 3 numbers", field=f"{where}.axis")
        return tuple(float(v) for v in value)
    if key.endswith("_s") or key in ("fraction", "angle_rad"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"must be a number, got {value!r}", field=f"{where}.{key}")
        return float(value)
    if (
        key == "count"
        and value is not None
        and (isinstance(value, bool) or not isinstance(value, int))
    ):
        raise ConfigError(f"must be an integer or null, got {value!r}", field=f"{where}.{key}")
    return value


def parse_faults(entries: Any, *, where: str, instrument: str | None = None) -> list[Fault]:
    """Build the ``faults:`` list of a twin's settings; instrument faults default to that twin."""
    if entries is None:
        return []
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise ConfigError(f"must be a list of faults, got {entries!r}", field=where)
    return [
        parse_fault(entry, where=f"{where}[{i}]", instrument=instrument)
        for i, entry in enumerate(entries)
    ]
