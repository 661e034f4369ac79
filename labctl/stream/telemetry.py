"""Periodic instrument telemetry: every instrument's ``health()`` readings under
``tele/{instrument}/{quantity}`` while a run streams, so every dashboard panel fills.

It runs beside the plan (plans publish nothing themselves): each tick reads every
instrument's health in parallel with a time limit, and one slow or failing instrument only
loses its own readings for that tick (logged once at DEBUG, never raised into the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from labctl.interfaces.instrument import Health

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0
_NOT_NAME = re.compile(r"[^a-z0-9_]+")


class _HasHealth(Protocol):
    async def health(self) -> Health: ...


class _Telemetry(Protocol):
    def publish_telemetry(
        self,
        instrument: str,
        quantity: str,
        value: float | int | str | bool,
        ts: float | None = ...,
    ) -> None: ...


def quantity_name(reading: str) -> str:
    """A health reading's key as a topic quantity (a letter, then ``[a-z0-9_]``, <= 63)."""
    name = _NOT_NAME.sub("_", reading.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"q_{name}"
    return name[:63]


async def publish_once(
    instruments: Mapping[str, _HasHealth], sink: _Telemetry, timeout_s: float
) -> int:
    """Read every instrument's health once and publish its readings; returns how many."""

    async def one(name: str, inst: _HasHealth) -> Health | None:
        try:
            return await asyncio.wait_for(inst.health(), timeout_s)
        except Exception as exc:  # telemetry never takes a run down
            log.debug("telemetry: %s health failed: %s", name, exc)
            return None

    names = list(instruments)
    results = await asyncio.gather(*(one(n, instruments[n]) for n in names))
    count = 0
    for name, health in zip(names, results, strict=True):
        if health is None:
            continue
        for key, value in health.readings.items():
            try:
                sink.publish_telemetry(name, quantity_name(key), value)
            except Exception as exc:  # no unit suffix, a bad name: that reading is skipped
                log.debug("telemetry: %s/%s not published: %s", name, key, exc)
                continue
            count += 1
    return count


@contextlib.asynccontextmanager
async def periodic_telemetry(
    instruments: Mapping[str, _HasHealth],
    sink: _Telemetry,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> AsyncIterator[None]:
    """Publish health readings every ``interval_s`` while the block runs (0 turns it off)."""
    if interval_s <= 0:
        yield
        return

    async def loop() -> None:
        while True:
            await publish_once(instruments, sink, timeout_s=max(0.5, interval_s))
            await asyncio.sleep(interval_s)

    task = asyncio.get_running_loop().create_task(loop(), name="labctl-telemetry")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
