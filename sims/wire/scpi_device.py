"""A small SCPI instrument core for wire twins: command table, error queue, replies.

Used by the twins whose devices speak plain SCPI with a ``:SYSTem:ERRor?`` queue (Keysight
N7776C, DiCon MEMS switch). Unlike the TSL-570 twin's own tree, a query here may take
arguments (``:SOUR0:WAV? MIN``), and numeric suffixes on mnemonics (``SOURce0``,
``ROUTe1``) are taken off the header and handed to the handler as ``suffix``.

Rules served: program messages end in CR, LF or CR LF; units are split on ``;`` and their
replies joined by ``;``; a setting answers nothing; a refused command queues its error
(code and text) and answers nothing, so a query that fails leaves the driver to time out
or read the queue, as on the instruments.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sims.wire.base import Fate, Outcome
from sims.wire.scpi import matches, split_units

log = logging.getLogger("sims.wire.scpi_device")

ERROR_QUEUE_DEPTH = 30
_SUFFIX_RE = re.compile(r"(?<=[A-Z])(\d+)(?=:|$)")


class ScpiRefusal(Exception):
    """A command the instrument refuses: queue ``code``."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


# handler(arguments, suffixes) -> Outcome; suffixes are the numeric header suffixes in order.
Handler = Callable[[str, tuple[int, ...]], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class ScpiCommand:
    """One header: its manual spelling and its query and setting handlers."""

    spelling: str
    query: Handler | None = None
    setting: Handler | None = None


class ScpiCore:
    """Dispatches program messages over a command table and keeps the error queue."""

    def __init__(self, name: str, errors: dict[int, str], commands: list[ScpiCommand]) -> None:
        self.name = name
        self.error_texts = errors
        self.commands = commands
        self.queue: deque[int] = deque(maxlen=ERROR_QUEUE_DEPTH)

    def push_error(self, code: int, detail: str = "") -> None:
        """Queue ``code`` (the newest is dropped by the deque when full)."""
        log.info("%s: error %d (%s)", self.name, code, detail)
        self.queue.append(code)

    def pop_error(self, *, plus: bool) -> str:
        """The oldest queued error as ``<code>,"<text>"`` (``0,"No error"`` when empty)."""
        code = self.queue.popleft() if self.queue else 0
        number = f"{code:+d}" if plus else str(code)
        return f'{number},"{self.error_texts[code]}"'

    async def message(self, message: str) -> Outcome:
        """Run every unit of one program message; OK with the joined replies, or SILENT."""
        replies: list[str] = []
        for unit in split_units(message):
            suffixes = tuple(int(s) for s in _SUFFIX_RE.findall(unit.path))
            path = _SUFFIX_RE.sub("", unit.path)
            try:
                command = self._find(path)
                handler = command.query if unit.is_query else command.setting
                if handler is None:
                    raise ScpiRefusal(-113, unit.header)
                outcome = await handler(unit.arguments, suffixes)
            except ScpiRefusal as exc:
                self.push_error(exc.code, exc.detail or unit.header)
                continue
            except ValueError as exc:
                self.push_error(-104 if unit.arguments[:1].isalpha() else -102, str(exc))
                continue
            if outcome.fate in (Fate.LOST, Fate.GARBLED, Fate.SILENT):
                return outcome
            if outcome.fate is Fate.REFUSED:
                self.push_error(-222, outcome.message)
            elif unit.is_query:
                replies.append(str(outcome.value))
        return Outcome(Fate.OK, ";".join(replies)) if replies else Outcome(Fate.SILENT)

    def _find(self, path: str) -> ScpiCommand:
        for command in self.commands:
            if matches(path, command.spelling):
                return command
        raise ScpiRefusal(-113, path)


def required(argument: str) -> str:
    """The argument, or the -109 refusal when it is missing."""
    if not argument:
        raise ScpiRefusal(-109)
    return argument


def no_argument(argument: str) -> None:
    """Refuse (-108) any argument given to a command that takes none."""
    if argument:
        raise ScpiRefusal(-108, argument)
