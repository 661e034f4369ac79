"""Raw tags as PicoQuant PTU (T2) files: written by labctl, read back by ``ptufile``."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import ptufile
import pytest

from labctl.formats.ptu import (
    RECTYPE_HYDRAHARP_V2_T2,
    PtuError,
    PtuWriter,
    read_ptu,
    write_ptu,
)
from labctl.interfaces import BuildContext, InstrumentSpec, InstrumentTimeout, TagBatch
from sims.twins import SimTimeTagger
from sims.world import World

WORLD = {"seed": 3, "slice_max_s": 0.001, "source": {"rate_hz": 1.0e8}}


async def recorded_batches(n_batches: int) -> tuple[list[TagBatch], int, int]:
    """Batches of Bob's SimTimeTagger on a lit world: (batches, n_channels, resolution_ps)."""
    world = World.from_settings(WORLD)
    world.set_laser_enabled(True)
    for detector in range(4):
        world.set_detector_enabled(detector, True)
    spec = InstrumentSpec("tagger-bob", "sims.twins:SimTimeTagger", {"side": "bob"})
    context = BuildContext(lab="ptu", node="test", clock=world.clock, world=world)
    tagger = SimTimeTagger.from_config(spec, context)
    async with tagger:
        await tagger.start_stream()
        batches = [await tagger.read_batch(1.0) for _ in range(n_batches)]
        await tagger.stop_stream()
    return batches, tagger.n_channels, tagger.resolution_ps


def joined(batches: list[TagBatch]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.concatenate([b.channel for b in batches]),
        np.concatenate([b.time_ps for b in batches]),
    )


async def test_ptufile_reads_the_tags_written(tmp_path: Path) -> None:
    batches, n_channels, resolution_ps = await recorded_batches(20)
    channel, time_ps = joined(batches)
    assert channel.size > 1000 and set(channel.tolist()) == {0, 1, 2, 3}
    path = tmp_path / "bob.ptu"
    n_records = write_ptu(path, batches, n_channels=n_channels, resolution_ps=resolution_ps)
    with ptufile.PtuFile(path) as ptu:
        assert ptu.record_type == RECTYPE_HYDRAHARP_V2_T2
        assert ptu.is_t3 is False
        assert ptu.global_resolution == pytest.approx(resolution_ps * 1e-12)
        assert ptu.number_records == n_records
        records = ptu.decode_records()
    events = records[records["channel"] >= 0]
    origin_ps = batches[0].start_ps
    assert np.array_equal(events["channel"].astype(np.uint8), channel)
    times = events["time"].astype(np.int64) * resolution_ps + origin_ps
    assert np.array_equal(times, time_ps)
    # Everything else is an overflow record (no markers were asked for).
    assert np.all(records["marker"][records["channel"] < 0] == 0)


async def test_own_reader_round_trips_sync_and_markers(tmp_path: Path) -> None:
    batches, n_channels, resolution_ps = await recorded_batches(5)
    channel, time_ps = joined(batches)
    path = tmp_path / "roles.ptu"
    write_ptu(
        path,
        batches,
        n_channels=n_channels,
        resolution_ps=resolution_ps,
        sync_channel=3,
        marker_channels=[2],
    )
    back = read_ptu(path)
    assert np.array_equal(back.time_ps, time_ps) and np.array_equal(back.channel, channel)
    assert (back.start_ps, back.stop_ps) == (batches[0].start_ps, batches[-1].stop_ps)
    with ptufile.PtuFile(path) as ptu:
        records = ptu.decode_records()
    # ptufile shows labctl channel 2 as marker bit 1 and channel 1 as input 1.
    assert int(np.count_nonzero(records["marker"] == 1)) == int(np.count_nonzero(channel == 2))
    inputs = records[(records["channel"] == 1) & (records["marker"] == 0)]
    assert np.array_equal(
        inputs["time"].astype(np.int64) + batches[0].start_ps, time_ps[channel == 1]
    )


def test_long_silences_take_several_overflow_records(tmp_path: Path) -> None:
    # 3 s between two tags at 1 ps: 89 407 wraps of 2**25 ps, 127 per overflow record.
    times = np.array([5, 3_000_000_000_005, 3_000_000_000_007], dtype=np.int64)
    batch = TagBatch(np.array([1, 0, 1], np.uint8), times, 0, 3_000_000_000_010)
    path = tmp_path / "gap.ptu"
    n_records = write_ptu(path, [batch], n_channels=2, resolution_ps=1)
    wraps = (3_000_000_000_005 >> 25) - 0
    assert n_records == 3 + -(-wraps // 127)
    with ptufile.PtuFile(path) as ptu:
        events = ptu.decode_records()
    events = events[events["channel"] >= 0]
    assert events["time"].astype(np.int64).tolist() == times.tolist()
    assert events["channel"].tolist() == [1, 0, 1]


def test_header_layout_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "empty.ptu"
    with PtuWriter(path, n_channels=2, resolution_ps=4) as writer:
        writer.write(TagBatch(np.array([1], np.uint8), np.array([108], np.int64), 100, 200))
    data = path.read_bytes()
    assert data[:16] == b"PQTTTR\0\0" + b"1.0.00\0\0"
    ident, index, kind = struct.unpack_from("<32siI", data, 16)
    assert ident.rstrip(b"\0") == b"File_CreatingTime" and index == -1 and kind == 0x21000008
    end = data.index(b"Header_End")
    assert struct.unpack_from("<iI", data, end + 32) == (-1, 0xFFFF0008)
    (record,) = struct.unpack_from("<I", data, end + 48)
    assert record == (1 << 25) | 2  # input 1 at tick (108 - 100) / 4
    assert len(data) == end + 48 + 4


def test_bad_input_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.ptu"
    with pytest.raises(PtuError, match="distinct"):
        PtuWriter(path, n_channels=2, resolution_ps=1, sync_channel=1, marker_channels=[1])
    writer = PtuWriter(path, n_channels=2, resolution_ps=1)
    with pytest.raises(PtuError, match="channel 5"):
        writer.write(TagBatch(np.array([5], np.uint8), np.array([1], np.int64), 0, 2))
    writer.close()
    (tmp_path / "not.ptu").write_bytes(b"hello world, not a ptu file at all" * 3)
    with pytest.raises(PtuError, match="not a PTU file"):
        read_ptu(tmp_path / "not.ptu")


async def test_record_then_replay_gives_the_recorded_tags(tmp_path: Path) -> None:
    from labctl.formats.ptu import record_ptu
    from sims.twins.replay import ReplayTimeTagger

    world = World.from_settings(WORLD)
    world.set_laser_enabled(True)
    spec = InstrumentSpec("tagger-bob", "sims.twins:SimTimeTagger", {"side": "bob"})
    context = BuildContext(lab="ptu", node="test", clock=world.clock, world=world)
    path = tmp_path / "run.ptu"
    async with SimTimeTagger.from_config(spec, context) as tagger:
        await tagger.start_stream()
        n_tags = await record_ptu(tagger, path, duration_ps=3_000_000_000)
        await tagger.stop_stream()
    recorded = read_ptu(path)
    assert n_tags == recorded.time_ps.size > 0
    assert recorded.stop_ps - recorded.start_ps >= 3_000_000_000
    async with ReplayTimeTagger("replay", path, batch_ps=700_000_000) as replay:
        await replay.start_stream()
        batches = []
        while True:
            try:
                batches.append(await replay.read_batch(1.0))
            except InstrumentTimeout:  # replayed to the file's end
                break
    channel, time_ps = joined(batches)
    assert np.array_equal(channel, recorded.channel)
    assert np.array_equal(time_ps, recorded.time_ps)
