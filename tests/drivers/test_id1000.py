"""Exact-exchange tests of the ID Quantique ID1000 driver: SCPI messages and tag frames."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from drivers.idq.id1000 import ID1000
from drivers.idq.tagframe import encode_frame
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    InstrumentFault,
    InstrumentSpec,
    InstrumentTimeout,
    ProtocolError,
    TimeTagger,
    TransportSpec,
)
from labctl.testing.exchange import DISCONNECT, SILENCE, ScriptedFrames, ScriptedTransport, Step

CONNECT: list[Step] = [
    (b"*IDN?", b"ID Quantique,ID1000,1908029T010,1.3.2"),
    (b"DEVI:RES:BWID?", b"4TB"),
]
START: list[Step] = [
    (
        b"REC:STOP;ENAB ON;NUM INF;TRIG:ARM:MODE MANU"
        b";:RAW1:SEND ON;:RAW2:SEND ON;:RAW3:SEND ON;:RAW4:SEND ON",
        b"",
    ),
    (b"REC:PLAY", b""),
]
STOP: list[Step] = [
    (b"REC:STOP;:RAW1:SEND OFF;:RAW2:SEND OFF;:RAW3:SEND OFF;:RAW4:SEND OFF", b""),
]


RATES = (
    b"INPU1:COUN:INTE?;:INPU1:COUN?;:INPU2:COUN:INTE?;:INPU2:COUN?;"
    b":INPU3:COUN:INTE?;:INPU3:COUN?;:INPU4:COUN:INTE?;:INPU4:COUN?"
)


def frame_by_hand(seq: int, tags: list[tuple[int, int]], start_ps: int, stop_ps: int) -> bytes:
    """The documented frame layout, packed field by field (independent of the encoder)."""
    header = b"IDQT" + struct.pack("<HHIIII", 1, 0, seq, len(tags), 0, 0)
    header += struct.pack("<qq", start_ps, stop_ps)
    times = b"".join(struct.pack("<q", t) for t, _ in tags)
    channels = bytes(ch for _, ch in tags)
    return header + times + channels


async def connected(
    script: list[Step], frames: list[bytes | object] | None = None
) -> tuple[ID1000, ScriptedTransport, ScriptedFrames]:
    transport = ScriptedTransport(CONNECT + script, instrument="tagger", message_based=True)
    stream = ScriptedFrames(frames or [], instrument="tagger")  # type: ignore[arg-type]
    tagger = ID1000("tagger", transport, stream)
    await tagger.connect()
    return tagger, transport, stream


async def test_identity_resolution_and_delays() -> None:
    tagger, transport, _ = await connected(
        [
            (b"DELA1:VALU 1500;LINK INPU1", b""),
            (b"INPU4:THRE -120.5mV", b""),
            (b"DELA1:VALU?", b"1500TB"),
            (b"DELA2:VALU?", b"0tb"),
        ]
    )
    assert isinstance(tagger, TimeTagger)
    assert tagger.resolution_ps == 4 and tagger.n_channels == 4
    assert tagger.identity["model"] == "ID1000"
    await tagger.set_channel_delay_ps(0, 1500)
    await tagger.set_threshold_mv(3, -120.5)
    assert await tagger.get_channel_delay_ps(0) == 1500
    assert await tagger.get_channel_delay_ps(1) == 0
    transport.assert_complete()


async def test_stream_decodes_frames_into_numpy() -> None:
    frames = [
        frame_by_hand(7, [(100, 0), (250, 3), (900, 1)], 0, 1000),
        frame_by_hand(8, [], 1000, 2000),
        frame_by_hand(10, [(2100, 2)], 2000, 3000),  # frame 9 was lost
    ]
    tagger, transport, stream = await connected(START, frames)  # type: ignore[arg-type]
    await tagger.start_stream()
    first = await tagger.read_batch(1.0)
    assert first.channel.dtype == np.uint8 and first.time_ps.dtype == np.int64
    assert first.channel.tolist() == [0, 3, 1] and first.time_ps.tolist() == [100, 250, 900]
    assert (first.start_ps, first.stop_ps, first.overflow) == (0, 1000, False)
    empty = await tagger.read_batch(1.0)
    assert len(empty) == 0 and empty.duration_ps == 1000 and not empty.overflow
    after_gap = await tagger.read_batch(1.0)
    assert after_gap.overflow and after_gap.time_ps.tolist() == [2100]
    transport.assert_complete()
    stream.assert_complete()


def test_encoder_matches_the_documented_layout() -> None:
    channel = np.array([1, 0], dtype=np.uint8)
    time_ps = np.array([5, 6], dtype=np.int64)
    assert encode_frame(3, channel, time_ps, 0, 10) == frame_by_hand(3, [(5, 1), (6, 0)], 0, 10)


async def test_overflow_flag_and_health() -> None:
    overflowing = encode_frame(
        0, np.zeros(1, np.uint8), np.ones(1, np.int64), 0, 5, overflow=True, missed_events=12
    )
    rates: list[Step] = [
        (RATES, b"1000\n1000\n500\n250\n2000\n12\n100\n0"),
        (RATES, b"1000;1000;500;250;2000;12;100;0;"),  # answers run together (ID900)
    ]
    tagger, transport, _ = await connected(START + rates, [overflowing])
    await tagger.start_stream()
    batch = await tagger.read_batch(1.0)
    assert batch.overflow and batch.missed_events == 12
    health = await tagger.health()
    assert not health.ok and health.readings["rate_0_hz"] == 1000.0
    assert health.readings["rate_1_hz"] == 500.0 and health.readings["rate_2_hz"] == 6.0
    assert (await tagger.health()).ok  # the overflow was reported once
    transport.assert_complete()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"IDQT", "shorter than the 40-byte header"),
        (b"XXXX" + bytes(36), "not a tag frame"),
        (frame_by_hand(0, [(1, 0)], 0, 5)[:-1], "has 48 bytes"),
        (frame_by_hand(0, [(1, 4)], 0, 5), "channel 4 in a frame of a 4-channel"),
        (frame_by_hand(0, [], 5, 0), "window ends before it starts"),
    ],
)
async def test_garbled_frames_are_protocol_errors(frame: bytes, message: str) -> None:
    # A frame cannot be asked for again: up to two bad frames in a row are skipped as
    # lost, the third is a ProtocolError.
    tagger, _, _ = await connected(START, [frame, frame, frame])
    await tagger.start_stream()
    with pytest.raises(ProtocolError, match=message):
        await tagger.read_batch(1.0)


async def test_garbled_frame_is_skipped_and_the_next_batch_flagged() -> None:
    good = frame_by_hand(0, [(100, 1)], 0, 1000)
    after = frame_by_hand(1, [(1100, 2)], 1000, 2000)
    tagger, _, _ = await connected(START, [b"\xfe\xff\x00\x9c", good, after])
    await tagger.start_stream()
    batch = await tagger.read_batch(1.0)
    assert batch.overflow  # data was lost with the garbled frame
    assert batch.time_ps.tolist() == [100]
    assert not (await tagger.read_batch(1.0)).overflow


async def test_scpi_error_is_instrument_fault_and_garble_protocol_error() -> None:
    tagger, transport, _ = await connected(
        [
            (b"DELA2:VALU 5;LINK INPU2", b"SCPI_ERR_INVALID_VALUE"),
            (RATES, b"1000\nlots\n1000\n1\n1000\n1\n1000\n1"),
            (RATES, b"1000\n1"),
            (b"DELA3:VALU 7;LINK INPU3", b"Delay set"),  # text answers to settings are fine
            (b"DELA4:VALU 9;LINK INPU4", b"\xfe\xff"),  # an absolute setting: re-sent
            (b"DELA4:VALU 9;LINK INPU4", b""),
            START[0],
            (b"REC:PLAY", b"\xfe\xff"),  # arms the record: not re-sent
        ]
    )
    with pytest.raises(InstrumentFault) as info:
        await tagger.set_channel_delay_ps(1, 5)
    assert info.value.command == "DELA2:VALU 5;LINK INPU2"
    assert "SCPI_ERR_INVALID_VALUE" in str(info.value)
    with pytest.raises(ProtocolError, match="expected a number"):
        await tagger.get_count_rates_hz(0.1)
    with pytest.raises(ProtocolError, match="expected 8 answers"):
        await tagger.get_count_rates_hz(0.1)
    await tagger.set_channel_delay_ps(2, 7)
    await tagger.set_channel_delay_ps(3, 9)
    with pytest.raises(ProtocolError, match="not ASCII") as caught:
        await tagger.start_stream()
    assert caught.value.command == "REC:PLAY"
    transport.assert_complete()


async def test_silence_is_timeout_on_scpi_and_stream() -> None:
    tagger, transport, _ = await connected(
        [(b"DELA1:VALU?", SILENCE), *START],
        [SILENCE],  # type: ignore[list-item]
    )
    with pytest.raises(InstrumentTimeout):
        await tagger.get_channel_delay_ps(0)
    await tagger.start_stream()
    with pytest.raises(InstrumentTimeout):
        await tagger.read_batch(0.5)
    transport.assert_complete()


async def test_bad_arguments_rejected_before_the_wire() -> None:
    tagger, transport, _ = await connected([])
    with pytest.raises(ValueError, match="channel=4"):
        await tagger.set_channel_delay_ps(4, 0)
    with pytest.raises(ValueError, match=r"delays_ps\[0\]=-1"):
        await tagger.set_channel_delay_ps(0, -1)
    with pytest.raises(ValueError, match=r"thresholds_mv\[0\]=2500"):
        await tagger.set_threshold_mv(0, 2500)
    transport.assert_complete()


async def test_reconnect_reapplies_delays_then_restarts_stream() -> None:
    script = [
        (b"DELA2:VALU 250;LINK INPU2", b""),
        *START,
        (RATES, DISCONNECT),
        *CONNECT,
        (b"DELA2:VALU 250;LINK INPU2", b""),
        *START,
        (RATES, b"1000\n10\n1000\n10\n1000\n10\n1000\n10"),
    ]
    tagger, transport, stream = await connected(script)
    await tagger.set_channel_delay_ps(1, 250)
    await tagger.start_stream()
    # Reconnects on its own: delays back, stream restarted, then the call runs again.
    assert await tagger.get_count_rates_hz(1.0) == [10.0] * 4
    assert transport.open_count == 2 and stream.open_count == 2 and stream.is_open
    assert tagger.reconnects == 1
    transport.assert_complete()


async def test_safe_state_stops_the_stream() -> None:
    tagger, transport, stream = await connected([*START, *STOP])
    await tagger.start_stream()
    await tagger.safe_state()
    assert not stream.is_open and "streaming" not in tagger.remembered_settings
    transport.assert_complete()


def test_from_config_builds_scpi_and_stream_links() -> None:
    spec = InstrumentSpec(
        name="tagger",
        class_path="drivers.idq.id1000:ID1000",
        settings={"delays_ps": [0, 10, 20, 30]},
        transport=TransportSpec(kind="zmq", address="tcp://127.0.0.1:5555"),
    )
    tagger = ID1000.from_config(spec, BuildContext(lab="lab", node="bob"))
    assert tagger.transport.resource == "tcp://127.0.0.1:5555"
    assert tagger.remembered_settings["delays_ps[3]"] == 30
    bad = InstrumentSpec(
        name="tagger",
        class_path="drivers.idq.id1000:ID1000",
        settings={"delays_ps": [0, 10]},
        transport=TransportSpec(kind="zmq", address="tcp://127.0.0.1:5555"),
    )
    with pytest.raises(ConfigError, match="needs 4 values"):
        ID1000.from_config(bad, BuildContext(lab="lab", node="bob"))


async def test_stream_inputs_limit_the_raw_timestamps_sent() -> None:
    transport = ScriptedTransport(
        [
            *CONNECT,
            (b"REC:STOP;ENAB ON;NUM INF;TRIG:ARM:MODE MANU;:RAW2:SEND ON", b""),
            (b"REC:PLAY", b""),
        ],
        instrument="tagger",
        message_based=True,
    )
    stream = ScriptedFrames([], instrument="tagger")
    tagger = ID1000("tagger", transport, stream, stream_inputs=[1])
    await tagger.connect()
    await tagger.start_stream()
    transport.assert_complete()


def test_stream_inputs_from_config_are_checked() -> None:
    def spec(stream_inputs: object) -> InstrumentSpec:
        return InstrumentSpec(
            name="tagger",
            class_path="drivers.idq.id1000:ID1000",
            settings={"n_channels": 2, "stream_inputs": stream_inputs},
            transport=TransportSpec(kind="zmq", address="tcp://127.0.0.1:5555"),
        )

    ID1000.from_config(spec([1]), BuildContext(lab="lab", node="alice"))
    with pytest.raises(ConfigError, match="stream_inputs"):
        ID1000.from_config(spec([2]), BuildContext(lab="lab", node="alice"))
    with pytest.raises(ConfigError, match="non-empty list"):
        ID1000.from_config(spec([]), BuildContext(lab="lab", node="alice"))


async def test_station_settings_count_inputs_in_use_and_show_in_the_snapshot() -> None:
    def spec(settings: dict[str, object]) -> InstrumentSpec:
        return InstrumentSpec(
            name="tagger",
            class_path="drivers.idq.id1000:ID1000",
            settings=settings,
            transport=TransportSpec(kind="zmq", address="tcp://127.0.0.1:5555"),
        )

    built = ID1000.from_config(
        spec({"n_channels": 2, "thresholds_mv": [-100.0, 50]}), BuildContext("lab", "bob")
    )
    assert built.remembered_settings == {"thresholds_mv[0]": -100.0, "thresholds_mv[1]": 50.0}
    with pytest.raises(ConfigError, match="thresholds_mv needs 2 values"):
        ID1000.from_config(
            spec({"n_channels": 2, "thresholds_mv": [0.0] * 4}), BuildContext("lab", "bob")
        )
    with pytest.raises(ConfigError, match=r"settings\.delays_ps: .*delays_ps\[1\]=-5"):
        ID1000.from_config(spec({"delays_ps": [0, -5, 0, 0]}), BuildContext("lab", "bob"))
    tagger, transport, _ = await connected(
        [
            (b"INPU2:THRE -80mV", b""),
            *[(f"DELA{n}:VALU?".encode(), f"{n}TB".encode()) for n in range(1, 5)],
        ]
    )
    await tagger.set_threshold_mv(1, -80)
    snapshot = await tagger.snapshot()
    assert snapshot["delays_ps"] == [1, 2, 3, 4]
    assert snapshot["thresholds_mv"] == [None, -80.0, None, None]
    transport.assert_complete()
