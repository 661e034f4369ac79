"""The Single Quantum control protocol: JSON objects over TCP, each ended by 0x17 (ETB).

Facts from Single Quantum's public Python client (MIT licensed, read for the protocol
only): a command is ``{"command": <name>, "label": <label>, "value": <value>}``; the
system publishes labelled values as ``{"label": <label>, "value": <value>}``; labels that
contain ``Error`` carry error messages; every message ends with the ETB byte 0x17.

Documented assumption: a read is ``{"request": <label>}`` and the system answers with that
label (the public client does this for ``BiasVoltage``), and after a command the system
publishes the command's label with the value it now holds, which the driver takes as the
confirmation. Other labels published meanwhile (periodic broadcasts) are skipped, at most
``MAX_SKIPPED`` of them.
"""

from __future__ import annotations

import json
from typing import Any

from drivers.common.recovery import resend_garbled
from labctl.interfaces.errors import InstrumentFault, ProtocolError
from labctl.transport.base import Transport

ETB = b"\x17"
MAX_SKIPPED = 16


def encode(message: dict[str, Any]) -> bytes:
    """One message on the wire: compact JSON plus ETB."""
    return json.dumps(message, separators=(",", ":")).encode("utf-8") + ETB


class JsonLink:
    """Labelled JSON requests and commands over one transport."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def request(self, label: str) -> Any:
        """The value the system reports for ``label``."""
        return await self._exchange({"request": label}, label, command=f"request {label}")

    async def command(self, name: str, label: str, value: Any) -> Any:
        """Send a command and return the value the system confirms for ``label``."""
        message = {"command": name, "label": label, "value": value}
        return await self._exchange(message, label, command=name)

    async def _exchange(self, message: dict[str, Any], label: str, *, command: str) -> Any:
        """One request or command; a reply that does not parse is flushed and re-sent.

        Safe to repeat: requests only read, and every command the Eos driver sends sets an
        absolute value (all bias currents, all trigger levels, the enable switch, the
        measurement period).
        """

        async def exchange() -> Any:
            return await self._exchange_once(message, label, command=command)

        return await resend_garbled(self._transport, exchange, repeatable=True)

    async def _exchange_once(self, message: dict[str, Any], label: str, *, command: str) -> Any:
        instrument = self._transport.instrument
        async with self._transport.transaction():
            await self._transport.write(encode(message), command=command)
            for _ in range(MAX_SKIPPED + 1):
                raw = await self._transport.read_until(ETB, command=command)
                reply = _parse(raw, instrument=instrument, command=command)
                got = str(reply["label"])
                if "Error" in got:
                    raise InstrumentFault(
                        f"{got}: {reply.get('value')}", instrument=instrument, command=command
                    )
                if got == label:
                    return reply.get("value")
        raise ProtocolError(
            f"no {label!r} reply among {MAX_SKIPPED + 1} messages",
            instrument=instrument,
            command=command,
        )


def _parse(raw: bytes, *, instrument: str, command: str) -> dict[str, Any]:
    try:
        reply = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError(
            f"reply is not JSON: {raw[:80]!r}", instrument=instrument, command=command
        ) from None
    if not isinstance(reply, dict) or "label" not in reply:
        raise ProtocolError(
            f"reply has no label: {raw[:80]!r}", instrument=instrument, command=command
        )
    return reply
