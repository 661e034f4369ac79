"""Bob's acquisition: time tags of one block -> detections indexed by Alice's pulse number.

The clock map (from synchronization) turns a tag on Bob's clock into the index of the
pulse Alice sent; the receiver wiring turns a tagger channel into (basis, bit). A pulse
with clicks in more than one detector is squashed to one detection with a random basis
and bit (the standard squashing map: an eavesdropper gains nothing from double clicks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from experiments.keygen._squash_jit import MIXED, squash_sorted
from experiments.sync.model import SyncError
from experiments.sync.tracker import SyncTracker
from labctl.interfaces.devices import TimeTagger
from labctl.interfaces.units import ps_to_seconds
from labctl.link.block import RawBlock
from labctl.qkd.sifting import Detections

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
_I32_MAX = np.iinfo(np.int32).max
F64 = npt.NDArray[np.float64]


class ClockMap(Protocol):
    """Bob's tags -> indices of the pulses Alice sent (experiments.sync.SyncResult is one)."""

    def assign(self, channel: npt.NDArray[np.uint8], time_ps: I64) -> tuple[I64, F64]:
        """Pulse index of every tag and its residual (ps) against the predicted arrival."""
        ...


CLOCK_JUMP_PS = 1_000_000_000  # 1 ms backwards between batches: a restarted tagger
WINDOW_SLACK_PS = 2_000_000_000_000  # 2 s of Bob's clock past a block's end: lock lost
TRACK_MIN_TAGS = 1000
TRACK_MIN_RATE_HZ = 1e5
"""A batch steers the tracked clock only when lit (dark stretches would pull it off)."""


@dataclass(frozen=True)
class LinearClockMap:
    """t_bob = offset_ps + n * period_ps * (1 + drift_ppb * 1e-9), inverted and rounded."""

    offset_ps: float
    period_ps: float
    drift_ppb: float = 0.0

    def assign(self, channel: npt.NDArray[np.uint8], time_ps: I64) -> tuple[I64, F64]:
        """Pulse index of every tag and its residual (ps); channel delays are taken as 0."""
        scale = self.period_ps * (1.0 + self.drift_ppb * 1e-9)
        rel = time_ps.astype(np.float64) - self.offset_ps
        k = np.rint(rel / scale)
        return k.astype(np.int64), rel - k * scale


def _index_at(clock_map: ClockMap, time_ps: int) -> int:
    """Pulse index nearest one Bob-clock time (on channel 0)."""
    index, _ = clock_map.assign(np.zeros(1, np.uint8), np.array([time_ps], dtype=np.int64))
    return int(index[0])


def detections_from_tags(
    channel: npt.NDArray[np.uint8],
    time_ps: I64,
    clock_map: ClockMap,
    detector_channels: Sequence[int],
    rng: np.random.Generator,
) -> Detections:
    """Detections (sorted by pulse index, one per pulse) from raw tags of the four detectors."""
    index, _ = clock_map.assign(channel, time_ps)
    return detections_from_indices(channel, index, detector_channels, rng, overwrite=True)


def detections_from_indices(
    channel: npt.NDArray[np.uint8],
    pulse_index: I64,
    detector_channels: Sequence[int],
    rng: np.random.Generator,
    *,
    overwrite: bool = False,
) -> Detections:
    """Detections (sorted by pulse index, one per pulse) from tags already mapped to pulses.

    ``overwrite``: ``pulse_index`` is the caller's to give away (e.g. batches concatenated
    for this call); the detections are then merged in it instead of in a copy, and their
    indices are a view of it.
    """
    wiring = np.full(256, 255, dtype=np.uint8)
    for code, ch in enumerate(detector_channels):
        wiring[int(ch)] = code
    detector = wiring[channel]
    keep = detector != 255
    index = pulse_index
    if not bool(keep.all()):
        index, detector = pulse_index[keep], detector[keep]
    elif not overwrite:
        index = pulse_index.copy()
    del keep
    if index.size > 1 and not bool(np.all(index[1:] >= index[:-1])):
        # Tags come in time order, so a tracked clock maps them in pulse order already;
        # only a map fitted afterwards (or a clock step) needs the sort.
        order = np.argsort(index, kind="stable")
        index, detector = index[order], detector[order]
    n = squash_sorted(index, detector)
    index, detector = index[:n], detector[:n]
    # A pulse whose clicks disagree (different detector) gets a random basis and bit.
    mixed = detector == MIXED
    basis = detector >> np.uint8(1)
    bit = detector & np.uint8(1)
    n_mixed = int(np.count_nonzero(mixed))
    if n_mixed:
        basis[mixed] = rng.integers(0, 2, n_mixed, dtype=np.uint8)
        bit[mixed] = rng.integers(0, 2, n_mixed, dtype=np.uint8)
    return Detections.create(index, basis, bit)


FLOOD_MIN_CLICKS = 10_000
"""Clicks a block must hold before its click rate is judged against the ceiling: enough
that a rate several times the expected one is no fluctuation."""


@dataclass
class _BlockTags:
    """A block's detector tags as read so far, small: per batch, a copy of the channels (a
    batch's arrays may be views of the driver's whole frame) and the pulse indices as
    offsets from the batch's first (int32 where the batch's spread allows: a block holds
    millions of tags, and its window may be wider than int32 when a transmitter underruns).
    Once the block's window is known, only the tags inside it are kept; once
    :meth:`let_go` is called, tags are only counted."""

    detectors: npt.NDArray[np.bool_]
    """Indexed by channel: True for the detectors' channels (other tags are dropped)."""
    window: tuple[int, int] | None = None
    """(first pulse, span) of the block, once known."""
    channels: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    bases: list[int] = field(default_factory=list)
    offsets: list[I64 | I32] = field(default_factory=list)
    clicks: int = 0
    """Detector tags inside the window (all read, before it is known)."""
    keeping: bool = True

    @classmethod
    def of(cls, detector_channels: Sequence[int]) -> _BlockTags:
        """Tags of the given detector channels."""
        detectors = np.zeros(256, dtype=np.bool_)
        detectors[list(detector_channels)] = True
        return cls(detectors)

    def add(self, channel: npt.NDArray[np.uint8], index: I64) -> None:
        """Keep a batch's detector tags (those inside the window, once it is known)."""
        keep = self.detectors[channel]
        if self.window is not None:
            first_pulse, span = self.window
            keep &= index >= first_pulse
            keep &= index < first_pulse + span
        kept, channel = index[keep], channel[keep]
        self.clicks += kept.size
        if not self.keeping:
            return
        base = int(kept.min()) if kept.size else 0
        kept -= base
        narrow = kept.size == 0 or int(kept.max()) <= _I32_MAX
        self.channels.append(channel)
        self.bases.append(base)
        self.offsets.append(kept.astype(np.int32) if narrow else kept)

    def let_go(self) -> None:
        """Drop every tag kept; from now on tags are only counted."""
        self.keeping = False
        self.channels.clear()
        self.bases.clear()
        self.offsets.clear()

    def restrict(self, first_pulse: int, span: int) -> None:
        """The block's window became known: drop what was read outside it."""
        self.window = (first_pulse, span)
        for i, (base, offset) in enumerate(zip(self.bases, self.offsets, strict=True)):
            low, high = first_pulse - base, first_pulse + span - base  # offsets start at 0
            if offset.size and (low > 0 or int(offset.max()) >= high):
                keep = (offset >= low) & (offset < high)
                self.offsets[i], self.channels[i] = offset[keep], self.channels[i][keep]
        self.clicks = sum(offset.size for offset in self.offsets)

    def take(self) -> tuple[npt.NDArray[np.uint8], I64]:
        """All kept tags (channels, absolute pulse indices), the pieces let go as joined."""
        channel = np.concatenate(self.channels) if self.channels else np.zeros(0, np.uint8)
        self.channels.clear()
        index = np.empty(channel.size, dtype=np.int64)
        at = 0
        self.offsets.reverse()
        for base in self.bases:
            offset = self.offsets.pop()  # freed once copied
            piece = index[at : at + offset.size]
            piece[:] = offset
            piece += base
            at += offset.size
        self.bases.clear()
        return channel, index


async def acquire_block(
    tagger: TimeTagger,
    *,
    block: int,
    pulses: int,
    period_ps: int,
    clock_map: ClockMap,
    detector_channels: Sequence[int],
    rng: np.random.Generator,
    now_s: float,
    window: asyncio.Future[tuple[int, int]] | None = None,
    tracker: SyncTracker | None = None,
    timeout_s: float = 10.0,
    max_clicks_per_pulse: float | None = None,
) -> RawBlock:
    """Stream Bob's tagger until the block's pulses are covered; one block of detections.

    With ``window`` (Alice playing the block: her index of its first pulse and the span to
    read, once her frame marker told her) Bob reads while she plays, from a stream already
    running since before she started (``relock`` leaves it so), and keeps what falls in
    the window. Without it, the block is the next ``pulses`` pulses after the stream starts.
    With ``tracker`` every batch is mapped by the tracked clock (a window of seconds, e.g.
    a transmitter fed slower than it plays, would slip pulses on a fixed extrapolation),
    and ``max_clicks_per_pulse`` (the ceiling the calibrated light allows) caps what is
    kept: past it the block's detections are let go, its clicks only counted
    (``RawBlock.flooded``), as a blinded receiver's tenfold clicks would fill memory.
    """
    if window is None:
        await tagger.start_stream()
    channels: list[npt.NDArray[np.uint8]] = []  # only without a tracker (mapped at the end)
    times: list[I64] = []
    kept = _BlockTags.of(detector_channels)  # with a tracker: mapped batch by batch
    flooded: tuple[int, int] | None = None
    n_tags = missed = 0
    first_pulse: int | None = None
    span = pulses
    known_at_ps: int | None = None  # Bob's clock when Alice's window became known
    last_stop_ps: int | None = None
    try:
        while True:
            batch = await tagger.read_batch(timeout_s)
            if last_stop_ps is not None and batch.start_ps < last_stop_ps - CLOCK_JUMP_PS:
                raise SyncError(
                    "Bob's tagger clock went back (the tagger restarted?): resynchronize"
                )
            last_stop_ps = batch.stop_ps
            missed += batch.missed_events
            n_tags += len(batch)
            if tracker is not None:
                span_s = ps_to_seconds(max(batch.stop_ps - batch.start_ps, 1))
                if len(batch) >= TRACK_MIN_TAGS and len(batch) / span_s >= TRACK_MIN_RATE_HZ:
                    index = tracker.update(batch).pulse_index
                else:  # darks between chunks: map them, but do not steer the clock by them
                    index = tracker.result.assign(batch.channel, batch.time_ps)[0]
                clock_map = tracker.result
                kept.add(batch.channel, index)
                del index
            else:  # mapped at the end; the clicks since the window began are counted
                if kept.keeping:
                    channels.append(batch.channel)
                    times.append(batch.time_ps)
                if first_pulse is not None:
                    kept.clicks += int(np.count_nonzero(kept.detectors[batch.channel]))
            if first_pulse is None:
                if window is None:
                    first_pulse = _index_at(clock_map, batch.start_ps) + 1
                elif window.done():
                    first_pulse, span = window.result()
                    known_at_ps = batch.stop_ps
                else:
                    # Let Alice's node go on (a simulated tagger answers without waiting).
                    await asyncio.sleep(0)
                    continue
                kept.restrict(first_pulse, span)  # what was read before: the block's tags
            read = _index_at(clock_map, batch.stop_ps) - first_pulse
            if (
                flooded is None
                and max_clicks_per_pulse is not None
                and kept.clicks > max(FLOOD_MIN_CLICKS, max_clicks_per_pulse * read)
            ):
                flooded = (kept.clicks, min(read, span))
                kept.let_go()
                channels.clear()
                times.clear()
            if read >= span:
                break
            if known_at_ps is not None and batch.stop_ps - known_at_ps > 2 * span * period_ps + (
                WINDOW_SLACK_PS
            ):
                raise SyncError(
                    f"Bob's tags never reached Alice's block (pulses {first_pulse}..+{span}): "
                    "the clock map no longer fits; resynchronize"
                )
    finally:
        await tagger.stop_stream()
    if flooded is not None:
        channel, pulse_index = np.zeros(0, np.uint8), np.zeros(0, np.int64)
        found = detections_from_indices(channel, pulse_index, detector_channels, rng)
    elif tracker is not None:
        channel, pulse_index = kept.take()
        found = detections_from_indices(
            channel, pulse_index, detector_channels, rng, overwrite=True
        )
        del pulse_index
    else:
        channel = np.concatenate(channels) if channels else np.zeros(0, np.uint8)
        channels.clear()
        time_ps = np.concatenate(times) if times else np.zeros(0, np.int64)
        times.clear()
        found = detections_from_tags(channel, time_ps, clock_map, detector_channels, rng)
    del channel
    inside = (found.pulse_index >= first_pulse) & (found.pulse_index < first_pulse + span)
    if bool(inside.all()):  # tracked: only the block's tags were kept
        detections = found
    else:
        detections = Detections(found.pulse_index[inside], found.basis[inside], found.bit[inside])
    return RawBlock(
        block=block,
        first_pulse=first_pulse,
        pulses=pulses,
        detections=detections,
        started_s=now_s,
        acquired_s=ps_to_seconds(pulses * period_ps),
        tags=n_tags,
        missed_tags=missed,
        span=span,
        flooded=flooded,
    )
