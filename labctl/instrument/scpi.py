"""SCPI text commands over any Transport: encode, terminate, decode, name the command."""

from __future__ import annotations

from labctl.instrument.validate import decode_ascii
from labctl.transport.base import Transport


class ScpiLink:
    """Send SCPI commands and read text replies over one transport."""

    def __init__(self, transport: Transport, *, terminator: bytes) -> None:
        self._transport = transport
        self._terminator = terminator

    @property
    def instrument(self) -> str:
        """The instrument name errors are reported under."""
        return self._transport.instrument

    async def ask(self, command: str) -> str:
        """Send ``command`` and return its reply as text, terminator stripped."""
        raw = await self._transport.query(
            command.encode("ascii") + self._terminator,
            terminator=self._terminator,
            command=command,
        )
        return decode_ascii(raw, instrument=self.instrument, command=command).strip()

    async def send(self, command: str) -> None:
        """Send ``command`` without reading a reply."""
        await self._transport.write(command.encode("ascii") + self._terminator, command=command)
