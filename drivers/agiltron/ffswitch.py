"""Agiltron FF 1xN fiber optical switch: binary 4-byte frames over RS-232.

Protocol facts (Agiltron "Command List for CL-LB Switch Driver", public drivers): 9600 baud
8N1; every command and every reply is exactly four bytes. ``01 12 00 <port>`` routes the
common fiber to ``port`` (1..N) and the driver echoes the same four bytes when it has
switched; ``01 11 00 00`` asks for the routed port and the reply's last byte carries it.

How errors look (documented assumption): the driver card has no error frame; it shows a
refusal by answering a well-formed frame that contradicts the request (an echo naming a
different port, or port 0 = no channel routed). The driver reports that as
InstrumentFault. A reply that is not a frame of this protocol (wrong header or command
byte) is a ProtocolError; silence is the transport's InstrumentTimeout.
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
from labctl.instrument.recovery import operation, resend_garbled
from labctl.instrument.settings import Setting
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health
from labctl.transport.base import Transport

HEADER = 0x01
CMD_GET_PORT = 0x11
CMD_SET_PORT = 0x12
FRAME_BYTES = 4
MAX_PORTS = 255  # one byte carries the port number
DEFAULT_N_PORTS = 4


class FFSwitch(DriverBase):
    """Driver for an Agiltron FF 1xN switch (implements labctl's OpticalSwitch)."""

    model = "Agiltron FF 1xN"
    settings = (
        # The unit's size and where safe_state() routes: station-file facts, never written.
        Setting("n_ports", "integer", (1, MAX_PORTS)),
        Setting("parking_port", "integer", (1, MAX_PORTS)),
        Setting(
            "port",
            "integer",
            (1, MAX_PORTS),
            apply=lambda d, port: d._send_port(port),
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
    ) -> None:
        super().__init__(name, transport)
        self._n_ports: int = self.declared("n_ports").check(name, n_ports)
        self._parking_port: int = self.declared("parking_port").check(
            name, parking_port, self._declared_limits("parking_port")
        )

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: n_ports, parking_port, port."""
        transport_spec = require_transport(spec, ("serial",))
        transport_spec = with_default_options(
            transport_spec, {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1}
        )
        validated = validate_switch_settings(cls, spec, default_n_ports=DEFAULT_N_PORTS)
        n_ports = validated.get("n_ports", DEFAULT_N_PORTS)
        driver = cls(
            spec.name,
            make_transport(spec, transport_spec),
            n_ports=n_ports,
            parking_port=validated.get("parking_port", 1),
        )
        if "port" in validated:
            driver._remember_declared("port", validated["port"])
        return driver

    # -- lifecycle ----------------------------------------------------------------------

    async def _identify(self) -> dict[str, str]:
        # No identity command exists; reading the routed port proves the card answers.
        await self.get_port()
        return {"vendor": "Agiltron", "model": f"FF 1x{self._n_ports}"}

    @operation
    async def snapshot(self) -> dict[str, Any]:
        """Identity, size, parking port and the routed port as read back."""
        return {
            "model": self.model,
            **self.identity,
            "n_ports": self._n_ports,
            "parking_port": self._parking_port,
            **await self._declared_snapshot(),
        }

    @operation
    async def safe_state(self) -> None:
        """Route to the parking port (a dump or beam block)."""
        await self.set_port(self._parking_port)

    @operation
    async def health(self) -> Health:
        """Read the routed port; healthy when it is the one last set (if any)."""
        port = await self.get_port()
        expected = self.remembered_settings.get("port")
        ok = expected is None or port == expected
        detail = "ok" if ok else f"routed to port {port}, expected {expected}"
        return Health(ok=ok, detail=detail, readings={"port": port})

    # -- OpticalSwitch interface --------------------------------------------------------

    @property
    def n_ports(self) -> int:
        """How many output ports (1..n_ports)."""
        return self._n_ports

    @property
    def parking_port(self) -> int:
        """The port safe_state() routes to."""
        return self._parking_port

    @operation
    async def set_port(self, port: int) -> None:
        """Route the common fiber to ``port`` and check the echo."""
        await self._set_declared("port", port)

    @operation
    async def get_port(self) -> int:
        """The routed port, as the switch reports it."""
        request = bytes([HEADER, CMD_GET_PORT, 0x00, 0x00])
        reply = await self._exchange(request)
        port = reply[3]
        if not 1 <= port <= self._n_ports:
            raise InstrumentFault(
                f"switch reports port {port}, outside 1..{self._n_ports}",
                instrument=self.name,
                command=request.hex(" "),
            )
        return port

    # -- internals ----------------------------------------------------------------------

    def _declared_limits(self, key: str) -> tuple[float, float] | None:
        """Ports are numbered 1..n_ports of this unit."""
        return port_limits(key, self._n_ports) or super()._declared_limits(key)

    async def _send_port(self, port: int) -> None:
        request = bytes([HEADER, CMD_SET_PORT, 0x00, port])
        reply = await self._exchange(request)
        if reply != request:
            raise InstrumentFault(
                f"switch answered port {reply[3]} to a request for port {port}",
                instrument=self.name,
                command=request.hex(" "),
            )

    async def _exchange(self, request: bytes) -> bytes:
        """Send one frame and read one reply frame of the same command.

        Both commands are safe to repeat (routing to an absolute port, reading the port),
        so a reply that is not a frame of this protocol is flushed and the frame re-sent.
        """

        async def exchange() -> bytes:
            return await self._exchange_once(request)

        return await resend_garbled(self._transport, exchange, repeatable=True)

    async def _exchange_once(self, request: bytes) -> bytes:
        command = request.hex(" ")
        async with self._transport.transaction():
            await self._transport.write(request, command=command)
            reply = await self._transport.read_exact(FRAME_BYTES, command=command)
        if reply[0] != HEADER or reply[1] != request[1] or reply[2] != 0x00:
            raise ProtocolError(
                f"reply {reply.hex(' ')} is not a frame for this command",
                instrument=self.name,
                command=command,
            )
        return reply
