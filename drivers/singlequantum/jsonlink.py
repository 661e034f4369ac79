"""The Single Quantum control protocol: JSON objects over TCP, the system's ended by ETB.

Facts from Single Quantum's public Python clients (``WebSQControl`` and the QCoDeS driver
in ``qcodes_contrib_drivers``, MIT licensed, read for the protocol only): a command is
``{"command": <name>, "label": <label>, "value": <value>}`` and a client sends its JSON
objects with no terminator at all; the system publishes labelled values as
``{"label": <label>, "value": <value>}``, ends every message with the ETB byte 0x17 and
may run several objects together in one message (``{...}{...}``); answering
``labelProps`` it wraps a value with its properties, ``{"value": <value>, "unit": ...}``;
labels that contain ``Error`` carry error messages.

So the link sends bare compact JSON, splits each ETB-ended message into its objects
(whitespace between them allowed), and unwraps property-wrapped values.

Documented assumption: a read is ``{"request": <label>}`` and the system answers with that
label (the public clients do this for ``BiasVoltage`` and ``StartAutoIV``), and after a
command the system publishes the command's label with the value it now holds, which the
driver takes as the confirmation. Other labels published meanwhile (periodic broadcasts)
are skipped, at most ``MAX_SKIPPED`` of them.
"""

from __future__ import annotations

import json
from typing import Any

from labctl.instrument.recovery import resend_garbled
from labctl.interfaces.errors import InstrumentFault, ProtocolError
from labctl.transport.base import Transport

ETB = b"\x17"
MAX_SKIPPED = 16
_DECODER = json.JSONDecoder()


def encode(message: dict[str, Any]) -> bytes:
    """One message on the wire: compact JSON, unterminated (as the vendor's clients send)."""
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


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
        seen = 0
        async with self._transport.transaction():
            await self._transport.write(encode(message), command=command)
            while seen <= MAX_SKIPPED:
                raw = await self._transport.read_until(ETB, command=command)
                for reply in parse_message(raw, instrument=instrument, command=command):
                    got = str(reply["label"])
                    if "Error" in got:
                        raise InstrumentFault(
                            f"{got}: {reply.get('value')}", instrument=instrument, command=command
                        )
                    if got == label:
                        return unwrap(reply.get("value"))
                    seen += 1
        raise ProtocolError(
            f"no {label!r} reply among {seen} messages",
            instrument=instrument,
            command=command,
        )


def parse_message(raw: bytes, *, instrument: str, command: str) -> list[dict[str, Any]]:
    """The labelled objects of one ETB-ended message (one or several run together)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(
            f"reply is not JSON: {raw[:80]!r}", instrument=instrument, command=command
        ) from None
    replies: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            break
        try:
            reply, position = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError:
            raise ProtocolError(
                f"reply is not JSON: {raw[:80]!r}", instrument=instrument, command=command
            ) from None
        if not isinstance(reply, dict) or "label" not in reply:
            raise ProtocolError(
                f"reply has no label: {raw[:80]!r}", instrument=instrument, command=command
            )
        replies.append(reply)
    if not replies:
        raise ProtocolError("empty reply", instrument=instrument, command=command)
    return replies


def unwrap(value: Any) -> Any:
    """A value as published, or the ``value`` of a property-wrapped one (labelProps form)."""
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value
