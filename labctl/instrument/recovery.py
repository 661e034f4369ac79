"""A driver's own recovery: whole operations after a dropped link, single commands after garble.

Two levels, because they need different units of repetition:

* ``@operation`` marks a public driver method. When its link drops (ConnectionLost:
  refused, reset, EOF, a ZMQ peer that went away, a serial device that vanished), the
  driver reconnects with backoff, re-applies its remembered settings and runs the *whole*
  method again: after a device restart a half-done method (a stream start of two
  commands) must be redone from its start, not from the command that failed. Every
  operation of these drivers is safe to run again after a reconnect: settings are
  absolute values, queries and measurements only read (a repeated stream read gets the
  next frame; frames lost meanwhile show as a gap).
* ``resend_garbled`` wraps one command exchange. A reply that does not parse
  (ProtocolError) is re-sent after flushing the input, at most ``garbled_retries`` times
  (the transport's ReconnectPolicy) — but only for a command the caller declares
  repeatable. A command is repeatable when sending it twice leaves the device as sending
  it once: queries that do not consume anything and absolute settings. Commands that pop
  a queue (SCPI ``:SYST:ERR?``) or whose repetition the manual leaves open are not
  re-sent: their garbled reply is a ProtocolError at once.

Nested operations (``snapshot`` calling getters, a re-applied setting calling a public
setter) run plainly: only the outermost operation of a task recovers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from labctl.interfaces.errors import ProtocolError
from labctl.transport.recovery import discard_input, policy_of

log = logging.getLogger("drivers.recovery")

P = ParamSpec("P")
T = TypeVar("T")

_ACTIVE: ContextVar[frozenset[int]] = ContextVar("driver_operations", default=frozenset())
"""ids of the drivers this task is inside an operation (or a connect) of."""


class Recovering(Protocol):
    """What ``@operation`` needs of a driver (DriverBase provides it)."""

    async def _run_operation(
        self, name: str, run: Callable[[], Awaitable[T]], *, rerun: bool = True
    ) -> T:
        """Run ``run`` with reconnect-and-retry on a dropped link."""
        ...


def inside_operation(driver: object) -> bool:
    """True when this task already runs an operation (or connect) of ``driver``."""
    return id(driver) in _ACTIVE.get()


def enter_operation(driver: object) -> object:
    """Mark this task as inside an operation of ``driver``; returns the token to leave."""
    return _ACTIVE.set(_ACTIVE.get() | {id(driver)})


def leave_operation(token: object) -> None:
    """Undo ``enter_operation``."""
    _ACTIVE.reset(token)  # type: ignore[arg-type]


D = TypeVar("D", bound=Recovering)


def operation(
    method: Callable[Concatenate[D, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[D, P], Coroutine[Any, Any, T]]:
    """Mark a public driver method as an operation that survives a dropped link."""

    async def wrapper(self: D, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run_operation(method.__name__, lambda: method(self, *args, **kwargs))

    functools.update_wrapper(wrapper, method)
    return wrapper


def operation_once(
    method: Callable[Concatenate[D, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[D, P], Coroutine[Any, Any, T]]:
    """Mark an operation that must not run twice (it continues device state a restart
    loses): it reconnects first when the link is known to be down, but a link that drops
    while it runs is ConnectionLost for the caller."""

    async def wrapper(self: D, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run_operation(
            method.__name__, lambda: method(self, *args, **kwargs), rerun=False
        )

    functools.update_wrapper(wrapper, method)
    return wrapper


async def resend_garbled(
    transport: object,
    exchange: Callable[[], Awaitable[T]],
    *,
    repeatable: bool,
) -> T:
    """Run one command ``exchange``; re-send a repeatable one whose reply did not parse."""
    retries = policy_of(transport).garbled_retries if repeatable else 0
    attempt = 0
    while True:
        try:
            return await exchange()
        except ProtocolError as exc:
            if attempt >= retries:
                if attempt:
                    exc.add_note(f"the reply did not parse {attempt + 1} times in a row")
                raise
            attempt += 1
            log.warning("%s: %s; re-sending (%d/%d)", exc.instrument, exc, attempt, retries)
            await discard_input(transport)
