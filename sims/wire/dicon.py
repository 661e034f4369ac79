"""An optical-switch twin behind a DiCon MEMS switch's SCPI text protocol (RS-232, pty).

What is served, after DiCon's switch remote-command conventions (the identity text and
the error queue are the same documented assumptions as in drivers/dicon/mems.py):

- commands and replies end in CR (LF and CR LF are taken too); units may be joined with
  ``;``; upper-case letters of a mnemonic are required, the rest optional, any case;
- ``ROUTe<m>:SCAN <ch>`` routes module ``m``'s common fiber to output ``ch`` (1..N);
  ``ROUTe<m>:SCAN?`` answers the routed channel; ``ROUTe<m>:SCAN:NEXT`` steps to the next
  channel (wrapping after N); this twin holds one 1xN module, number 1;
- common commands ``*IDN? *CLS *RST *TST? *WAI *STB?``; ``*IDN?`` answers
  ``DiCon Fiberoptics Inc,MEMS 1x<N>,<serial>,<firmware>``;
- ``WEN 0|1`` / ``WEN?``: auto-save of the switch state (kept, not simulated);
- commands answer nothing; a refused command queues an SCPI error read with
  ``SYSTem:ERRor?`` as ``<code>,"<text>"`` (``0,"No error"``): -113 unknown header or
  module, -222 channel out of range, -109/-108 missing or extra parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sims.wire.base import GARBAGE, Fate, Outcome, SerialDevice, attempt, ensure_link
from sims.wire.scpi import parse_bool, parse_number
from sims.wire.scpi_device import (
    Handler,
    ScpiCommand,
    ScpiCore,
    ScpiRefusal,
    no_argument,
    required,
)

TERMINATOR = b"\r"
SERIAL_NUMBER = "LCTWIN0003"
FIRMWARE = "1.08"
MODULE = 1

ERRORS = {
    0: "No error",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -222: "Data out of range",
}


class DiconMemsWire(SerialDevice):
    """Serves an OpticalSwitch twin as a DiCon MEMS 1xN switch on a pseudo-terminal."""

    def __init__(self, name: str, twin: Any, *, link: Path | None = None) -> None:
        super().__init__(link=link)
        self.name = name
        self.twin = twin
        self.auto_save = False
        self._scpi = ScpiCore(name, ERRORS, self._commands())

    @property
    def errors(self) -> list[int]:
        """The queued error codes, oldest first (for tests)."""
        return list(self._scpi.queue)

    def take(self, buffer: bytearray) -> bytes | None:
        """One command line (CR, LF or CR LF ends it), terminator removed."""
        while True:
            ends = [i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0]
            if not ends:
                return None
            end = min(ends)
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                return line

    async def handle(self, request: bytes) -> bytes:
        """Run one command line; its query replies, CR-terminated, or nothing."""
        if not await ensure_link(self.twin):
            return b""
        outcome = await self._scpi.message(request.decode("ascii", errors="replace"))
        if outcome.fate is Fate.OK:
            return str(outcome.value).encode("ascii") + TERMINATOR
        if outcome.fate is Fate.GARBLED:
            return GARBAGE + TERMINATOR
        return b""

    def _commands(self) -> list[ScpiCommand]:
        return [
            ScpiCommand("*IDN", query=self._text(self._identity)),
            ScpiCommand("*CLS", setting=self._action(self._clear)),
            ScpiCommand("*RST", setting=self._action(self._clear)),
            ScpiCommand("*TST", query=self._text(lambda: "0")),
            ScpiCommand("*WAI", setting=self._action(lambda: None)),
            ScpiCommand("*STB", query=self._text(lambda: str(4 if self._scpi.queue else 0))),
            ScpiCommand(
                ":SYSTem:ERRor", query=self._text(lambda: self._scpi.pop_error(plus=False))
            ),
            ScpiCommand(
                "WEN", query=self._text(lambda: str(int(self.auto_save))), setting=self._wen
            ),
            ScpiCommand(":ROUTe:SCAN:NEXT", setting=self._next),
            ScpiCommand(":ROUTe:SCAN", query=self._channel, setting=self._set_channel),
        ]

    def _clear(self) -> None:
        self._scpi.queue.clear()

    def _identity(self) -> str:
        return f"DiCon Fiberoptics Inc,MEMS 1x{int(self.twin.n_ports)},{SERIAL_NUMBER},{FIRMWARE}"

    @staticmethod
    def _text(value: Callable[[], str]) -> Handler:
        async def query(argument: str, suffixes: tuple[int, ...]) -> Outcome:
            no_argument(argument)
            return Outcome(Fate.OK, value())

        return query

    @staticmethod
    def _action(action: Callable[[], None]) -> Handler:
        async def setting(argument: str, suffixes: tuple[int, ...]) -> Outcome:
            no_argument(argument)
            action()
            return Outcome(Fate.OK)

        return setting

    async def _wen(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self.auto_save = parse_bool(required(argument))
        return Outcome(Fate.OK)

    @staticmethod
    def _module(suffixes: tuple[int, ...]) -> None:
        if (suffixes[0] if suffixes else MODULE) != MODULE:
            raise ScpiRefusal(-113, f"no switch module {suffixes[0]}")

    async def _channel(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self._module(suffixes)
        no_argument(argument)
        outcome = await attempt(self.twin.get_port())
        return Outcome(Fate.OK, str(int(outcome.value))) if outcome.fate is Fate.OK else outcome

    async def _set_channel(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self._module(suffixes)
        value, unit = parse_number(required(argument))
        if unit or not value.is_integer():
            raise ScpiRefusal(-104, argument)
        if not 1 <= value <= int(self.twin.n_ports):
            raise ScpiRefusal(-222, argument)
        return await attempt(self.twin.set_port(int(value)))

    async def _next(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self._module(suffixes)
        no_argument(argument)
        current = await attempt(self.twin.get_port())
        if current.fate is not Fate.OK:
            return current
        return await attempt(self.twin.set_port(int(current.value) % int(self.twin.n_ports) + 1))
