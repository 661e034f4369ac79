"""Raw time tags as PicoQuant PTU files (TTTR, T2 mode), readable by PicoQuant's tools,
``ptufile`` and ``tttrlib``.

File layout (PicoQuant's public PTU specification and demo readers): the 8-byte magic
``PQTTTR\\0\\0``, an 8-byte version string, then tagged header entries of 48 bytes each
(a 32-byte NUL-padded identifier, an int32 index, 1 for none, a uint32 type code and an
8-byte value; strings give their byte length there and follow it, padded to 8 bytes) up to
``Header_End``; then the records, 32 bits each, little-endian.

Records emulate a HydraHarp 400 in T2 mode, record format V2 (``TTTRRecType``
0x01010204, the layout MultiHarp and PicoHarp 330 share as "generic T2"): bit 31
``special``, bits 25..30 ``channel``, bits 0..24 ``timetag`` in units of
``MeasDesc_GlobalResolution``. A normal record is a click on input ``channel`` (0-based);
a special record with channel 63 is an overflow (``timetag`` wraps of 2**25 units, counted
by its timetag field); channel 0 is a sync event, channels 1..15 marker bits.

labctl keeps what TTTR cannot say in tags of its own (readers skip unknown tags):
``labctl_TimeOrigin_ps`` (the tagger time of record time 0: record times cannot be
negative), ``labctl_StopTime_ps`` (the end of the last window written),
``labctl_Channels`` (labctl's channel count), ``labctl_SyncChannel`` (the labctl channel
written as sync events, -1 for none) and ``labctl_MarkerChannel[i]`` (the labctl channel
written as marker bit ``1 << i``). Batch windows and overflow flags are not kept.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self

import numpy as np
import numpy.typing as npt

from labctl.interfaces.tags import TagBatch
from labctl.interfaces.units import ps_to_seconds, seconds_to_ps

MAGIC = b"PQTTTR\0\0"
VERSION = b"1.0.00\0\0"

TY_EMPTY8 = 0xFFFF0008
TY_BOOL8 = 0x00000008
TY_INT8 = 0x10000008
TY_FLOAT8 = 0x20000008
TY_TDATETIME = 0x21000008
TY_ANSI_STRING = 0x4001FFFF
TY_WIDE_STRING = 0x4002FFFF
TY_FLOAT8_ARRAY = 0x2001FFFF
TY_BINARY_BLOB = 0xFFFFFFFF

RECTYPE_HYDRAHARP_V1_T2 = 0x00010204
RECTYPE_HYDRAHARP_V2_T2 = 0x01010204
RECTYPE_GENERIC_T2 = 0x00010207  # MultiHarp, PicoHarp 330: the V2 layout
_V2_TYPES = (RECTYPE_HYDRAHARP_V2_T2, RECTYPE_GENERIC_T2, 0x00010205, 0x00010206)
MEASUREMENT_MODE_T2 = 2

WRAP_TICKS = 1 << 25
TIMETAG_MASK = WRAP_TICKS - 1
OVERFLOW_CHANNEL = 63
# One overflow record may count up to 2**25 - 1 wraps, but readers that multiply the count
# by 2**25 in 32 bits (ptufile 2026.2 does) get 128 or more wrong: stay below.
MAX_WRAPS_PER_OVERFLOW = 127
MAX_MARKERS = 4  # HydraHarp marker inputs 1..4 -> bits 1, 2, 4, 8
MAX_INPUTS = 63  # input channel field: 0..62 (63 is the overflow code of special records)

_TAG_ENTRY = struct.Struct("<32siI")
_NUMBER_OF_RECORDS = "TTResult_NumberOfRecords"
_STOP_TAG = "labctl_StopTime_ps"
_ACQUISITION_TAG = "MeasDesc_AcquisitionTime"
_DELPHI_EPOCH_DAYS = 25569.0  # TDateTime counts days from 1899-12-30


class PtuError(ValueError):
    """A PTU file or a batch that cannot be written or read, naming file and field."""


TagValue = int | float | bool | str | None


def _entry(ident: str, value: TagValue, *, index: int = -1, kind: int | None = None) -> bytes:
    """One header entry (plus its string payload)."""
    name = ident.encode("ascii")
    if len(name) > 31:
        raise PtuError(f"PTU tag name {ident!r} is longer than 31 characters")
    if value is None:
        return _TAG_ENTRY.pack(name, index, TY_EMPTY8) + bytes(8)
    if isinstance(value, bool):
        return _TAG_ENTRY.pack(name, index, TY_BOOL8) + struct.pack("<q", -1 if value else 0)
    if isinstance(value, int):
        return _TAG_ENTRY.pack(name, index, TY_INT8) + struct.pack("<q", value)
    if isinstance(value, float):
        code = TY_FLOAT8 if kind is None else kind
        return _TAG_ENTRY.pack(name, index, code) + struct.pack("<d", value)
    text = value.encode("utf-8") + b"\0"
    text += bytes(-len(text) % 8)
    return _TAG_ENTRY.pack(name, index, TY_ANSI_STRING) + struct.pack("<q", len(text)) + text


def _ticks_per_record(
    ticks: npt.NDArray[np.int64], period: int
) -> tuple[npt.NDArray[np.uint32], int, npt.NDArray[np.int64]]:
    """Records of events at ``ticks`` (sorted, >= 0) with the overflow records needed
    before each, ``period`` wraps being written already: (records with the events' timetag
    fields only, the new period, each event's record position)."""
    wraps = ticks >> 25
    jumps = np.diff(wraps, prepend=np.int64(period))
    # Longer silences take several overflow records (one per 127 wraps = 4.3 ms at 1 ps).
    counts = -(-jumps // MAX_WRAPS_PER_OVERFLOW)
    n_overflow = int(counts.sum())
    records = np.empty(ticks.size + n_overflow, dtype=np.uint32)
    position = np.arange(ticks.size, dtype=np.int64) + np.cumsum(counts)
    is_overflow = np.ones(records.size, dtype=bool)
    is_overflow[position] = False
    overflow_at = np.flatnonzero(is_overflow)
    values = np.full(n_overflow, MAX_WRAPS_PER_OVERFLOW, dtype=np.int64)
    if n_overflow:
        last = np.cumsum(counts[counts > 0]) - 1
        values[last] = jumps[counts > 0] - (counts[counts > 0] - 1) * MAX_WRAPS_PER_OVERFLOW
    records[overflow_at] = ((1 << 31) | (OVERFLOW_CHANNEL << 25) | values).astype(np.uint32)
    records[position] = (ticks & TIMETAG_MASK).astype(np.uint32)
    new_period = int(wraps[-1]) if wraps.size else period
    return records, new_period, position


class PtuWriter:
    """Write tag batches to a PTU file as they arrive; ``close()`` completes the header.

    ``sync_channel`` (a labctl channel, e.g. the input of Alice's clock marker) is written
    as the TTTR sync and ``marker_channels[i]`` as marker bit ``1 << i``; every other
    channel as an input of the same number. Times are written in ticks of
    ``resolution_ps`` from ``origin_ps`` (default: the first batch's window start).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        n_channels: int,
        resolution_ps: int,
        origin_ps: int | None = None,
        sync_channel: int | None = None,
        marker_channels: Sequence[int] = (),
        comment: str = "",
    ) -> None:
        self.path = Path(path)
        if not 1 <= n_channels <= MAX_INPUTS:
            raise PtuError(f"{self.path}: n_channels must be 1..{MAX_INPUTS}, got {n_channels}")
        if resolution_ps < 1:
            raise PtuError(f"{self.path}: resolution_ps must be >= 1, got {resolution_ps}")
        if len(marker_channels) > MAX_MARKERS:
            raise PtuError(f"{self.path}: at most {MAX_MARKERS} marker channels")
        roles = [c for c in (sync_channel, *marker_channels) if c is not None]
        if len(set(roles)) != len(roles) or any(not 0 <= c < n_channels for c in roles):
            raise PtuError(
                f"{self.path}: sync and marker channels must be distinct channels "
                f"0..{n_channels - 1}, got sync {sync_channel}, markers {list(marker_channels)}"
            )
        self.n_channels = n_channels
        self.resolution_ps = resolution_ps
        self.origin_ps = origin_ps
        self.sync_channel = sync_channel
        self.marker_channels = tuple(marker_channels)
        self._comment = comment
        self._file: BinaryIO | None = None
        self._records = 0
        self._period = 0
        self._last_ps: int | None = None
        self._stop_ps = 0
        self._offsets: dict[str, int] = {}
        # What each labctl channel becomes: (special bit, channel field) of its records.
        self._special = np.zeros(n_channels, dtype=np.uint32)
        self._field = np.arange(n_channels, dtype=np.uint32)
        if sync_channel is not None:
            self._special[sync_channel], self._field[sync_channel] = 1, 0
        for bit, channel in enumerate(self.marker_channels):
            self._special[channel], self._field[channel] = 1, 1 << bit

    @property
    def records_written(self) -> int:
        """Records in the file so far (events and overflows)."""
        return self._records

    def _open(self, origin_ps: int) -> BinaryIO:
        self.origin_ps = origin_ps
        resolution_s = ps_to_seconds(self.resolution_ps)
        now = time.time()
        entries: list[tuple[str, TagValue, int]] = [
            ("File_GUID", "{00000000-0000-0000-0000-000000000000}", -1),
            ("File_Comment", self._comment or "labctl raw tags", -1),
            ("Measurement_Mode", MEASUREMENT_MODE_T2, -1),
            ("Measurement_SubMode", 0, -1),
            ("HW_Type", "HydraHarp", -1),
            ("HW_InpChannels", self.n_channels + 1, -1),  # the sync counts as one
            ("MeasDesc_BinningFactor", 1, -1),
            ("MeasDesc_Offset", 0, -1),
            ("MeasDesc_GlobalResolution", resolution_s, -1),
            ("MeasDesc_Resolution", resolution_s, -1),
            (_ACQUISITION_TAG, 0, -1),
            ("TTResult_SyncRate", 0, -1),
            ("TTResult_StopReason", 0, -1),
            ("TTResultFormat_TTTRRecType", RECTYPE_HYDRAHARP_V2_T2, -1),
            ("TTResultFormat_BitsPerRecord", 32, -1),
            (_NUMBER_OF_RECORDS, 0, -1),
            ("labctl_TimeOrigin_ps", origin_ps, -1),
            (_STOP_TAG, origin_ps, -1),
            ("labctl_Channels", self.n_channels, -1),
            ("labctl_SyncChannel", -1 if self.sync_channel is None else self.sync_channel, -1),
        ]
        entries += [("labctl_MarkerChannel", c, i) for i, c in enumerate(self.marker_channels)]
        handle = self.path.open("wb")
        handle.write(MAGIC + VERSION)
        handle.write(
            _entry("File_CreatingTime", now / 86400.0 + _DELPHI_EPOCH_DAYS, kind=TY_TDATETIME)
        )
        for ident, value, index in entries:
            if ident in (_NUMBER_OF_RECORDS, _STOP_TAG, _ACQUISITION_TAG):
                self._offsets[ident] = handle.tell() + _TAG_ENTRY.size
            handle.write(_entry(ident, value, index=index))
        handle.write(_entry("Header_End", None))
        return handle

    def write(self, batch: TagBatch) -> None:
        """Append one batch (its window must not start before the previous one ended)."""
        if self._file is None:
            origin = batch.start_ps if self.origin_ps is None else self.origin_ps
            self._file = self._open(origin)
        assert self.origin_ps is not None
        if len(batch) and int(batch.channel.max()) >= self.n_channels:
            raise PtuError(
                f"{self.path}: channel {int(batch.channel.max())} in a batch of a "
                f"{self.n_channels}-channel tagger"
            )
        relative = batch.time_ps - self.origin_ps
        if len(batch) and int(relative[0]) < 0:
            raise PtuError(
                f"{self.path}: tag at {int(batch.time_ps[0])} ps precedes the file's time "
                f"origin {self.origin_ps} ps"
            )
        if len(batch) and self._last_ps is not None and int(batch.time_ps[0]) < self._last_ps:
            raise PtuError(f"{self.path}: batches must be written in time order")
        ticks = relative // self.resolution_ps
        records, self._period, position = _ticks_per_record(ticks, self._period)
        records[position] |= (self._special[batch.channel] << 31) | (
            self._field[batch.channel] << 25
        )
        self._file.write(records.astype("<u4", copy=False).tobytes())
        self._records += int(records.size)
        if len(batch):
            self._last_ps = int(batch.time_ps[-1])
        self._stop_ps = max(self._stop_ps, batch.stop_ps)

    def close(self) -> None:
        """Write the record count, acquisition time and stop time; close the file."""
        if self._file is None:
            self._file = self._open(0 if self.origin_ps is None else self.origin_ps)
        assert self.origin_ps is not None
        handle, self._file = self._file, None
        stop_ps = max(self._stop_ps, self.origin_ps)
        patches = {
            _NUMBER_OF_RECORDS: self._records,
            _STOP_TAG: stop_ps,
            _ACQUISITION_TAG: (stop_ps - self.origin_ps) // 1_000_000_000,  # ms
        }
        for ident, value in patches.items():
            handle.seek(self._offsets[ident])
            handle.write(struct.pack("<q", value))
        handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_ptu(
    path: str | Path,
    batches: Sequence[TagBatch],
    *,
    n_channels: int,
    resolution_ps: int,
    sync_channel: int | None = None,
    marker_channels: Sequence[int] = (),
) -> int:
    """Write ``batches`` to one PTU file; returns the number of records written."""
    with PtuWriter(
        path,
        n_channels=n_channels,
        resolution_ps=resolution_ps,
        sync_channel=sync_channel,
        marker_channels=marker_channels,
    ) as writer:
        for batch in batches:
            writer.write(batch)
    return writer.records_written


@dataclass(frozen=True)
class PtuTags:
    """Every tag of a PTU file (channel and time arrays, sorted) and its header."""

    header: dict[str, TagValue]
    channel: npt.NDArray[np.uint8]
    time_ps: npt.NDArray[np.int64]
    n_channels: int
    resolution_ps: int
    start_ps: int
    stop_ps: int


def _read_header(data: bytes, path: Path) -> tuple[dict[str, TagValue], int]:
    if data[:6] != MAGIC[:6]:
        raise PtuError(f"{path}: not a PTU file (magic {data[:8]!r})")
    header: dict[str, TagValue] = {}
    offset = 16
    while True:
        if offset + 40 > len(data):
            raise PtuError(f"{path}: header ends before Header_End")
        raw_name, index, kind = _TAG_ENTRY.unpack_from(data, offset)
        name = raw_name.split(b"\0", 1)[0].decode("ascii", "replace")
        key = name if index == -1 else f"{name}[{index}]"
        value_bytes = data[offset + 40 : offset + 48]
        offset += 48
        value: TagValue
        if kind in (TY_INT8, 0x11000008, 0x12000008):
            value = struct.unpack("<q", value_bytes)[0]
        elif kind == TY_BOOL8:
            value = struct.unpack("<q", value_bytes)[0] != 0
        elif kind in (TY_FLOAT8, TY_TDATETIME):
            value = struct.unpack("<d", value_bytes)[0]
        elif kind == TY_EMPTY8:
            value = None
        elif kind in (TY_ANSI_STRING, TY_WIDE_STRING, TY_FLOAT8_ARRAY, TY_BINARY_BLOB):
            size = struct.unpack("<q", value_bytes)[0]
            payload = data[offset : offset + size]
            offset += size
            if kind == TY_ANSI_STRING:
                value = payload.split(b"\0", 1)[0].decode("utf-8", "replace")
            elif kind == TY_WIDE_STRING:
                value = payload.decode("utf-16-le", "replace").split("\0", 1)[0]
            else:
                value = None  # arrays and blobs: not needed for tags
        else:
            raise PtuError(f"{path}: header tag {name} has unknown type 0x{kind:08x}")
        header[key] = value
        if name == "Header_End":
            return header, offset


def _int_tag(header: dict[str, TagValue], name: str, path: Path, default: int | None = None) -> int:
    value = header.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PtuError(f"{path}: header tag {name} missing or not an integer ({value!r})")
    return value


def read_ptu(path: str | Path) -> PtuTags:
    """Every event of a T2 PTU file (HydraHarp V1/V2, MultiHarp, TimeHarp 260) as labctl
    channels and picosecond times.

    In files labctl wrote, sync and markers go back to their labctl channels. In other
    files inputs keep their numbers, the sync becomes channel ``HW_InpChannels - 1`` and
    markers are dropped.
    """
    path = Path(path)
    data = path.read_bytes()
    header, offset = _read_header(data, path)
    if header.get("Measurement_Mode") != MEASUREMENT_MODE_T2:
        raise PtuError(f"{path}: Measurement_Mode {header.get('Measurement_Mode')!r} is not T2")
    rectype = _int_tag(header, "TTResultFormat_TTTRRecType", path)
    if rectype not in (RECTYPE_HYDRAHARP_V1_T2, *_V2_TYPES):
        raise PtuError(f"{path}: TTResultFormat_TTTRRecType 0x{rectype:08x} is not a T2 type read")
    resolution = header.get("MeasDesc_GlobalResolution")
    if not isinstance(resolution, float) or resolution <= 0:
        raise PtuError(f"{path}: MeasDesc_GlobalResolution {resolution!r} is not a time")
    resolution_ps = seconds_to_ps(resolution)
    if resolution_ps < 1:
        raise PtuError(f"{path}: MeasDesc_GlobalResolution {resolution!r} is below 1 ps")
    n_records = _int_tag(header, _NUMBER_OF_RECORDS, path)
    available = (len(data) - offset) // 4
    if n_records <= 0 or n_records > available:
        n_records = available  # PicoQuant readers do the same for an unpatched count
    records = np.frombuffer(data, dtype="<u4", count=n_records, offset=offset).astype(np.int64)
    special = (records >> 31).astype(bool)
    field = (records >> 25) & 63
    timetag = records & TIMETAG_MASK
    overflow = special & (field == OVERFLOW_CHANNEL)
    if rectype == RECTYPE_HYDRAHARP_V1_T2:
        wraps = overflow.astype(np.int64)
    else:
        wraps = np.where(overflow, np.where(timetag == 0, 1, timetag), 0)
    ticks = np.cumsum(wraps) * WRAP_TICKS + timetag
    origin_ps = _int_tag(header, "labctl_TimeOrigin_ps", path, 0)
    time_all = ticks * resolution_ps + origin_ps

    labctl = "labctl_Channels" in header
    if labctl:
        n_channels = _int_tag(header, "labctl_Channels", path)
        sync_channel = _int_tag(header, "labctl_SyncChannel", path)
    else:
        n_channels = _int_tag(header, "HW_InpChannels", path, int(field.max(initial=0)) + 2)
        sync_channel = n_channels - 1
    markers = [
        _int_tag(header, f"labctl_MarkerChannel[{i}]", path)
        for i in range(MAX_MARKERS)
        if f"labctl_MarkerChannel[{i}]" in header
    ]
    index = np.arange(records.size, dtype=np.int64)
    inputs = ~special
    parts = [(index[inputs], field[inputs], 0)]
    if sync_channel >= 0:
        sync = special & (field == 0)
        parts.append((index[sync], np.full(int(sync.sum()), sync_channel, dtype=np.int64), 0))
    for bit, channel_of_bit in enumerate(markers):
        hit = special & (field >= 1) & (field <= 15) & ((field >> bit) & 1 == 1)
        parts.append((index[hit], np.full(int(hit.sum()), channel_of_bit, np.int64), bit + 1))
    where = np.concatenate([p[0] for p in parts])
    sub = np.concatenate([np.full(p[0].size, p[2], dtype=np.int64) for p in parts])
    channel = np.concatenate([p[1] for p in parts])
    # Record order first (ties keep the order they were written in), then time: markers of
    # real devices may be written slightly late.
    order = np.lexsort((sub, where))
    where, channel = where[order], channel[order]
    time_ps = time_all[where]
    by_time = np.argsort(time_ps, kind="stable")
    time_ps, channel = time_ps[by_time], channel[by_time]
    if channel.size and int(channel.max()) >= n_channels:
        raise PtuError(f"{path}: input {int(channel.max())} beyond {n_channels} channels")
    last = int(time_ps[-1]) + 1 if time_ps.size else origin_ps
    stop_ps = max(_int_tag(header, _STOP_TAG, path, last), last)
    return PtuTags(
        header=header,
        channel=channel.astype(np.uint8),
        time_ps=time_ps.astype(np.int64),
        n_channels=n_channels,
        resolution_ps=resolution_ps,
        start_ps=origin_ps,
        stop_ps=stop_ps,
    )


class _BatchSource(Protocol):
    """What ``record_ptu`` reads from: any labctl TimeTagger."""

    @property
    def n_channels(self) -> int: ...

    @property
    def resolution_ps(self) -> int: ...

    async def read_batch(self, timeout_s: float) -> TagBatch: ...


async def record_ptu(
    tagger: _BatchSource,
    path: str | Path,
    *,
    duration_ps: int,
    timeout_s: float = 5.0,
    sync_channel: int | None = None,
    marker_channels: Sequence[int] = (),
) -> int:
    """Read batches from a streaming ``tagger`` until ``duration_ps`` of its time is
    covered and write them to ``path``; returns the number of tags written.

    The caller starts and stops the stream (acquisition decides when); a batch marked
    overflowed is written as it is (PTU has no flag for lost tags).
    """
    if duration_ps <= 0:
        raise PtuError(f"{path}: duration_ps must be > 0, got {duration_ps}")
    n_tags = 0
    with PtuWriter(
        path,
        n_channels=tagger.n_channels,
        resolution_ps=tagger.resolution_ps,
        sync_channel=sync_channel,
        marker_channels=marker_channels,
    ) as writer:
        first: int | None = None
        while True:
            batch = await tagger.read_batch(timeout_s)
            writer.write(batch)
            n_tags += len(batch)
            first = batch.start_ps if first is None else first
            if batch.stop_ps - first >= duration_ps:
                return n_tags
