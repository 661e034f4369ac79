"""What every twin shares: the world it adapts, its lifecycle, link faults and settings checks.

A twin behaves like a driver talking to a device: a closed (or dropped) link raises
ConnectionLost, scheduled link faults (sims.faults) turn calls into the typed errors a
driver would raise, and refused values raise InstrumentFault naming instrument and command.
Waiting (timeouts) happens on the world's virtual clock, never on the wall clock.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar

from labctl.instrument import validate
from labctl.instrument.base import validate_config_settings
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import (
    ConfigError,
    ConnectionLost,
    InstrumentFault,
    InstrumentTimeout,
    ProtocolError,
)
from labctl.interfaces.instrument import LifecycleMixin
from sims.clock import VirtualClock
from sims.faults import Disconnect, FaultSchedule, GarbledReply, Timeout, parse_faults
from sims.twins.world_api import TwinWorld

SettingCheck = Callable[[str, Any], Any]
"""A settings check: (setting name, value) -> the value to use; ValueError or TypeError
naming the setting when the value is refused."""


def check_number(low: float, high: float) -> SettingCheck:
    """A settings check accepting a real number in [low, high] (``check_number`` of the
    instrument kit, the drivers' own)."""
    return lambda setting, value: validate.check_number("settings", setting, value, low, high)


def check_int(low: int, high: int) -> SettingCheck:
    """A settings check accepting an integer in [low, high]."""
    return lambda setting, value: validate.check_int("settings", setting, value, low, high)


W = TypeVar("W", bound=TwinWorld)
"""The part of the world a twin uses (one Protocol per twin: ``sims.twins.world_api``)."""


class SimTwin(LifecycleMixin, Generic[W]):
    """Base of the five twins: lifecycle, link faults and validation against the world."""

    model: ClassVar[str] = "labctl simulated twin"
    settings_checks: ClassVar[Mapping[str, SettingCheck]] = {}

    def __init__(self, name: str, world: W, *, timeout_s: float = 2.0) -> None:
        if not name:
            raise ValueError("a twin needs a non-empty instrument name")
        if not (math.isfinite(timeout_s) and timeout_s > 0.0):
            raise ValueError(f"{name}: timeout_s must be > 0, got {timeout_s!r}")
        self.name = name
        self.world: W = world
        self.timeout_s = timeout_s
        self._connected = False
        self._connected_at_s = 0.0

    # -- building -----------------------------------------------------------------------

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry: the world comes from the station, settings are checked."""
        if context.world is None:
            raise ConfigError(
                f"{spec.class_path} is a simulated twin and needs the station's `world:` "
                "section (none is configured)",
                file=spec.source.file,
                line=spec.source.line,
                field=f"instruments.{spec.name}",
            )
        checks = {"timeout_s": check_number(1e-6, 3600.0), **cls.settings_checks}
        validators = {key: functools.partial(check, key) for key, check in checks.items()}
        validated = validate_config_settings(spec, validators, handled_elsewhere=("faults",))
        faults = spec.settings.get("faults")
        try:
            twin = cls._build(spec.name, context.world, validated)
        except ValueError as err:
            raise ConfigError(
                str(err),
                file=spec.source.file,
                line=spec.source.line,
                field=f"instruments.{spec.name}.settings",
            ) from None
        try:
            parsed = parse_faults(
                faults, where=f"instruments.{spec.name}.settings.faults", instrument=spec.name
            )
        except ConfigError as err:
            raise ConfigError(
                err.message, file=spec.source.file, line=spec.source.line, field=err.field
            ) from None
        for fault in parsed:
            twin.faults.schedule(fault)
        return twin

    @classmethod
    def _build(cls, name: str, world: Any, settings: dict[str, Any]) -> Self:
        """Make the twin from validated settings (ValueError for a bad combination)."""
        return cls(name, world, **settings)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def clock(self) -> VirtualClock:
        """The world's virtual clock."""
        return self.world.clock

    @property
    def faults(self) -> FaultSchedule:
        """The fault schedule shared by every twin of this world."""
        return FaultSchedule.for_world(self.world)

    @property
    def is_connected(self) -> bool:
        """True while the (simulated) link is up."""
        return self._connected

    async def connect(self) -> None:
        """Open the simulated link; ConnectionLost while a scheduled disconnect lasts."""
        now_s = self.clock.now_s()
        if (
            self._connected
            and self.faults.disconnect_between(self.name, self._connected_at_s, now_s) is None
        ):
            return
        self._connected = False
        for fault in self.faults.instrument_faults:
            if isinstance(fault, Disconnect) and fault.instrument == self.name:
                if fault.covers(now_s):
                    raise ConnectionLost(
                        f"device unreachable (link down until sim t={fault.until_s:g} s)",
                        instrument=self.name,
                        command="connect",
                    )
        self._connected = True
        self._connected_at_s = now_s

    async def close(self) -> None:
        """Close the simulated link; the world keeps the settings."""
        self._connected = False

    async def _link(self, command: str, timeout_s: float | None = None) -> None:
        """Pass one command over the link: raise what a driver would for a broken link."""
        if not self._connected:
            raise ConnectionLost(
                "not connected (call connect() first)", instrument=self.name, command=command
            )
        now_s = self.clock.now_s()
        dropped = self.faults.disconnect_between(self.name, self._connected_at_s, now_s)
        if dropped is not None:
            self._connected = False
            raise ConnectionLost(
                f"link dropped at sim t={dropped.at_s:g} s; reconnect needed",
                instrument=self.name,
                command=command,
            )
        fault = self.faults.link_fault(self.name, now_s)
        if isinstance(fault, Timeout):
            wait_s = self.timeout_s if timeout_s is None else timeout_s
            await self.clock.sleep(wait_s)
            raise InstrumentTimeout(
                f"no reply within {wait_s:g} s", instrument=self.name, command=command
            )
        if isinstance(fault, GarbledReply):
            raise ProtocolError(
                "reply does not parse (garbled on the line)", instrument=self.name, command=command
            )

    def _refuse(self, command: str, message: str) -> InstrumentFault:
        """The InstrumentFault a device reports when it refuses ``command``."""
        return InstrumentFault(message, instrument=self.name, command=command)

    def _check_range(self, command: str, what: str, value: float, low: float, high: float) -> None:
        """Refuse ``value`` outside [low, high] (or not a finite number) like the device would."""
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self._refuse(command, f"{what} must be a finite number, got {value!r}")
        if not low <= value <= high:
            raise self._refuse(command, f"{what} {value!r} outside {low:g}..{high:g}")

    def _check_index(self, command: str, what: str, index: int, count: int, first: int = 0) -> None:
        """Refuse an index outside first..first+count-1."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise self._refuse(command, f"{what} must be an integer, got {index!r}")
        if not first <= index < first + count:
            raise self._refuse(
                command, f"{what} {index} does not exist ({first}..{first + count - 1})"
            )

    def _identity(self) -> dict[str, Any]:
        """Identity fields every snapshot starts with."""
        return {"name": self.name, "model": self.model, "simulated": True}
