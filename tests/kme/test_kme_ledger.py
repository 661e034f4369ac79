"""The ledger refuses reused bytes and key_IDs; group commit shares one fsync."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from labctl.kme.commit import GroupCommit
from labctl.kme.ledger import Ledger, LedgerError, Reservation, Segment


def res(key_id: str, start: int, n: int = 32) -> Reservation:
    return Reservation(key_id, "m", ("s",), 8 * n, (Segment("k", start, n, start),))


def test_overlapping_ranges_and_repeated_ids_are_refused(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.consume([res("a", 0), res("b", 32)], reserve_here=True)
        with pytest.raises(LedgerError, match="handed out before"):
            ledger.consume([res("c", 48)], reserve_here=True)
        with pytest.raises(LedgerError, match="key_ID seen before"):
            ledger.consume([res("a", 100)], reserve_here=True)
        with pytest.raises(LedgerError, match="overlap each other"):
            ledger.consume([res("d", 200), res("e", 216)], reserve_here=True)
        ledger.consume([res("f", 64)], reserve_here=False)  # touching ranges merge
        assert ledger.consumed_end() == 96 and ledger.open_reservations() == 2
    with Ledger(tmp_path / "l.sqlite") as again:  # what was recorded survives a reopen
        assert again.consumed_end() == 96
        with pytest.raises(LedgerError, match="handed out before"):
            again.consume([res("g", 90)], reserve_here=True)
        # ... merged into one row on the way (three allocations were three rows)
        assert again._db.execute("SELECT start_byte, end_byte FROM consumed").fetchall() == [
            (0, 96)
        ]
        assert set(again.reservations(["a", "b", "f"])) == {"a", "b"}
        again.deliver(["a"])
        assert again.was_delivered(["a", "b"]) == {"a"}
        with pytest.raises(LedgerError):
            again.deliver(["a"])


async def test_concurrent_deliveries_share_fsyncs(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.consume([res(f"k{i}", 32 * i) for i in range(8)], reserve_here=True)
        group = GroupCommit(ledger)

        async def deliver(i: int) -> None:
            ledger.deliver([f"k{i}"])
            await group.durable()

        await asyncio.gather(*(deliver(i) for i in range(8)))
        # the first delivery's sync may start before the others commit; one more sync
        # covers all seven that queued behind it (not one sync each)
        assert group.syncs <= 2
        syncs = group.syncs
        await group.durable()
        assert group.syncs == syncs  # nothing new to sync
