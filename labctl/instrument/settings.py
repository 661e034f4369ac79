"""Settings declared once per driver: kind, range, unit, how to apply, re-apply order.

A driver lists its settings as a class attribute, one line each::

    settings = (
        Setting("output", "bool", apply=lambda d, on: d._write(f":POW:STAT {int(on)}"), order=10),
        Setting("power_mw", "number", (0.04, 20.0), apply=lambda d, mw: d._write(f":POW {mw:.2f}")),
    )

From that one declaration :class:`~labctl.instrument.base.DriverBase` derives the station
file's validation (``settings:`` keys and their ranges), the check and the write of a setter
(``await self._set_declared("power_mw", value)``), the memory that re-applies every remembered
setting after a reconnect, lowest ``order`` first (light last, after what it depends on), and,
from ``read``, the settings part of ``snapshot()`` (``await self._declared_snapshot()``).
The unit comes from the name (``power_mw`` -> mW, ``labctl.interfaces.units.unit_of``), as
the qcodes bridge shows it.

A setting with one value per channel (a detector's ``bias_ua``) gives ``channels``, the most
channels a station file may list; ``apply`` then writes the whole list, and ``apply_channel``
(when the device takes one channel per command) writes one channel, so a setter
(``await self._set_declared_channel("voltages_mv", axis, mv)``) writes and remembers only that
channel, and a reconnect re-applies each channel on its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from labctl.instrument.validate import (
    RefusedType,
    RefusedValue,
    check_bool,
    check_int,
    check_number,
)
from labctl.interfaces.units import unit_of

Kind = Literal["number", "integer", "bool"]
Apply = Callable[[Any, Any], Awaitable[None]]
"""(driver, checked value) -> writes the value to the instrument."""
ApplyChannel = Callable[[Any, int, Any], Awaitable[None]]
"""(driver, 0-based channel, checked value) -> writes one channel's value."""
Read = Callable[[Any], Awaitable[Any]]
"""driver -> the value as the instrument reports it (for ``snapshot()``)."""


@dataclass(frozen=True)
class Setting:
    """One remembered setting of a driver (see the module doc)."""

    name: str
    """With its unit in it (``power_mw``, ``wavelength_nm``)."""
    kind: Kind
    limits: tuple[float, float] | None = None
    """Range the station file may ask for (a driver may narrow it to the unit it meets)."""
    apply: Apply | None = None
    order: int = 0
    """Re-apply order after a reconnect: lower first."""
    read: Read | None = None
    """Reads the value back; declared settings with one make up ``_declared_snapshot()``."""
    channels: int | None = None
    """One value per channel, at most this many (None: a single value)."""
    min_channels: int = 1
    """The fewest values a per-channel setting takes (``channels`` when every one is needed)."""
    apply_channel: ApplyChannel | None = None
    """Writes one channel's value (a per-channel setting whose device takes one at a time)."""

    @property
    def unit(self) -> str:
        """The unit its name carries ("" for a bool or a count)."""
        return unit_of(self.name)

    def check(self, instrument: str, value: Any, limits: tuple[float, float] | None = None) -> Any:
        """``value`` as the instrument takes it, or a RefusedValue/RefusedType naming both.

        A per-channel setting takes a list of 1 to ``channels`` values, each checked.
        """
        if self.channels is None:
            return self.check_one(instrument, value, limits)
        count = (
            str(self.channels)
            if self.min_channels == self.channels
            else f"{self.min_channels} to {self.channels}"
        )
        if not isinstance(value, list | tuple):
            raise RefusedType(
                f"{self.name} must be a list of {count} values (one per channel), got {value!r}",
                instrument=instrument,
                command=self.name,
            )
        if not self.min_channels <= len(value) <= self.channels:
            raise RefusedValue(
                f"{self.name} needs {count} values (one per channel), got {value!r}",
                instrument=instrument,
                command=self.name,
            )
        return [
            self.check_one(instrument, item, limits, channel=channel)
            for channel, item in enumerate(value)
        ]

    def check_one(
        self,
        instrument: str,
        value: Any,
        limits: tuple[float, float] | None = None,
        *,
        channel: int | None = None,
    ) -> Any:
        """One value (``channel``'s, for a per-channel setting), checked as ``check`` does."""
        low, high = limits or self.limits or (float("-inf"), float("inf"))
        label = self.name if channel is None else f"{self.name}[{channel}]"
        if self.kind == "bool":
            return check_bool(instrument, label, value)
        if self.kind == "integer":
            return check_int(instrument, label, value, int(low), int(high))
        return check_number(instrument, label, value, low, high)
