"""Santec TSL-570 tunable laser: SCPI over TCP (pyvisa ``TCPIP::host::5000::SOCKET``).

Protocol facts (TSL-570 programming manual, public drivers): the laser takes commands
ending in CR, LF or CR LF and ends its replies in CR (a CR LF reply is read as well: the
leftover LF is stripped from the next reply); headers may be short or long and any case
(``:POW:STAT``, ``:POWer:STATe``); ``*IDN?`` answers ``SANTEC,TSL-570,<serial>,<firmware>``;
``*CLS`` clears the error queue (sent at connect, so old errors are not blamed on our
commands); ``:POW:STAT 1|0`` switches the output, ``:POW:UNIT 1`` selects milliwatts so
``:POW <mW>`` sets the power (about 0.04 to 20 mW); ``:WAV:UNIT 0`` selects nanometres
and ``:WAV <nm>`` (0.1 pm resolution) tunes, with the range from ``:WAV:MIN?``/``:WAV:MAX?``;
``:COHC 1|0`` is coherence control. Setting commands return nothing, so after each one the
driver reads the error queue (``:SYST:ERR?``): ``<code>,"<text>"`` with code 0 for no error
(``0,"No error"``) and the manual's negative codes otherwise (-222 ``Data out of range``,
-113 ``Undefined header``...); ``:SYST:ALER?`` reports hardware alerts (``No alerts.`` when
clean).
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
from labctl.instrument.recovery import operation, resend_garbled
from labctl.instrument.scpi import ScpiLink
from labctl.instrument.settings import Setting
from labctl.instrument.validate import parse_float, parse_on_off
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health
from labctl.transport.base import Transport

NO_ALERTS = "No alerts."
ORDER_TUNING = 0
ORDER_OUTPUT = 10  # light goes on only after power and wavelength are back
NOT_REPEATABLE = frozenset({":SYST:ERR?"})
"""Queries not re-sent after a garbled reply: ``:SYST:ERR?`` pops the error queue, so a
re-send would read the next entry (or "No error") and hide the error that was garbled."""
T = TypeVar("T")


class TSL570(DriverBase):
    """Driver for the Santec TSL-570 (implements labctl's Laser interface)."""

    model = "Santec TSL-570"
    power_range_mw = (0.04, 20.0)
    # Union of the TSL-570 variants' bands; the unit's own band is read at connect.
    nominal_wavelength_range_nm = (1260.0, 1680.0)
    settings = (
        Setting(
            "output",
            "bool",
            None,
            lambda d, on: d._write(f":POW:STAT {int(on)}"),
            ORDER_OUTPUT,
            read=lambda d: d.get_output(),
        ),
        Setting(
            "power_mw",
            "number",
            power_range_mw,
            lambda d, mw: d._write(f":POW {mw:.2f}"),
            read=lambda d: d.get_power_mw(),
        ),
        Setting(
            "wavelength_nm",
            "number",
            nominal_wavelength_range_nm,
            lambda d, nm: d._write(f":WAV {nm:.4f}"),
            read=lambda d: d.get_wavelength_nm(),
        ),
        Setting(
            "coherence_control",
            "bool",
            None,
            lambda d, on: d._write(f":COHC {int(on)}"),
            read=lambda d: d.get_coherence_control(),
        ),
    )

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        wavelength_range_nm: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(name, transport)
        self._scpi = ScpiLink(transport, terminator=b"\r")
        self._wavelength_range_nm = wavelength_range_nm or self.nominal_wavelength_range_nm

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: output, power_mw, wavelength_nm, coherence."""
        transport_spec = require_transport(spec, ("visa", "tcp"))
        if transport_spec.kind == "visa":
            # The driver appends CR itself; pyvisa only needs to know where a reply ends.
            transport_spec = with_default_options(
                transport_spec, {"write_termination": "", "read_termination": "\r"}
            )
        validated = validate_config_settings(spec, cls.config_validators(spec.name))
        driver = cls(spec.name, make_transport(spec, transport_spec))
        for key, value in validated.items():
            driver._remember_declared(key, value)
        return driver

    # -- lifecycle ----------------------------------------------------------------------

    async def _identify(self) -> dict[str, str]:
        reply = await self._ask("*IDN?")
        fields = [part.strip() for part in reply.split(",")]
        if len(fields) != 4 or fields[0].upper() != "SANTEC":
            raise ProtocolError(
                f"not a Santec identity: {reply!r}", instrument=self.name, command="*IDN?"
            )
        await self._scpi.send("*CLS")  # errors queued before we came are not ours
        # Units first: every later number on this link is in mW and nm.
        await self._write(":POW:UNIT 1")
        await self._write(":WAV:UNIT 0")
        low = await self._ask_float(":WAV:MIN?")
        high = await self._ask_float(":WAV:MAX?")
        if not 0.0 < low < high:
            raise ProtocolError(
                f"wavelength range {low}..{high} nm makes no sense",
                instrument=self.name,
                command=":WAV:MAX?",
            )
        self._wavelength_range_nm = (low, high)
        return {"vendor": fields[0], "model": fields[1], "serial": fields[2], "firmware": fields[3]}

    @operation
    async def snapshot(self) -> dict[str, Any]:
        """Identity and every setting as read back from the laser."""
        return {
            "model": self.model,
            **self.identity,
            **await self._declared_snapshot(),
            "wavelength_range_nm": list(self._wavelength_range_nm),
        }

    @operation
    async def safe_state(self) -> None:
        """Switch the optical output off (and remember it, so a reconnect keeps it off)."""
        await self.set_output(False)

    @operation
    async def health(self) -> Health:
        """Read the error queue and the alert list; healthy when both are clean."""
        error = await self._ask(":SYST:ERR?")
        alert = await self._ask(":SYST:ALER?")
        actual_mw = await self._ask_float(":POW:ACT?")
        readings: dict[str, float | int | str | bool] = {
            "error": error,
            "alert": alert,
            "actual_power_mw": actual_mw,
        }
        code, _ = self._parse_error(error, ":SYST:ERR?")
        problems = [error] if code != 0 else []
        if alert != NO_ALERTS:
            problems.append(alert)
        return Health(ok=not problems, detail="; ".join(problems) or "ok", readings=readings)

    # -- Laser interface ----------------------------------------------------------------

    @operation
    async def set_output(self, enabled: bool) -> None:
        """Switch the optical output on or off."""
        await self._set_declared("output", enabled)

    @operation
    async def get_output(self) -> bool:
        """True when the output is on."""
        return await self._ask_parsed(":POW:STAT?", parse_on_off)

    @operation
    async def set_power_mw(self, power_mw: float) -> None:
        """Set the output power setpoint in milliwatts."""
        await self._set_declared("power_mw", power_mw)

    @operation
    async def get_power_mw(self) -> float:
        """The output power setpoint in milliwatts."""
        return await self._ask_float(":POW?")

    @operation
    async def set_wavelength_nm(self, wavelength_nm: float) -> None:
        """Tune to ``wavelength_nm`` (0.1 pm resolution) within the laser's range."""
        await self._set_declared("wavelength_nm", wavelength_nm)

    @operation
    async def get_wavelength_nm(self) -> float:
        """The emission wavelength in nanometres."""
        return await self._ask_float(":WAV?")

    @operation
    async def set_coherence_control(self, enabled: bool) -> None:
        """Switch coherence control (linewidth broadening) on or off."""
        await self._set_declared("coherence_control", enabled)

    @operation
    async def get_coherence_control(self) -> bool:
        """True when coherence control is on."""
        return await self._ask_parsed(":COHC?", parse_on_off)

    # -- internals ----------------------------------------------------------------------

    def _declared_limits(self, key: str) -> tuple[float, float] | None:
        """The wavelength band is the connected unit's (read at connect)."""
        return (
            self._wavelength_range_nm if key == "wavelength_nm" else super()._declared_limits(key)
        )

    async def _write(self, command: str) -> None:
        """Send a setting command, then read the error queue: a non-zero code faults.

        Every setting this driver sends is an absolute value (units, power, wavelength,
        output and coherence state), so setting plus error-queue read is one unit that may
        be repeated when the error-queue reply does not parse.
        """

        async def exchange() -> None:
            await self._write_once(command)

        await resend_garbled(self._transport, exchange, repeatable=True)

    async def _write_once(self, command: str) -> None:
        await self._scpi.send(command)
        code, text = self._parse_error(await self._scpi.ask(":SYST:ERR?"), command)
        if code != 0:
            raise InstrumentFault(
                f"device error {code}: {text}", instrument=self.name, command=command
            )

    async def _ask(self, command: str) -> str:
        """A query's reply; re-sent when garbled unless reading it consumes something."""
        return await self._ask_parsed(command, lambda text, **_: text)

    async def _ask_parsed(self, command: str, parse: Callable[..., T]) -> T:
        """A query's reply through ``parse(text, instrument=, command=)``, garble re-sent."""

        async def exchange() -> T:
            return parse(await self._scpi.ask(command), instrument=self.name, command=command)

        repeatable = command not in NOT_REPEATABLE
        return await resend_garbled(self._transport, exchange, repeatable=repeatable)

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
        return await self._ask_parsed(command, parse_float)
