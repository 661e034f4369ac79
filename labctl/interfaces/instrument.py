"""What every instrument has: a lifecycle, a snapshot, a safe state and a health check.

Capabilities are small Protocols (not a class tree). ``LifecycleMixin`` gives any class
with ``connect()``/``close()`` the ``async with`` behaviour for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable


@dataclass(frozen=True, slots=True)
class Health:
    """The result of a health check: ok or not, why, and the readings behind it."""

    ok: bool
    detail: str = ""
    readings: dict[str, float | int | str | bool] = field(default_factory=dict)


@runtime_checkable
class Instrument(Protocol):
    """Common lifecycle of every real driver and every simulated twin."""

    name: str

    async def connect(self) -> None:
        """Open the link to the instrument and read its identity; idempotent."""
        ...

    async def close(self) -> None:
        """Close the link; the instrument keeps its last settings; idempotent."""
        ...

    async def snapshot(self) -> dict[str, Any]:
        """All current settings and identity as plain JSON-able values, for run metadata."""
        ...

    async def safe_state(self) -> None:
        """Put the instrument where nobody gets hurt and nothing gets damaged (never a no-op)."""
        ...

    async def health(self) -> Health:
        """Check that the instrument answers and is in a usable state."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class LifecycleMixin:
    """``async with instrument:`` connects on entry and closes on exit."""

    async def connect(self) -> None:  # pragma: no cover - always overridden
        raise NotImplementedError

    async def close(self) -> None:  # pragma: no cover - always overridden
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
