"""Alice's control link: Bob's requests carried out by her node on her instruments."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from pathlib import Path

import numpy as np
import pytest

from experiments.keygen.control import AliceControl, RemoteAlice, RemoteError, RemoteLaser
from experiments.sync.acquire import marker_frame
from experiments.sync.alice import TransmitterAlice, alice_of
from labctl.qkd.auth.channel import AuthenticatedChannel, MemoryTransport, memory_pair
from labctl.qkd.auth.transcript import TranscriptAuthenticator, open_local_pair
from labctl.qkd.errors import AuthenticationError, ChannelClosed, ChannelTimeout
from labctl.station import Station
from labctl.station.loader import load_config
from tests.experiments.keygen.keygen_helpers import write_config


async def test_bob_drives_alice_frames_blocks_and_laser_through_her_node(tmp_path: Path) -> None:
    station = Station.from_config(load_config(write_config(tmp_path)))
    async with station:
        local = alice_of(station)
        assert isinstance(local, TransmitterAlice)
        at_alice, at_bob = memory_pair(os.urandom(32), 30.0)
        control = AliceControl(at_alice, local, station.instruments["laser"])  # type: ignore[arg-type]
        serving = asyncio.create_task(control.serve())
        try:
            remote = await RemoteAlice.connect(at_bob)
            assert remote.period_ps == local.period_ps
            assert remote.intensity_mu == local.intensity_mu
            await remote.ensure_light()
            # The calibration frame is public: Bob recomputes its states from the seed.
            index = np.arange(remote.calibration_anchor or 0, (remote.calibration_anchor or 0) + 64)
            mine, hers = remote.pattern(index), local.pattern(index)
            assert np.array_equal(mine.bit, hers.bit) and np.array_equal(mine.basis, hers.basis)
            frame = marker_frame(remote, 2, 1000, seed=17)
            first = await remote.play_marker_frame(frame.pattern, 2, 1000, 17)
            index = np.arange(first, first + len(frame.pattern))
            assert np.array_equal(remote.pattern(index).bit, local.pattern(index).bit)
            block_first, span = await remote.play_key_block(10_000)
            assert span >= 10_000
            # Key states stay with Alice: Bob has no record of them.
            assert int(remote.pattern(np.array([block_first])).intensity[0]) == 0xFF
            laser = RemoteLaser("laser", at_bob, remote.lock)
            await laser.set_power_mw(0.5)
            assert await laser.get_power_mw() == 0.5 and control.power_mw == 0.5
            with pytest.raises(RemoteError, match="set_power_mw"):
                await laser.set_power_mw(1e6)  # her laser refuses; her node goes on
            assert await laser.get_power_mw() == 0.5
            await remote.close()
            await asyncio.wait_for(serving, 10.0)
        finally:
            serving.cancel()


class _ForgingTransport:
    """Bob's transport run by an adversary who holds the per-message HMAC key too: flips a
    bit in the payload of Bob's ``forge_at``-th frame and MACs it again."""

    def __init__(self, inner: MemoryTransport, hmac_key: bytes, forge_at: int | None) -> None:
        self.inner = inner
        self.key = hmac.new(hmac_key, b"labctl-qkd-auth/bob", hashlib.sha256).digest()
        self.sent = 0
        self.forge_at = forge_at

    async def send_frame(self, frame: bytes) -> None:
        if self.sent == self.forge_at:
            body = bytearray(frame[:-32])
            body[-2] ^= 0x01
            frame = bytes(body) + hmac.new(self.key, bytes(body), hashlib.sha256).digest()
        self.sent += 1
        await self.inner.send_frame(frame)

    async def recv_frame(self, timeout_s: float) -> bytes:
        return await self.inner.recv_frame(timeout_s)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("forge", [False, True])
async def test_under_wegman_carter_a_key_block_checks_the_control_transcript(
    tmp_path: Path, forge: bool
) -> None:
    station = Station.from_config(load_config(write_config(tmp_path)))
    async with station:
        local = alice_of(station)
        assert isinstance(local, TransmitterAlice)
        alice_pool, bob_pool = open_local_pair(tmp_path / "a.sqlite", tmp_path / "b.sqlite")
        hmac_key = os.urandom(32)
        ta, tb = MemoryTransport.pair()
        at_alice = AuthenticatedChannel(
            ta, hmac_key, "alice", 10.0, transcript=TranscriptAuthenticator(alice_pool)
        )
        # Bob's frames: 0 ctl/hello, 1 ctl/light (forged: its JSON changes by one bit).
        at_bob = AuthenticatedChannel(
            _ForgingTransport(tb, hmac_key, 1 if forge else None),
            hmac_key,
            "bob",
            10.0,
            transcript=TranscriptAuthenticator(bob_pool),
        )
        control = AliceControl(at_alice, local, station.instruments["laser"])  # type: ignore[arg-type]
        serving = asyncio.create_task(control.serve())
        try:
            remote = await RemoteAlice.connect(at_bob)
            # A forged request may well be carried out (here: light): HMAC does not see it.
            await remote.ensure_light()
            if not forge:
                _, span = await remote.play_key_block(10_000)
                assert span >= 10_000 and alice_pool.checks_verified == 1
                assert bob_pool.checks_verified == 1
                await remote.close()
                await asyncio.wait_for(serving, 10.0)
                return
            # The checkpoint of the next key block stops Alice before she plays it.
            with pytest.raises((AuthenticationError, ChannelClosed, ChannelTimeout)):
                await remote.play_key_block(10_000)
            with pytest.raises(AuthenticationError, match="checkpoint"):
                await asyncio.wait_for(serving, 10.0)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
