"""DiCon MEMS 1xN fiber optical switch: SCPI text over RS-232 (pyserial).

Protocol facts (DiCon's switch remote-command set, as its rackmount/module manuals give
it): commands and replies end in CR; upper-case letters of a mnemonic are required, the
rest optional; ``ROUTe<m>:SCAN <ch>`` routes module ``m``'s common fiber to channel ``ch``
(1..N) and ``ROUTe<m>:SCAN?`` answers the routed channel; commands send no reply unless
noted; IEEE 488.2 common commands (``*IDN?``, ``*STB?``, ``*TST?``...) are served.

Documented assumptions (not read from a DiCon manual): ``*IDN?`` answers four
comma-separated fields starting with ``DiCon``; refusals go to an SCPI error queue read
with ``SYSTem:ERRor?`` (``0,"No error"`` or ``<code>,"<text>"``), which the driver reads
after every command and raises as InstrumentFault naming the command; the line defaults
to 115200 baud 8N1 (the config's transport options override it).
"""

from __future__ import annotations

from typing import Any, Self

from drivers.switchports import port_limits, validate_switch_settings
from labctl.instrument.base import (
    DriverBase,
    make_transport,
    require_transport,
    with_default_options,
)
from labctl.instrument.recovery import resend_garbled
from labctl.instrument.scpi import ScpiLink
from labctl.instrument.settings import Setting
from labctl.instrument.validate import parse_int
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health
from labctl.transport.base import Transport

MAX_PORTS = 64
MAX_MODULE = 16
DEFAULT_N_PORTS = 4


class DiconMems(DriverBase):
    """Driver for a DiCon MEMS 1xN switch (implements labctl's OpticalSwitch)."""

    model = "DiCon MEMS 1xN"
    settings = (
        # The unit's size, where safe_state() routes and which module of a rack this is:
        # station-file facts, never written.
        Setting("n_ports", "integer", (1, MAX_PORTS)),
        Setting("parking_port", "integer", (1, MAX_PORTS)),
        Setting("module", "integer", (1, MAX_MODULE)),
        Setting(
            "port",
            "integer",
            (1, MAX_PORTS),
            apply=lambda d, port: d._write(d._route(port)),
            read=lambda d: d.get_port(),
        ),
    )

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        n_ports: int = DEFAULT_N_PORTS,
        parking_port: int = 1,
        module: int = 1,
    ) -> None:
        super().__init__(name, transport)
        self._scpi = ScpiLink(transport, terminator=b"\r")
        self._n_ports: int = self.declared("n_ports").check(name, n_ports)
        self._parking_port: int = self.declared("parking_port").check(
            name, parking_port, self._declared_limits("parking_port")
        )
        self._module: int = self.declared("module").check(name, module)

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: n_ports, parking_port, module, port."""
        transport_spec = require_transport(spec, ("serial",))
        transport_spec = with_default_options(
            transport_spec, {"baudrate": 115200, "bytesize": 8, "parity": "N", "stopbits": 1}
        )
        validated = validate_switch_settings(cls, spec, default_n_ports=DEFAULT_N_PORTS)
        n_ports = validated.get("n_ports", DEFAULT_N_PORTS)
        driver = cls(
            spec.name,
            make_transport(spec, transport_spec),
            n_ports=n_ports,
            parking_port=validated.get("parking_port", 1),
            module=validated.get("module", 1),
        )
        if "port" in validated:
            driver._remember_declared("port", validated["port"])
        return driver

    # -- lifecycle ----------------------------------------------------------------------

    async def _identify(self) -> dict[str, str]:
        reply = await self._scpi.ask("*IDN?")
        fields = [part.strip() for part in reply.split(",")]
        if len(fields) != 4 or not fields[0].upper().startswith("DICON"):
            raise ProtocolError(
                f"not a DiCon identity: {reply!r}", instrument=self.name, command="*IDN?"
            )
        await self._scpi.send("*CLS")  # errors queued before we came are not ours
        return {"vendor": fields[0], "model": fields[1], "serial": fields[2], "firmware": fields[3]}

    async def snapshot(self) -> dict[str, Any]:
        """Identity, size, module, parking port and the routed port as read back."""
        return {
            "model": self.model,
            **self.identity,
            "n_ports": self._n_ports,
            "module": self._module,
            "parking_port": self._parking_port,
            **await self._declared_snapshot(),
        }

    async def safe_state(self) -> None:
        """Route to the parking port (a dump or beam block)."""
        await self.set_port(self._parking_port)

    async def health(self) -> Health:
        """Read the error queue and the routed port; healthy when clean and as last set."""
        error = await self._scpi.ask("SYST:ERR?")
        code, _ = self._parse_error(error, "SYST:ERR?")
        port = await self.get_port()
        expected = self.remembered_settings.get("port")
        problems = [error] if code != 0 else []
        if expected is not None and port != expected:
            problems.append(f"routed to port {port}, expected {expected}")
        readings: dict[str, float | int | str | bool] = {"port": port, "error": error}
        return Health(ok=not problems, detail="; ".join(problems) or "ok", readings=readings)

    # -- OpticalSwitch interface --------------------------------------------------------

    @property
    def n_ports(self) -> int:
        """How many output channels (1..n_ports)."""
        return self._n_ports

    @property
    def parking_port(self) -> int:
        """The port safe_state() routes to."""
        return self._parking_port

    async def set_port(self, port: int) -> None:
        """Route the common fiber to ``port``, then check the error queue."""
        await self._set_declared("port", port)

    async def get_port(self) -> int:
        """The routed channel, as the switch reports it."""
        command = f"ROUT{self._module}:SCAN?"

        async def exchange() -> int:
            return parse_int(await self._scpi.ask(command), instrument=self.name, command=command)

        # A query only reads: one whose reply does not parse (garbled, or the late reply of
        # a command whose caller gave up) is flushed and asked again.
        port = await resend_garbled(self._transport, exchange, repeatable=True)
        if not 1 <= port <= self._n_ports:
            raise InstrumentFault(
                f"switch reports channel {port}, outside 1..{self._n_ports}",
                instrument=self.name,
                command=command,
            )
        return port

    # -- internals ----------------------------------------------------------------------

    def _route(self, port: int) -> str:
        return f"ROUT{self._module}:SCAN {port}"

    def _declared_limits(self, key: str) -> tuple[float, float] | None:
        """Channels are numbered 1..n_ports of this unit."""
        return port_limits(key, self._n_ports) or super()._declared_limits(key)

    async def _write(self, command: str) -> None:
        """Send a command, then read the error queue: a non-zero code faults."""
        await self._scpi.send(command)
        code, text = self._parse_error(await self._scpi.ask("SYST:ERR?"), command)
        if code != 0:
            raise InstrumentFault(
                f"device error {code}: {text}", instrument=self.name, command=command
            )

    def _parse_error(self, reply: str, command: str) -> tuple[int, str]:
        code, _, text = reply.partition(",")
        try:
            return int(code), text.strip().strip('"')
        except ValueError:
            raise ProtocolError(
                f"error queue reply does not parse: {reply!r}",
                instrument=self.name,
                command=command,
            ) from None
