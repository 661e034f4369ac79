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

The module's short command set, as the published Python clients of DiCon MEMS 1xN
modules use it (Instrumental's and photonmover's ``DiConOpticalSwitch``: 115200 baud,
CR-terminated commands, one byte read and dropped before each reply line):

- ``I1 <ch>`` routes module 1 to channel ``ch`` (0 parks it, as ``PK`` does: the
  twin's parking port), ``I1?`` answers the routed channel, ``PK`` parks;
- ``ID?`` answers the identity above, ``CF?`` the configuration ``<inputs>,<outputs>``
  (``1,<N>``: the clients read the channel count from its second field).

Assumed from those clients, where no manual is at hand: a reply to a short query is an LF,
the text, then CR LF; a refused short command (another module, a channel beyond N) changes
nothing, answers nothing and queues -113/-222 as the SCPI commands do.
"""

from __future__ import annotations

import re
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
SHORT = re.compile(r"(ID\?|CF\?|PK|I(\d+)\?|I(\d+) +(\d+))", re.IGNORECASE)

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
        text = request.decode("ascii", errors="replace").strip()
        short = SHORT.fullmatch(text)
        if short is not None:
            outcome = await self._short(short)
            if outcome.fate is Fate.OK and outcome.value is not None:
                return b"\n" + str(outcome.value).encode("ascii") + b"\r\n"
            return GARBAGE + TERMINATOR if outcome.fate is Fate.GARBLED else b""
        outcome = await self._scpi.message(text)
        if outcome.fate is Fate.OK:
            return str(outcome.value).encode("ascii") + TERMINATOR
        if outcome.fate is Fate.GARBLED:
            return GARBAGE + TERMINATOR
        return b""

    async def _short(self, match: re.Match[str]) -> Outcome:
        """One command of the short set: ID?, CF?, PK, I<m>?, I<m> <ch>."""
        command = match.group(1).upper()
        if command == "ID?":
            return Outcome(Fate.OK, self._identity())
        if command == "CF?":
            return Outcome(Fate.OK, f"1,{int(self.twin.n_ports)}")
        if command == "PK":
            return await attempt(self.twin.set_port(int(self.twin.parking_port)))
        module = int(match.group(2) or match.group(3))
        if module != MODULE:
            self._scpi.push_error(-113, f"no switch module {module}")
            return Outcome(Fate.REFUSED)
        if match.group(2) is not None:  # I<m>?
            outcome = await attempt(self.twin.get_port())
            return Outcome(Fate.OK, str(int(outcome.value))) if outcome.fate is Fate.OK else outcome
        channel = int(match.group(4))
        if channel > int(self.twin.n_ports):
            self._scpi.push_error(-222, match.group(4))
            return Outcome(Fate.REFUSED)
        port = channel or int(self.twin.parking_port)
        return await attempt(self.twin.set_port(port))

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
