"""Supervised instrument calls: per-call timeout, bounded retries with backoff, reconnect.

Transient faults (InstrumentTimeout, ConnectionLost) and ProtocolError (a garbled reply)
are retried; ConnectionLost first reconnects the instrument (``close()`` then
``connect()``; drivers re-apply their settings on connect). InstrumentFault — the device
itself reports an error — is permanent and raised at once, as is the last error once the
retries are spent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from labctl.interfaces.clock import Clock, WallClock
from labctl.interfaces.errors import (
    TRANSIENT_ERRORS,
    ConnectionLost,
    InstrumentError,
    InstrumentTimeout,
    ProtocolError,
)
from labctl.interfaces.instrument import Instrument

T = TypeVar("T")

RETRYABLE: tuple[type[InstrumentError], ...] = (*TRANSIENT_ERRORS, ProtocolError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry: delay = first_delay_s * factor**attempt, capped."""

    retries: int = 3
    first_delay_s: float = 0.2
    factor: float = 2.0
    max_delay_s: float = 10.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"RetryPolicy.retries must be >= 0, got {self.retries}")
        if self.first_delay_s < 0 or self.factor < 1 or self.max_delay_s < 0:
            raise ValueError(f"RetryPolicy: invalid backoff {self}")

    def delay_s(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (counted from 0)."""
        return float(min(self.max_delay_s, self.first_delay_s * self.factor**attempt))


def _owner(fn: Callable[..., Any]) -> Instrument | None:
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, Instrument) else None


async def reconnect(instrument: Instrument, *, timeout_s: float) -> None:
    """Close and reopen an instrument's link (its driver re-applies settings on connect)."""
    try:
        await asyncio.wait_for(instrument.close(), timeout_s)
    except (InstrumentError, TimeoutError):
        pass  # a dead link may not close cleanly; connect() below decides
    try:
        await asyncio.wait_for(instrument.connect(), timeout_s)
    except TimeoutError as exc:
        raise InstrumentTimeout(
            f"reconnect took longer than {timeout_s} s", instrument=instrument.name
        ) from exc


async def supervised_call(
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    timeout_s: float,
    policy: RetryPolicy | None = None,
    instrument: Instrument | None = None,
    clock: Clock | None = None,
    log: logging.Logger | None = None,
    **kwargs: Any,
) -> T:
    """Await ``fn(*args, **kwargs)`` with a timeout and retries (see module docstring).

    ``instrument`` defaults to the object a bound method belongs to; it is what gets
    reconnected after ConnectionLost. Backoff sleeps on ``clock`` (the run's clock).
    """
    policy = policy or RetryPolicy()
    clock = clock or WallClock()
    instrument = instrument or _owner(fn)
    name = instrument.name if instrument is not None else getattr(fn, "__qualname__", repr(fn))
    command = getattr(fn, "__name__", repr(fn))
    attempt = 0
    while True:
        try:
            try:
                return await asyncio.wait_for(fn(*args, **kwargs), timeout_s)
            except TimeoutError as exc:
                raise InstrumentTimeout(
                    f"no answer within {timeout_s} s", instrument=name, command=command
                ) from exc
        except RETRYABLE as exc:
            if attempt >= policy.retries:
                if log is not None:
                    log.error("%s: giving up after %d retries: %s", name, attempt, exc)
                raise
            delay_s = policy.delay_s(attempt)
            attempt += 1
            if log is not None:
                log.warning(
                    "%s: %s; retry %d/%d in %.3g s", name, exc, attempt, policy.retries, delay_s
                )
            await clock.sleep(delay_s)
            if isinstance(exc, ConnectionLost) and instrument is not None:
                try:
                    await reconnect(instrument, timeout_s=timeout_s)
                except RETRYABLE as reconnect_exc:
                    if log is not None:
                        log.warning("%s: reconnect failed: %s", name, reconnect_exc)
