"""Group commit: one fsync of the ledger covers every delivery committed before it started.

A delivery must be on disk before its key leaves the KME (else a power loss could bring the
reservation back and the key be served again). An fsync costs more than the rest of a
request (benchmarks/README.md, "kme"); concurrent deliveries therefore wait for one
shared fsync: whoever finds its commit already covered by a finished sync returns at once,
the others queue behind one sync that runs in a worker thread, so the event loop never
blocks on the disk.
"""

from __future__ import annotations

import asyncio

from labctl.kme.ledger import Ledger


class GroupCommit:
    """Make a ledger's committed deliveries durable, one shared fsync at a time."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._lock = asyncio.Lock()
        self._synced = 0
        self.syncs = 0

    async def durable(self) -> None:
        """Return once every delivery committed before this call is on disk."""
        if not self.ledger.durable_delivery:
            return
        target = self.ledger.commits
        async with self._lock:
            if self._synced >= target:
                return  # a sync that started after our commit already covered it
            self._synced = await asyncio.to_thread(self.ledger.sync)
            self.syncs += 1
