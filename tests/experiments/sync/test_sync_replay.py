"""A live synchronization's raw tags, recorded to PTU as they are read, replayed through the
ReplayTimeTagger as Bob's tagger synchronize to the same offset and pulse index.

Alice is live the first time (transmitter and tagger twins on a world); on replay she is
what she published: her design, the marker frame's seed and the index of its first pulse
(her frame marker), so nothing is played and Bob's side is the file alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from experiments.sync.acquire import acquire_sync
from experiments.sync.alice import AlicePattern, AliceSide
from experiments.sync.settings import SyncSettings
from labctl.formats.ptu import PtuWriter, read_ptu
from labctl.interfaces.pattern import PulsePattern
from labctl.interfaces.tags import TagBatch
from sims.twins import SimTimeTagger
from sims.twins.replay import ReplayTimeTagger
from tests.experiments.sync.sync_helpers import link, world_alice

SETTINGS = SyncSettings(marker_seed=5)  # the marker frame's public states, fixed for both
WORLD = {"seed": 21, "taggers": {"bob": {"offset_ps": 987_654_321, "frequency_offset_ppm": 1.3}}}


class RecordingTagger:
    """Bob's tagger twin whose every batch read is also written to a PTU file."""

    def __init__(self, tagger: SimTimeTagger, writer: PtuWriter) -> None:
        self.tagger, self.writer = tagger, writer
        self.batch_ps: list[int] = []

    @property
    def n_channels(self) -> int:
        return self.tagger.n_channels

    @property
    def resolution_ps(self) -> int:
        return self.tagger.resolution_ps

    async def start_stream(self) -> None:
        await self.tagger.start_stream()

    async def stop_stream(self) -> None:
        await self.tagger.stop_stream()

    async def read_batch(self, timeout_s: float) -> TagBatch:
        batch = await self.tagger.read_batch(timeout_s)
        self.writer.write(batch)
        self.batch_ps.append(batch.stop_ps - batch.start_ps)
        return batch


class RecordedAlice:
    """Alice as the recording left her: live design and states, the frame's first pulse."""

    def __init__(self, live: AliceSide) -> None:
        self.live = live
        self.first: int | None = None  # set by the live run, replayed after

    @property
    def period_ps(self) -> int:
        return self.live.period_ps

    @property
    def intensity_names(self) -> tuple[str, ...]:
        return self.live.intensity_names

    @property
    def intensity_mu(self) -> tuple[float, ...]:
        return self.live.intensity_mu

    @property
    def nominal_power_mw(self) -> float:
        return self.live.nominal_power_mw

    @property
    def intensity_probability(self) -> tuple[float, ...]:
        return self.live.intensity_probability

    @property
    def basis_z_probability(self) -> float:
        return self.live.basis_z_probability

    def pattern(self, indices: np.ndarray) -> AlicePattern:
        return self.live.pattern(indices)

    async def ensure_light(self) -> None:
        if self.first is None:
            await self.live.ensure_light()

    async def play_marker_frame(
        self, frame: PulsePattern, gaps: int, gap_pulses: int, seed: int
    ) -> int:
        if self.first is None:  # live: play it and keep the index her frame marker gave
            self.first = await self.live.play_marker_frame(frame, gaps, gap_pulses, seed)
        return self.first

    async def play_key_block(self, n_pulses: int) -> tuple[int, int]:
        raise AssertionError("synchronization plays no key block")

    def reserve(self, block_pulses: int, blocks: int) -> None:
        self.live.reserve(block_pulses, blocks)


async def test_replayed_ptu_synchronizes_to_the_live_offset(tmp_path: Path) -> None:
    world, _laser, tagger = await link(WORLD)
    alice = RecordedAlice(await world_alice(world))
    path = tmp_path / "sync.ptu"
    with PtuWriter(path, n_channels=tagger.n_channels, resolution_ps=tagger.resolution_ps) as out:
        recording = RecordingTagger(tagger, out)
        live = await acquire_sync(recording, alice, world.clock, SETTINGS)
    recorded = read_ptu(path)
    assert recorded.time_ps.size >= live.detections > 10_000
    # Windows no longer than the live ones (the twin's vary by a picosecond of rounding).
    batch_ps = min(recording.batch_ps)
    async with ReplayTimeTagger("tagger-replay", path, batch_ps=batch_ps) as replay:
        replayed = await acquire_sync(replay, alice, world.clock, SETTINGS)
    # The pulse index is a count: exact. The offset is a fit of pulse times to tags with
    # jitter sigma over N detections: its standard error is ~sigma / sqrt(N) (the phase;
    # the period's error times the lever arm to pulse 0 adds less at these spans), and
    # the two fits saw the same tags, so they may differ by a few standard errors at most.
    assert replayed.n_ref == live.n_ref
    standard_error_ps = live.jitter_ps / math.sqrt(live.detections)
    assert replayed.offset_ps == pytest.approx(live.offset_ps, abs=5 * standard_error_ps)
    assert replayed.drift_ppb == pytest.approx(live.drift_ppb, abs=0.05)
    assert replayed.detections == pytest.approx(live.detections, rel=0.05)
    # And the offset is the world's: Bob's clock reading when Alice's pulse 0 arrives.
    truth = world.truth
    expected_ps = truth.bob_offset_ps + truth.fiber_delay_ps * (1 + 1.3e-6)
    assert live.offset_ps == pytest.approx(expected_ps, abs=100.0)
