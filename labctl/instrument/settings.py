"""Settings declared once per driver: kind, range, unit, how to apply, re-apply order.

A driver lists its settings as a class attribute, one line each::

    settings = (
        Setting("output", "bool", apply=lambda d, on: d._write(f":POW:STAT {int(on)}"), order=10),
        Setting("power_mw", "number", (0.04, 20.0), apply=lambda d, mw: d._write(f":POW {mw:.2f}")),
    )

From that one declaration :class:`~labctl.instrument.base.DriverBase` derives the station
file's validation (``settings:`` keys and their ranges), the check and the write of a setter
(``await self._set_declared("power_mw", value)``), and the memory that re-applies every remembered
setting after a reconnect, lowest ``order`` first (light last, after what it depends on).
The unit comes from the name (``power_mw`` -> mW, ``labctl.interfaces.units.unit_of``), as
the qcodes bridge shows it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from labctl.instrument.validate import check_bool, check_int, check_number
from labctl.interfaces.units import unit_of

Kind = Literal["number", "integer", "bool"]
Apply = Callable[[Any, Any], Awaitable[None]]
"""(driver, checked value) -> writes the value to the instrument."""


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

    @property
    def unit(self) -> str:
        """The unit its name carries ("" for a bool or a count)."""
        return unit_of(self.name)

    def check(self, instrument: str, value: Any, limits: tuple[float, float] | None = None) -> Any:
        """``value`` as the instrument takes it, or a RefusedValue/RefusedType naming both."""
        low, high = limits or self.limits or (float("-inf"), float("inf"))
        if self.kind == "bool":
            return check_bool(instrument, self.name, value)
        if self.kind == "integer":
            return check_int(instrument, self.name, value, int(low), int(high))
        return check_number(instrument, self.name, value, low, high)
