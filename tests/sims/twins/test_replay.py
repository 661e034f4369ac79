"""ReplayTimeTagger streams a recorded PTU file: the tags replayed are the file's."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from labctl.formats.ptu import read_ptu, write_ptu
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    InstrumentFault,
    InstrumentSpec,
    InstrumentTimeout,
    Source,
    TagBatch,
    TimeTagger,
)
from sims.twins.replay import ReplayTimeTagger


def recording(path: Path, n_tags: int = 5000, span_ps: int = 10_000_000_000) -> None:
    """A PTU file of random tags on 4 channels over ``span_ps`` (channel 3 as sync)."""
    rng = np.random.default_rng(7)
    time_ps = np.sort(rng.integers(1_000, span_ps, n_tags)).astype(np.int64)
    channel = rng.integers(0, 4, n_tags).astype(np.uint8)
    batch = TagBatch(channel, time_ps, 0, span_ps)
    write_ptu(path, [batch], n_channels=4, resolution_ps=1, sync_channel=3)


def replay(path: Path, **settings: object) -> ReplayTimeTagger:
    spec = InstrumentSpec(
        "tagger-replay", "sims.twins.replay:ReplayTimeTagger", {"file": path.name, **settings}
    )
    context = BuildContext(lab="replay", node="test", config_file=str(path.parent / "st.yaml"))
    return ReplayTimeTagger.from_config(spec, context)


async def test_replayed_tags_equal_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.ptu"
    recording(path)
    expected = read_ptu(path)
    async with replay(path, batch_ps=300_000_000) as tagger:
        assert isinstance(tagger, TimeTagger)
        assert (tagger.n_channels, tagger.resolution_ps) == (4, 1)
        await tagger.start_stream()
        batches = []
        while True:
            try:
                batches.append(await tagger.read_batch(1.0))
            except InstrumentTimeout:
                break
    assert len(batches) == 34  # 10 ms in 0.3 ms windows, the last one shorter
    for before, after in itertools.pairwise(batches):
        assert after.start_ps == before.stop_ps
    assert (batches[0].start_ps, batches[-1].stop_ps) == (0, 10_000_000_000)
    channel = np.concatenate([b.channel for b in batches])
    time_ps = np.concatenate([b.time_ps for b in batches])
    assert np.array_equal(channel, expected.channel) and np.array_equal(time_ps, expected.time_ps)
    assert channel.size == 5000


async def test_delays_restart_loop_and_rates(tmp_path: Path) -> None:
    path = tmp_path / "rec.ptu"
    recording(path, n_tags=1000, span_ps=1_000_000_000)
    file = read_ptu(path)
    async with replay(path, batch_ps=400_000_000, loop=True) as tagger:
        await tagger.set_channel_delay_ps(1, 2_500)
        assert await tagger.get_channel_delay_ps(1) == 2_500
        await tagger.start_stream()
        first = await tagger.read_batch(1.0)
        await tagger.stop_stream()
        await tagger.start_stream()  # goes on: no tag is replayed twice
        second = await tagger.read_batch(1.0)
        third = await tagger.read_batch(1.0)  # the file's last 0.2 ms
        lap = await tagger.read_batch(1.0)  # looped: the file again, 1 ms later
        assert second.start_ps == first.stop_ps and third.stop_ps == 1_000_000_000
        assert lap.start_ps == 1_000_000_000
        shifted = file.time_ps + np.where(file.channel == 1, 2_500, 0)
        in_first = np.sort(shifted[shifted < 400_000_000])
        assert np.array_equal(first.time_ps, in_first)
        assert np.array_equal(lap.time_ps - 1_000_000_000, in_first)
        rates = await tagger.get_count_rates_hz(0.1)
        counts = np.bincount(file.channel, minlength=4)
        assert rates == pytest.approx([c / 1e-3 for c in counts])
        with pytest.raises(InstrumentFault):
            await tagger.set_channel_delay_ps(4, 0)
        snapshot = await tagger.snapshot()
        assert snapshot["channel_delays_ps"][1] == 2_500


def test_config_names_what_is_wrong(tmp_path: Path) -> None:
    spec = InstrumentSpec(
        "tagger-replay",
        "sims.twins.replay:ReplayTimeTagger",
        {"fiel": "x.ptu"},
        source=Source("st.yaml", 4),
    )
    with pytest.raises(ConfigError) as caught:
        ReplayTimeTagger.from_config(spec, BuildContext(lab="l", node="n"))
    assert caught.value.field == "instruments.tagger-replay.settings.fiel"
    with pytest.raises(ConfigError) as caught:
        replay(tmp_path / "x.ptu", batch_ps=0)
    assert caught.value.field == "instruments.tagger-replay.settings.batch_ps"
