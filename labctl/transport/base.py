"""The transport contract drivers are written against.

A transport moves bytes to and from one instrument. Implementations (TCP, serial, VISA,
ZMQ) live beside this file; tests use ``labctl.testing.exchange`` to script the exact
bytes. Every call has a timeout; a broken link raises ConnectionLost and ``open()`` can be
called again to reconnect.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    """A byte link to one instrument, safe to share between tasks."""

    @property
    def resource(self) -> str:
        """The address this transport talks to (for messages)."""
        ...

    @property
    def instrument(self) -> str:
        """The station name of the instrument, used in error messages."""
        ...

    @property
    def timeout_s(self) -> float:
        """Default timeout of every read, in seconds."""
        ...

    @property
    def is_open(self) -> bool:
        """True while the link is up."""
        ...

    async def open(self) -> None:
        """Open (or re-open after ConnectionLost) the link; InstrumentTimeout if it cannot."""
        ...

    async def close(self) -> None:
        """Close the link; idempotent."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """Hold the per-resource lock across several writes/reads (one command exchange)."""
        ...

    async def write(self, data: bytes, *, command: str | None = None) -> None:
        """Send bytes; ``command`` names the command for error messages."""
        ...

    async def read_until(
        self, terminator: bytes, *, command: str | None = None, timeout_s: float | None = None
    ) -> bytes:
        """Read up to and including ``terminator``; the terminator is stripped from the result."""
        ...

    async def read_exact(
        self, n_bytes: int, *, command: str | None = None, timeout_s: float | None = None
    ) -> bytes:
        """Read exactly ``n_bytes`` bytes."""
        ...

    async def query(
        self,
        data: bytes,
        *,
        terminator: bytes = b"\n",
        command: str | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Write ``data`` then read one reply ending in ``terminator``, under the lock.

        Message-based transports (ZMQ REQ/REP) send one message and return the reply
        message; they ignore ``terminator``.
        """
        ...
