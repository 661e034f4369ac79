"""Keysight N7776C tunable laser source: SCPI over a LAN socket (port 5025) or VISA.

Protocol facts (N7776C / 8164B programming guide, public drivers): commands and replies end
in LF; ``*IDN?`` answers ``Keysight Technologies,N7776C,<serial>,<firmware>`` (older units
``Agilent Technologies``); the laser is slot 0: ``:SOUR0:POW:STAT 1|0`` switches the
output, ``:SOUR0:POW:UNIT 1`` selects watts so the power query answers in W
(``+1.50000000E-003``), ``:SOUR0:POW <value>MW`` sets it with an explicit unit;
``:SOUR0:WAV <value>NM`` tunes and the wavelength query answers in metres; ``:SOUR0:WAV?
MIN``/``MAX`` give the tuning band and ``:SOUR0:POW? MIN``/``MAX`` the power range.
``:LOCK?`` reports the laser lock (a locked laser cannot switch on). Setting commands
answer nothing, so after each one the driver reads ``:SYST:ERR?`` (``+0,"No error"``, or a
negative SCPI code and text, raised as InstrumentFault naming the command).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self, TypeVar

from labctl.instrument.base import (
    DriverBase,
    make_transport,
    require_transport,
    validate_config_settings,
    with_default_options,
)
from labctl.instrument.recovery import resend_garbled
from labctl.instrument.scpi import ScpiLink
from labctl.instrument.settings import Setting
from labctl.instrument.validate import parse_float, parse_on_off
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health
from labctl.transport.base import Transport

T = TypeVar("T")

VENDORS = ("KEYSIGHT TECHNOLOGIES", "AGILENT TECHNOLOGIES")
ORDER_TUNING = 0
ORDER_OUTPUT = 10  # light goes on only after power and wavelength are back


class N7776C(DriverBase):
    """Driver for the Keysight N7776C (implements labctl's Laser interface)."""

    model = "Keysight N7776C"
    nominal_power_range_mw = (0.01, 20.0)
    nominal_wavelength_range_nm = (1480.0, 1620.0)
    settings = (
        Setting(
            "output",
            "bool",
            None,
            lambda d, on: d._write(f":SOUR0:POW:STAT {int(on)}"),
            ORDER_OUTPUT,
            read=lambda d: d.get_output(),
        ),
        Setting(
            "power_mw",
            "number",
            nominal_power_range_mw,
            lambda d, mw: d._write(_power_command(mw)),
            ORDER_TUNING,
            read=lambda d: d.get_power_mw(),
        ),
        Setting(
            "wavelength_nm",
            "number",
            nominal_wavelength_range_nm,
            lambda d, nm: d._write(_wavelength_command(nm)),
            ORDER_TUNING,
            read=lambda d: d.get_wavelength_nm(),
        ),
    )

    def __init__(self, name: str, transport: Transport) -> None:
        super().__init__(name, transport)
        self._scpi = ScpiLink(transport, terminator=b"\n")
        self._power_range_mw = self.nominal_power_range_mw
        self._wavelength_range_nm = self.nominal_wavelength_range_nm

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: output, power_mw, wavelength_nm."""
        transport_spec = require_transport(spec, ("visa", "tcp"))
        if transport_spec.kind == "visa":
            transport_spec = with_default_options(
                transport_spec, {"write_termination": "", "read_termination": "\n"}
            )
        validated = validate_config_settings(spec, cls.config_validators(spec.name))
        driver = cls(spec.name, make_transport(spec, transport_spec))
        for key, value in validated.items():
            driver._remember_declared(key, value)
        return driver

    # -- lifecycle ----------------------------------------------------------------------

    async def _identify(self) -> dict[str, str]:
        reply = await self._scpi.ask("*IDN?")
        fields = [part.strip() for part in reply.split(",")]
        if len(fields) != 4 or fields[0].upper() not in VENDORS:
            raise ProtocolError(
                f"not a Keysight/Agilent identity: {reply!r}", instrument=self.name, command="*IDN?"
            )
        await self._scpi.send("*CLS")  # errors queued before we came are not ours
        await self._write(":SOUR0:POW:UNIT 1")  # power queries answer in W from now on
        self._wavelength_range_nm = (
            await self._ask_float(":SOUR0:WAV? MIN") * 1e9,
            await self._ask_float(":SOUR0:WAV? MAX") * 1e9,
        )
        self._power_range_mw = (
            await self._ask_float(":SOUR0:POW? MIN") * 1e3,
            await self._ask_float(":SOUR0:POW? MAX") * 1e3,
        )
        for low, high, command in (
            (*self._wavelength_range_nm, ":SOUR0:WAV? MAX"),
            (*self._power_range_mw, ":SOUR0:POW? MAX"),
        ):
            if not 0.0 < low < high:
                raise ProtocolError(
                    f"range {low}..{high} makes no sense", instrument=self.name, command=command
                )
        return {"vendor": fields[0], "model": fields[1], "serial": fields[2], "firmware": fields[3]}

    async def snapshot(self) -> dict[str, Any]:
        """Identity and every setting as read back from the laser."""
        return {
            "model": self.model,
            **self.identity,
            **await self._declared_snapshot(),
            "locked": await self._locked(),
            "power_range_mw": list(self._power_range_mw),
            "wavelength_range_nm": list(self._wavelength_range_nm),
        }

    async def safe_state(self) -> None:
        """Switch the optical output off (and remember it, so a reconnect keeps it off)."""
        await self.set_output(False)

    async def health(self) -> Health:
        """Read the error queue and the lock; healthy when no error is queued."""
        error = await self._scpi.ask(":SYST:ERR?")
        locked = await self._locked()
        code, _ = self._parse_error(error, ":SYST:ERR?")
        readings: dict[str, float | int | str | bool] = {"error": error, "locked": locked}
        return Health(ok=code == 0, detail="ok" if code == 0 else error, readings=readings)

    # -- Laser interface ----------------------------------------------------------------

    async def set_output(self, enabled: bool) -> None:
        """Switch the optical output on or off."""
        await self._set_declared("output", enabled)

    async def get_output(self) -> bool:
        """True when the output is on."""
        return await self._query(":SOUR0:POW:STAT?", parse_on_off)

    async def set_power_mw(self, power_mw: float) -> None:
        """Set the output power setpoint in milliwatts."""
        await self._set_declared("power_mw", power_mw)

    async def get_power_mw(self) -> float:
        """The output power setpoint in milliwatts (the laser answers in W)."""
        return await self._ask_float(":SOUR0:POW?") * 1e3

    async def set_wavelength_nm(self, wavelength_nm: float) -> None:
        """Tune to ``wavelength_nm`` (0.1 pm resolution) within the laser's band."""
        await self._set_declared("wavelength_nm", wavelength_nm)

    async def get_wavelength_nm(self) -> float:
        """The emission wavelength in nanometres (the laser answers in metres)."""
        return await self._ask_float(":SOUR0:WAV?") * 1e9

    # -- internals ----------------------------------------------------------------------

    async def _locked(self) -> bool:
        return await self._query(":LOCK?", parse_on_off)

    def _declared_limits(self, key: str) -> tuple[float, float] | None:
        """Power and wavelength ranges are the connected unit's (read at connect)."""
        if key == "power_mw":
            return self._power_range_mw
        if key == "wavelength_nm":
            return self._wavelength_range_nm
        return super()._declared_limits(key)

    async def _write(self, command: str) -> None:
        """Send a setting command, then read the error queue: a non-zero code faults."""
        await self._scpi.send(command)
        code, text = self._parse_error(await self._scpi.ask(":SYST:ERR?"), command)
        if code != 0:
            raise InstrumentFault(
                f"device error {code}: {text}", instrument=self.name, command=command
            )

    def _parse_error(self, reply: str, command: str) -> tuple[int, str]:
        """``<code>,"<text>"`` as (code, text); ProtocolError when it does not parse."""
        code, _, text = reply.partition(",")
        try:
            return int(code), text.strip().strip('"')
        except ValueError:
            raise ProtocolError(
                f"error queue reply does not parse: {reply!r}",
                instrument=self.name,
                command=command,
            ) from None

    async def _ask_float(self, command: str) -> float:
        return await self._query(command, parse_float)

    async def _query(self, command: str, parse: Callable[..., T]) -> T:
        """Ask ``command`` and parse the reply. These queries only read: one whose reply does
        not parse (garbled, or the late reply of a command whose caller gave up) is flushed
        and asked again; ``:SYST:ERR?`` pops the queue and is never re-sent."""

        async def exchange() -> T:
            reply = await self._scpi.ask(command)
            return parse(reply, instrument=self.name, command=command)

        return await resend_garbled(self._transport, exchange, repeatable=True)


def _power_command(power_mw: float) -> str:
    return f":SOUR0:POW {power_mw:.4f}MW"


def _wavelength_command(wavelength_nm: float) -> str:
    return f":SOUR0:WAV {wavelength_nm:.4f}NM"
