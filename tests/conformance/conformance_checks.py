"""Assertions shared by the conformance tests (importable: conftest puts this folder on path)."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest

from labctl.interfaces.errors import InstrumentError, InstrumentFault


def leaves(value: Any) -> Iterator[Any]:
    """Every scalar inside a nested snapshot (dict values and list items)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from leaves(item)
    else:
        yield value


def assert_json_plain(snapshot: Any) -> None:
    """A snapshot is plain JSON: a dict with string keys that survives a strict round trip."""
    assert isinstance(snapshot, dict) and snapshot
    text = json.dumps(snapshot, allow_nan=False)
    assert json.loads(text) == snapshot


def contains_number(snapshot: dict[str, Any], value: float, tolerance: float) -> bool:
    """True when some numeric leaf of ``snapshot`` equals ``value`` within ``tolerance``."""
    return any(
        isinstance(leaf, int | float)
        and not isinstance(leaf, bool)
        and math.isclose(leaf, value, abs_tol=tolerance)
        for leaf in leaves(snapshot)
    )


async def expect_refusal(instrument: Any, call: Awaitable[Any]) -> InstrumentFault:
    """``call`` must raise InstrumentFault naming ``instrument`` and the command."""
    with pytest.raises(InstrumentFault) as caught:
        await call
    error = caught.value
    assert error.instrument == instrument.name
    assert error.command, "the error must name the command that failed"
    assert instrument.name in str(error)
    return error


def assert_names(instrument: Any, error: InstrumentError) -> None:
    """A typed instrument error names the instrument and the command."""
    assert error.instrument == instrument.name
    assert error.command
