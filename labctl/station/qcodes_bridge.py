"""Any labctl instrument as a qcodes Instrument, so it joins a qcodes Station and Measurement.

Each interface's settings become qcodes Parameters, the unit read from the name
(``labctl.interfaces.units.unit_of``): laser ``output``,
``power_mw`` (mW), ``wavelength_nm`` (nm); polarization controller ``voltage_<axis>_mv``
(mV); detector ``ch<i>_enabled``, ``ch<i>_bias_ua`` (µA), ``ch<i>_trigger_level_mv`` (mV)
and read-only ``ch<i>_count_rate_hz`` over ``integration_s``; time tagger
``ch<i>_delay_ps`` (ps) and ``ch<i>_count_rate_hz``; switch ``port``.

qcodes is synchronous and labctl asynchronous: the instrument lives on one event loop (the
one that connected it) and every parameter call runs its coroutine there from the calling
thread (``asyncio.run_coroutine_threadsafe``) and waits at most ``timeout_s``. Calling a
parameter from that loop's own thread would block the loop the coroutine needs, so it
raises LoopThreadError at once instead of deadlocking: use ``await`` on the labctl
instrument there, or open the station with ``labctl.notebook.open_station``, which runs it on
a loop of its own so that parameters work from any thread and any running loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

from qcodes.instrument import Instrument as QcodesInstrument
from qcodes.parameters import Parameter
from qcodes.validators import Bool, Ints, Numbers

from labctl.interfaces.devices import (
    Laser,
    OpticalSwitch,
    PolarizationController,
    SinglePhotonDetector,
    TimeTagger,
)
from labctl.interfaces.errors import LabctlError
from labctl.interfaces.units import unit_of

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 30.0


class LoopThreadError(LabctlError, RuntimeError):
    """A synchronous qcodes call was made on the thread of the loop that must serve it."""


class LoopCaller:
    """Runs coroutines on ``loop`` (running in another thread) and waits for their results."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, timeout_s: float = DEFAULT_TIMEOUT_S):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.loop = loop
        self.timeout_s = timeout_s

    def call(self, make: Callable[[], Coroutine[Any, Any, T]], what: str) -> T:
        """``make()`` run on the loop; LoopThreadError when called from the loop's thread."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop or (running is None and _loop_thread_is_current(self.loop)):
            raise LoopThreadError(
                f"{what}: a qcodes parameter was called on the event loop's own thread, which "
                "would deadlock; await the labctl instrument there instead, or open the "
                "station with labctl.notebook.open_station (its own loop thread)"
            )
        if self.loop.is_closed() or not self.loop.is_running():
            raise LoopThreadError(f"{what}: the instrument's event loop is not running")
        future = asyncio.run_coroutine_threadsafe(make(), self.loop)
        try:
            return future.result(self.timeout_s)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"{what}: no result within {self.timeout_s:g} s") from None


Setter = Callable[[int, Any], Coroutine[Any, Any, Any]]


def _call_with_float(setter: Setter, index: int, value: Any) -> Coroutine[Any, Any, Any]:
    """``setter(index, float(value))``: qcodes may hand numpy scalars, labctl wants floats."""
    return setter(index, float(value))


def _call_with_int(setter: Setter, index: int, value: Any) -> Coroutine[Any, Any, Any]:
    """``setter(index, int(value))``."""
    return setter(index, int(value))


def _call_with_bool(setter: Setter, index: int, value: Any) -> Coroutine[Any, Any, Any]:
    """``setter(index, bool(value))``."""
    return setter(index, bool(value))


def _loop_thread_is_current(loop: asyncio.AbstractEventLoop) -> bool:
    """True when ``loop`` is being run by this thread (best effort for non-running calls)."""
    thread_id = getattr(loop, "_thread_id", None)
    return thread_id is not None and thread_id == threading.get_ident()


class LabctlQcodesInstrument(QcodesInstrument):  # type: ignore[misc]
    """A qcodes Instrument whose Parameters are the settings of one labctl instrument."""

    def __init__(
        self,
        instrument: Any,
        caller: LoopCaller,
        *,
        name: str | None = None,
        integration_s: float = 0.01,
        **kwargs: Any,
    ) -> None:
        super().__init__(name or qcodes_name(instrument.name), **kwargs)
        self.labctl = instrument
        self._caller = caller
        self.add_parameter(
            "integration_s",
            parameter_class=Parameter,
            unit=unit_of("integration_s"),
            initial_value=integration_s,
            vals=Numbers(1e-6, 3600.0),
            get_cmd=None,
            set_cmd=None,
            docstring="integration time of the count-rate parameters",
        )
        if isinstance(instrument, Laser):
            self._add_laser(instrument)
        if isinstance(instrument, PolarizationController):
            self._add_polarization(instrument)
        if isinstance(instrument, SinglePhotonDetector):
            self._add_detector(instrument)
        if isinstance(instrument, TimeTagger):
            self._add_tagger(instrument)
        if isinstance(instrument, OpticalSwitch):
            self._add_switch(instrument)

    def _run(self, what: str) -> Callable[[Callable[[], Coroutine[Any, Any, T]]], T]:
        # Bound now: qcodes strips an instrument's attributes on close(), and a parameter
        # kept past it must still say that the loop is gone rather than AttributeError.
        caller, where = self._caller, f"{self.name}.{what}"
        return lambda make: caller.call(make, where)

    def _setting(
        self,
        name: str,
        get: Callable[[], Coroutine[Any, Any, Any]],
        set_: Callable[[Any], Coroutine[Any, Any, Any]] | None,
        *,
        vals: Any = None,
        label: str | None = None,
    ) -> None:
        run = self._run(name)
        self.add_parameter(
            name,
            parameter_class=Parameter,
            label=label or name,
            unit=unit_of(name),  # the name carries it, as everywhere in labctl
            vals=vals,
            get_cmd=lambda: run(get),
            set_cmd=False if set_ is None else (lambda value: run(lambda: set_(value))),
        )

    def _add_laser(self, laser: Any) -> None:
        self._setting("output", laser.get_output, laser.set_output, vals=Bool())
        self._setting("power_mw", laser.get_power_mw, laser.set_power_mw)
        self._setting("wavelength_nm", laser.get_wavelength_nm, laser.set_wavelength_nm)

    def _add_polarization(self, pc: Any) -> None:
        low, high = pc.voltage_range_mv
        for axis in range(pc.n_axes):

            async def get(axis: int = axis) -> float:
                return float((await pc.get_voltages_mv())[axis])

            self._setting(
                f"voltage_{axis}_mv",
                get,
                partial(_call_with_float, pc.set_voltage_mv, axis),
                vals=Numbers(low, high),
            )

    def _add_detector(self, det: Any) -> None:
        for ch in range(det.n_channels):
            self._setting(
                f"ch{ch}_enabled",
                partial(det.get_enabled, ch),
                partial(_call_with_bool, det.set_enabled, ch),
                vals=Bool(),
            )
            self._setting(
                f"ch{ch}_bias_ua",
                partial(det.get_bias_ua, ch),
                partial(_call_with_float, det.set_bias_ua, ch),
            )
            self._setting(
                f"ch{ch}_trigger_level_mv",
                partial(det.get_trigger_level_mv, ch),
                partial(_call_with_float, det.set_trigger_level_mv, ch),
            )
        self._add_rates(det)

    def _add_tagger(self, tagger: Any) -> None:
        for ch in range(tagger.n_channels):
            self._setting(
                f"ch{ch}_delay_ps",
                partial(tagger.get_channel_delay_ps, ch),
                partial(_call_with_int, tagger.set_channel_delay_ps, ch),
                vals=Ints(),
            )
        self._add_rates(tagger)

    def _add_rates(self, counter: Any) -> None:
        for ch in range(counter.n_channels):

            async def rate(ch: int = ch) -> float:
                rates = await counter.get_count_rates_hz(float(self.integration_s.cache.get()))
                return float(rates[ch])

            self._setting(f"ch{ch}_count_rate_hz", rate, None)

    def _add_switch(self, switch: Any) -> None:
        self._setting("port", switch.get_port, switch.set_port, vals=Ints(1, switch.n_ports))

    def get_idn(self) -> dict[str, str | None]:
        """Identity for qcodes: the labctl class as model, nothing read over the wire."""
        return {
            "vendor": "labctl",
            "model": type(self.labctl).__name__,
            "serial": self.labctl.name,
            "firmware": None,
        }


def qcodes_name(name: str) -> str:
    """A labctl instrument id (``tagger-bob``) as a qcodes/Python identifier (``tagger_bob``)."""
    text = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return text if text and not text[0].isdigit() else f"i_{text}"


def bridge(
    instrument: Any,
    loop: asyncio.AbstractEventLoop,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    name: str | None = None,
) -> LabctlQcodesInstrument:
    """Wrap a connected labctl ``instrument`` living on ``loop`` (running in another thread)."""
    return LabctlQcodesInstrument(instrument, LoopCaller(loop, timeout_s=timeout_s), name=name)


def bridge_station(
    instruments: dict[str, Any], loop: asyncio.AbstractEventLoop, qcodes_station: Any
) -> dict[str, LabctlQcodesInstrument]:
    """Bridge every instrument and add it to ``qcodes_station``; returns them by labctl name."""
    bridged = {name: bridge(inst, loop) for name, inst in instruments.items()}
    for wrapped in bridged.values():
        qcodes_station.add_component(wrapped)
    return bridged
