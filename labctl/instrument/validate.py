"""Early argument checks with errors that name the instrument, the setting and the range.

Drivers call these before anything goes on the wire, so a bad value never reaches the
device and the message says what was wrong and where (QCoDeS validator style).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from labctl.interfaces.errors import InstrumentFault, ProtocolError


class RefusedValue(InstrumentFault, ValueError):
    """A value refused before it reaches the wire.

    It is the interface's refusal (InstrumentFault, naming instrument and setting, what
    a plan or the conformance suite catches) and Python's ValueError for callers that
    check arguments the usual way.
    """


class RefusedType(InstrumentFault, TypeError):
    """An argument of the wrong type, refused before it reaches the wire (see RefusedValue)."""


def check_number(instrument: str, setting: str, value: float, low: float, high: float) -> float:
    """Return ``value`` as a float when finite and within [low, high], else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RefusedType(
            f"{setting} must be a number, got {value!r}", instrument=instrument, command=setting
        )
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise RefusedValue(
            f"{setting}={value!r} is outside [{low:g}, {high:g}]",
            instrument=instrument,
            command=setting,
        )
    return number


def check_int(instrument: str, setting: str, value: int, low: int, high: int) -> int:
    """Return ``value`` when it is an int within [low, high], else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RefusedType(
            f"{setting} must be an integer, got {value!r}", instrument=instrument, command=setting
        )
    if not low <= value <= high:
        raise RefusedValue(
            f"{setting}={value} is outside [{low}, {high}]", instrument=instrument, command=setting
        )
    return value


def check_bool(instrument: str, setting: str, value: bool) -> bool:
    """Return ``value`` when it is a real bool (not 0/1 or a string)."""
    if not isinstance(value, bool):
        raise RefusedType(
            f"{setting} must be True or False, got {value!r}",
            instrument=instrument,
            command=setting,
        )
    return value


def check_channel(instrument: str, channel: int, n_channels: int) -> int:
    """Return a 0-based channel index when valid for an instrument with ``n_channels``."""
    return check_int(instrument, "channel", channel, 0, n_channels - 1)


def check_length(instrument: str, setting: str, values: Sequence[float], length: int) -> None:
    """Fail unless ``values`` holds exactly ``length`` items."""
    if isinstance(values, str | bytes) or len(values) != length:
        raise RefusedValue(
            f"{setting} needs {length} values, got {values!r}",
            instrument=instrument,
            command=setting,
        )


def parse_float(text: str, *, instrument: str, command: str) -> float:
    """Parse a numeric reply, or raise ProtocolError quoting the reply."""
    try:
        number = float(text.strip())
    except ValueError:
        raise ProtocolError(
            f"expected a number, got {text!r}", instrument=instrument, command=command
        ) from None
    if not math.isfinite(number):
        raise ProtocolError(
            f"expected a finite number, got {text!r}", instrument=instrument, command=command
        )
    return number


def parse_int(text: str, *, instrument: str, command: str) -> int:
    """Parse an integer reply, or raise ProtocolError quoting the reply."""
    try:
        return int(text.strip())
    except ValueError:
        raise ProtocolError(
            f"expected an integer, got {text!r}", instrument=instrument, command=command
        ) from None


def parse_on_off(text: str, *, instrument: str, command: str) -> bool:
    """Parse ``1``/``0``/``ON``/``OFF`` replies, or raise ProtocolError."""
    word = text.strip().upper()
    if word in ("1", "ON"):
        return True
    if word in ("0", "OFF"):
        return False
    raise ProtocolError(
        f"expected ON/OFF or 1/0, got {text!r}", instrument=instrument, command=command
    )


def decode_ascii(raw: bytes, *, instrument: str, command: str) -> str:
    """Decode an ASCII reply, or raise ProtocolError on stray bytes (line noise)."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(
            f"reply is not ASCII: {raw!r}", instrument=instrument, command=command
        ) from None
