"""Device side of SCPI text for the ID1000 twin: program messages, mnemonics, numbers with units.

Rules (IEEE 488.2 / SCPI, as the ID Quantique Time Controller manual states them): headers
are case-insensitive; each mnemonic has a short form (its capitals in the manual, e.g.
``INPU`` of ``INPUt``) and a long form; a node may carry a numeric suffix (``INPUt3``);
a query ends with ``?``; one program message may hold several commands separated by
``;``, a command without a leading ``:`` continuing from the last node of the previous
one (``INPU1:ENAB ON;THRE -0.4V`` sets ``INPU1:THRE``) and ``*`` common commands leaving
that path alone. Numbers may carry a unit with an SI prefix (``1000mV``, ``3000 GTB``).

Matching is lenient the way IDQ's own example scripts need it: a token matches a
mnemonic when it is a prefix of the long form at least as long as the short form
(``CONFI`` for ``CONFiguration``, ``ERRORS`` for ``ERRors``).

Written for the wire twins only (drivers keep their own codecs).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

NODE_RE = re.compile(r"([A-Za-z_*]+?)(\d*)")
NUMBER_RE = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)")
PREFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
SUB_PREFIXES = {"": 1.0, "M": 1e-3, "U": 1e-6, "N": 1e-9}


class ScpiError(Exception):
    """A refused command; ``code`` is the text the device answers (``SCPI_ERR_...``)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


INVALID_CMD = "SCPI_ERR_INVALID_CMD"
PARAM_TYPE = "SCPI_ERR_PARAM_TYPE"
PARAM_COUNT = "SCPI_ERR_PARAM_COUNT"
PARAM_UNITS = "SCPI_ERR_PARAM_UNITS"
INVALID_VALUE = "SCPI_ERR_INVALID_VALUE"
NUM_SUF_INVALID = "SCPI_ERR_NUM_SUF_INVALID"


@dataclass(frozen=True, slots=True)
class Mnemonic:
    """One mnemonic as the manual writes it: capitals = short form (``INPUt``)."""

    spelled: str

    @property
    def long(self) -> str:
        return self.spelled.upper()

    @property
    def short(self) -> str:
        capitals = "".join(ch for ch in self.spelled if not ch.islower())
        return capitals or self.long

    def matches(self, token: str) -> bool:
        """Short form, long form or anything between (case-insensitive)."""
        upper = token.upper()
        return self.long.startswith(upper) and len(upper) >= len(self.short)


class Vocabulary:
    """The mnemonics a device knows; maps any accepted spelling to the long form."""

    def __init__(self, spelled: Iterable[str]) -> None:
        self._mnemonics = [Mnemonic(s) for s in spelled]

    def canonical(self, token: str) -> str | None:
        """The long form ``token`` stands for, or None (the longest match wins)."""
        found = [m for m in self._mnemonics if m.matches(token)]
        if not found:
            return None
        return max(found, key=lambda m: len(m.short)).long


def choice(token: str | None, *spelled: str) -> str:
    """``token`` as the long form of one of ``spelled`` (``"RISing", "FALLing"``)."""
    if token is None or not token.strip():
        raise ScpiError(PARAM_COUNT, f"one of {', '.join(spelled)} is needed")
    for mnemonic in (Mnemonic(s) for s in spelled):
        if mnemonic.matches(token.strip()):
            return mnemonic.long
    raise ScpiError(PARAM_TYPE, f"{token!r} is not one of {', '.join(spelled)}")


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed command: canonical nodes, their suffixes, query or not, arguments."""

    nodes: tuple[str, ...]
    suffixes: tuple[int | None, ...]
    query: bool
    args: tuple[str, ...]

    def suffix(self, index: int, default: int = 1) -> int:
        value = self.suffixes[index]
        return default if value is None else value


def split_program(line: str) -> list[str]:
    """The commands of one program message (``;`` outside quotes), blanks dropped."""
    parts, current, quote = [], [], ""
    for ch in line:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_command(
    text: str, path: tuple[tuple[str, int | None], ...], vocabulary: Vocabulary
) -> Command:
    """One command, continued from ``path`` unless it starts with ``:`` or ``*``."""
    header, _, rest = text.partition(" ")
    header = header.strip()
    query = header.endswith("?")
    header = header.rstrip("?")
    args = tuple(a.strip() for a in split_args(rest)) if rest.strip() else ()
    if header.startswith("*"):
        return Command((header.upper(),), (None,), query, args)
    absolute = header.startswith(":")
    nodes: list[tuple[str, int | None]] = [] if absolute else list(path)
    for token in header.lstrip(":").split(":"):
        match = NODE_RE.fullmatch(token)
        if match is None:
            raise ScpiError(INVALID_CMD, f"bad header {header!r}")
        word = vocabulary.canonical(match[1])
        if word is None:
            raise ScpiError(INVALID_CMD, f"unknown mnemonic {match[1]!r}")
        nodes.append((word, int(match[2]) if match[2] else None))
    return Command(tuple(n for n, _ in nodes), tuple(s for _, s in nodes), query, args)


def split_args(text: str) -> list[str]:
    """Arguments separated by commas (outside quotes)."""
    out, current, quote = [], [], ""
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == ",":
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out


def number(text: str, unit: str, *, sub_units: bool = False) -> float:
    """A number with an optional ``unit`` (and SI prefix) in base units.

    ``sub_units`` picks milli/micro/nano prefixes (volts: ``mV``), else kilo..tera
    (time-base units: ``GTB``).
    """
    match = NUMBER_RE.fullmatch(text.strip())
    if match is None:
        raise ScpiError(PARAM_TYPE, f"{text!r} is not a number")
    value, suffix = float(match[1]), match[2].upper()
    if not suffix:
        return value
    if not unit or not suffix.endswith(unit):
        raise ScpiError(PARAM_UNITS, f"unit {match[2]!r} where {unit or 'none'} is expected")
    prefix = suffix[: -len(unit)]
    table = SUB_PREFIXES if sub_units else PREFIXES
    if prefix not in table:
        raise ScpiError(PARAM_UNITS, f"unknown prefix in {match[2]!r}")
    return value * table[prefix]


def boolean(text: str | None, *, default: bool | None = None) -> bool:
    """ON/OFF/1/0 (a missing value takes ``default`` when the command has one)."""
    if text is None or not text.strip():
        if default is None:
            raise ScpiError(PARAM_COUNT, "a value is needed")
        return default
    word = text.strip().upper()
    if word in ("ON", "1"):
        return True
    if word in ("OFF", "0"):
        return False
    raise ScpiError(PARAM_TYPE, f"{text!r} is not ON or OFF")


Executor = Callable[[Command], Awaitable[str | None]]


async def run_program(line: str, vocabulary: Vocabulary, execute: Executor) -> str:
    """Execute every command of ``line``; query answers joined by newlines.

    The first refused command ends the message and its error code is the whole answer.
    """
    answers: list[str] = []
    path: tuple[tuple[str, int | None], ...] = ()
    for text in split_program(line):
        try:
            command = parse_command(text, path, vocabulary)
            answer = await execute(command)
        except ScpiError as exc:
            return exc.code
        if not command.nodes[0].startswith("*"):
            path = tuple(zip(command.nodes[:-1], command.suffixes[:-1], strict=True))
        if answer is not None and (command.query or answer):
            answers.append(answer)
    return "\n".join(answers)
