"""The device side of SCPI text: program messages in, headers matched in long or short form.

This is the wire twins' own SCPI codec, written apart from the drivers' on purpose: a codec
shared by both ends would let a driver and its twin be wrong together.

IEEE 488.2 / SCPI rules served here:

- a program message ends in CR, LF or CR LF (``take_messages`` pops whole messages);
- it holds message units separated by ``;``; a unit is a header, then optionally one
  space and the arguments (comma separated); every unit is taken from the root of the
  command tree (the TSL-570 manual writes each unit in full, so no relative paths);
- headers are case-insensitive, the leading colon is optional, and each mnemonic may be
  written in its short form (the capital letters of the manual's spelling, ``WAV``) or in
  full (``WAVELENGTH``), nothing in between; ``[:NODE]`` marks an optional node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_MNEMONIC_RE = re.compile(r"([A-Z*]+)([a-z]*)")


def take_messages(buffer: bytearray) -> list[str]:
    """Pop every complete program message from ``buffer`` (CR, LF or CR LF ends one).

    A lone CR at the very end of the buffer is taken as a whole terminator: a device
    cannot wait to see whether LF follows, and an empty message that a late LF then makes
    is dropped (``split_units`` of an empty message is empty).
    """
    messages: list[str] = []
    start = 0
    for index, byte in enumerate(buffer):
        if byte in (0x0A, 0x0D):
            messages.append(bytes(buffer[start:index]).decode("ascii", errors="replace"))
            start = index + 1
    del buffer[:start]
    return [message for message in messages if message.strip()]


@dataclass(frozen=True, slots=True)
class Unit:
    """One message unit: the upper-cased header (colon stripped) and its argument text."""

    header: str
    arguments: str

    @property
    def is_query(self) -> bool:
        """True for a query (the header ends in ``?``)."""
        return self.header.endswith("?")

    @property
    def path(self) -> str:
        """The header without the query mark."""
        return self.header.rstrip("?")


def split_units(message: str) -> list[Unit]:
    """The message units of one program message (empty units are skipped)."""
    units: list[Unit] = []
    for text in message.split(";"):
        text = text.strip()
        if not text:
            continue
        header, _, arguments = text.partition(" ")
        units.append(Unit(header.upper().lstrip(":"), arguments.strip()))
    return units


@lru_cache(maxsize=256)
def _pattern(spelling: str) -> re.Pattern[str]:
    """A regex for a manual spelling such as ``:POWer[:LEVel]:STATe``."""
    parts: list[str] = []
    anchored = False
    for optional, node in re.findall(r"(\[?):?([A-Za-z*]+)\]?", spelling):
        match = _MNEMONIC_RE.fullmatch(node)
        if match is None:
            raise ValueError(f"bad SCPI spelling {spelling!r} at {node!r}")
        short, rest = match.group(1), match.group(2)
        forms = re.escape(short) if not rest else f"(?:{re.escape(short + rest.upper())}|{short})"
        if not anchored:  # leading optional nodes carry their own trailing colon
            parts.append(f"(?:{forms}:)?" if optional else forms)
            anchored = not optional
        else:
            parts.append(f"(?::{forms})?" if optional else f":{forms}")
    return re.compile("".join(parts))


def matches(path: str, spelling: str) -> bool:
    """True when ``path`` (upper case, no colon, no ``?``) names the node ``spelling``."""
    return _pattern(spelling).fullmatch(path) is not None


def parse_bool(argument: str) -> bool:
    """A SCPI boolean: 0/1/ON/OFF (any case); ValueError otherwise."""
    text = argument.strip().upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    raise ValueError(f"not a boolean: {argument!r}")


_NUMBER_RE = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*")


def parse_number(argument: str) -> tuple[float, str]:
    """A decimal number (exponent allowed) and its unit suffix, upper-cased ('' if none)."""
    match = _NUMBER_RE.fullmatch(argument)
    if match is None:
        raise ValueError(f"not a number: {argument!r}")
    return float(match.group(1)), match.group(2).upper()
