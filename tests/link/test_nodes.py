"""Alice and Bob nodes: the channel stays in step whatever way a block ends."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from labctl.link import nodes
from labctl.link.nodes import AliceNode, BobNode
from labctl.link.profile import STAGES
from labctl.link.settings import KeygenSettings
from labctl.qkd.auth.channel import memory_pair
from labctl.store.keystore import KeyStore
from tests.experiments.keygen.keygen_helpers import HashSource, make_block


async def test_a_failed_verification_leaves_the_channel_ready_for_the_next_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bob's tag check fails once (as when Cascade leaves an error behind): Alice refuses
    # with pa/none, and the next block on the same channel must still produce a key.
    verdicts = iter([False])
    real = nodes.tags_match
    monkeypatch.setattr(nodes, "tags_match", lambda key, tag: next(verdicts, real(key, tag)))
    settings = KeygenSettings(block_pulses=20_000_000)
    a_ch, b_ch = memory_pair(os.urandom(32), 30.0)
    with KeyStore(tmp_path / "a.sqlite") as sa, KeyStore(tmp_path / "b.sqlite") as sb:
        alice = AliceNode(a_ch, sa, settings, HashSource())
        alice_task = asyncio.create_task(alice.serve())
        bob = BobNode(b_ch, sb, settings)
        first = await bob.process(make_block(0, 20_000_000, 1))
        second = await bob.process(make_block(1, 20_000_000, 2))
        await bob.close()
        alice_results = await alice_task
        assert sa.ids() == sb.ids() == [second.key_id]
    assert first.status == "no-key"
    assert first.reason == "verification failed: keys differ after Cascade"
    assert [r.status for r in alice_results] == ["no-key", "key"]
    assert second.status == "key" and second.secret_bits > 0


async def test_stage_profiles_cover_every_block_on_both_sides(tmp_path: Path) -> None:
    settings = KeygenSettings(block_pulses=20_000_000)
    a_ch, b_ch = memory_pair(os.urandom(32), 30.0)
    with KeyStore(tmp_path / "a.sqlite") as sa, KeyStore(tmp_path / "b.sqlite") as sb:
        alice = AliceNode(a_ch, sa, settings, HashSource())
        alice_task = asyncio.create_task(alice.serve())
        bob = BobNode(b_ch, sb, settings)
        result = await bob.process(make_block(0, 20_000_000, 3))
        await bob.close()
        await alice_task
    assert result.status == "key"
    for node in (alice, bob):
        assert node.profile.blocks == 1 and len(node.profile.history) == 1
        (block,) = node.profile.history
        assert set(STAGES) <= set(block)
        assert block["cascade"] > 0 and block["channel"] > 0 and block["key store"] > 0
        # Every message of the block went through the timed channel, both directions.
        assert block["messages"] == result.channel_uses
