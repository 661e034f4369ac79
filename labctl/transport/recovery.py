"""How a driver gets its link back: reconnect backoff and re-sends of garbled replies.

Every transport carries a ``ReconnectPolicy`` (transport option ``reconnect``, a mapping
of the fields below; defaults fit an instrument that reboots within ~15 s). Drivers read
it to bound their own recovery: after a dropped link they reconnect with exponential
backoff, at most ``attempts`` times and never starting an attempt later than ``total_s``
after the drop; a reply that does not parse is re-sent at most ``garbled_retries`` times
(only for commands that are safe to repeat) after the input has been flushed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

FLUSH_QUIET_S = 0.05
"""Input is flushed until the line has been quiet this long (a garbled reply's tail)."""


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Bounds of a driver's own recovery; delay before attempt k>=1 = first * factor**(k-1)."""

    attempts: int = 6
    first_delay_s: float = 0.1
    factor: float = 2.0
    max_delay_s: float = 2.0
    total_s: float = 15.0
    garbled_retries: int = 2

    def __post_init__(self) -> None:
        for name in ("attempts", "garbled_retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"reconnect.{name} must be an integer >= 0, got {value!r}")
        for name in ("first_delay_s", "factor", "max_delay_s", "total_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"reconnect.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"reconnect.{name} must be finite and >= 0, got {value!r}")
        if self.factor < 1:
            raise ValueError(f"reconnect.factor must be >= 1, got {self.factor!r}")

    def delay_s(self, attempt: int) -> float:
        """Wait before reconnect attempt ``attempt`` (0 = the first, made at once)."""
        if attempt <= 0:
            return 0.0
        return float(min(self.max_delay_s, self.first_delay_s * self.factor ** (attempt - 1)))

    def schedule_s(self) -> Iterator[float]:
        """The wait before each attempt, in order (``attempts`` of them)."""
        return (self.delay_s(k) for k in range(self.attempts))

    @classmethod
    def from_options(cls, value: Any) -> ReconnectPolicy:
        """A policy from the ``reconnect`` transport option; ValueError naming the field."""
        if isinstance(value, ReconnectPolicy):
            return value
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError(f"reconnect must be a mapping of {_field_names()}, got {value!r}")
        known = _field_names()
        for key in value:
            if key not in known:
                raise ValueError(f"unknown reconnect field {key!r} (known: {', '.join(known)})")
        return cls(**{str(k): v for k, v in value.items()})


def _field_names() -> list[str]:
    return [f.name for f in fields(ReconnectPolicy)]


DEFAULT_POLICY = ReconnectPolicy()


@runtime_checkable
class HasReconnectPolicy(Protocol):
    """A transport that carries its own recovery bounds."""

    @property
    def reconnect_policy(self) -> ReconnectPolicy:
        """Bounds of the driver's reconnects and re-sends over this transport."""
        ...


@runtime_checkable
class Flushable(Protocol):
    """A transport whose pending input can be thrown away (before re-sending a query)."""

    async def discard_input(self, quiet_s: float = FLUSH_QUIET_S) -> int:
        """Drop buffered and arriving bytes until the line is quiet; bytes dropped."""
        ...


def policy_of(transport: object) -> ReconnectPolicy:
    """The transport's policy, or the defaults for transports without one."""
    # An attribute lookup, not isinstance(HasReconnectPolicy): a runtime Protocol check
    # costs microseconds, and stream readers ask once per frame.
    policy = getattr(transport, "reconnect_policy", None)
    return policy if isinstance(policy, ReconnectPolicy) else DEFAULT_POLICY


async def discard_input(transport: object, quiet_s: float = FLUSH_QUIET_S) -> int:
    """Flush ``transport``'s input when it can be flushed (message transports need not)."""
    if isinstance(transport, Flushable):
        return await transport.discard_input(quiet_s)
    return 0
