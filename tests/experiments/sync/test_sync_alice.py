"""Alice's transmitter node: how a key block reaches her transmitter and what she records."""

from __future__ import annotations

import numpy as np
import pytest

import sims.twins.transmitter as sim_transmitter
from tests.experiments.sync.sync_helpers import link, world_alice


async def test_a_block_within_memory_is_handed_over_in_pieces_before_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pieces of 3000 pulses: a 10,000-pulse block is 4 of them (the last one shorter),
    # all in the transmitter before it starts, so they play back to back with no gap.
    monkeypatch.setattr(sim_transmitter, "UPLOAD_PULSES", 3000)
    world, _laser, _tagger = await link({"seed": 11})
    alice = await world_alice(world)
    calls: list[tuple[str, int]] = []
    transmitter = alice.transmitter
    load, append, start = transmitter.load_pattern, transmitter.append_pattern, transmitter.start

    async def logged_load(pattern: object, *, repeat: bool) -> None:
        calls.append(("load", len(pattern)))  # type: ignore[arg-type]
        await load(pattern, repeat=repeat)  # type: ignore[arg-type]

    async def logged_append(pattern: object) -> None:
        calls.append(("append", len(pattern)))  # type: ignore[arg-type]
        await append(pattern)  # type: ignore[arg-type]

    async def logged_start() -> None:
        calls.append(("start", 0))
        await start()

    monkeypatch.setattr(transmitter, "load_pattern", logged_load)
    monkeypatch.setattr(transmitter, "append_pattern", logged_append)
    monkeypatch.setattr(transmitter, "start", logged_start)

    first, span = await alice.play_key_block(10_000)

    pieces = [("load", 3000), ("append", 3000), ("append", 3000), ("append", 1000)]
    assert calls == [*pieces, ("start", 0)]
    assert span == 10_000  # no underrun gap between the pieces
    index = np.arange(first, first + span + 5, dtype=np.int64)
    # What Alice recorded is what the source played, pulse by pulse, then no light.
    played = world._program().codes(index)
    recorded = alice.record.codes(index)
    assert np.array_equal(played[:-5], recorded[:-5])
    assert (recorded[-5:] == 0xFF).all() and (played[-5:] == world._program().dark_code).all()
