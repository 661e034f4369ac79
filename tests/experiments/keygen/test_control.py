"""Alice's control link: Bob's requests carried out by her node on her instruments."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from experiments.keygen.control import AliceControl, RemoteAlice, RemoteError, RemoteLaser
from experiments.sync.acquire import marker_frame
from experiments.sync.alice import TransmitterAlice, alice_of
from labctl.qkd.auth.channel import memory_pair
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
