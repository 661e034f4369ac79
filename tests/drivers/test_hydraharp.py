"""Exact-exchange tests of the PicoQuant HydraHarp 400 driver: HHLib calls and T2 records."""

from __future__ import annotations

import struct

import pytest

from drivers.picoquant.hydraharp import HydraHarp400
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    InstrumentFault,
    InstrumentSpec,
    ProtocolError,
    TimeTagger,
    TransportSpec,
)
from labctl.testing.exchange import ScriptedFrames, ScriptedTransport, Step


def call(function: str, *args: int, values: str = "[]", ret: int = 0) -> Step:
    arguments = ",".join(str(a) for a in args)
    request = '{"call":"' + function + '","args":[' + arguments + "]}\n"
    reply = '{"ret":' + str(ret) + ',"values":' + values + "}\n"
    return request.encode(), reply.encode()


CONNECT: list[Step] = [
    call("HH_OpenDevice", 0, values='["1020304"]'),
    call("HH_Initialize", 0, 2, 0),
    call("HH_GetHardwareInfo", 0, values='["HydraHarp 400","930004","2.0"]'),
    call("HH_GetNumOfInputChannels", 0, values="[2]"),
    call("HH_GetResolution", 0, values="[1.0]"),
    call("HH_SetInputCFD", 0, 0, 50, 10),
    call("HH_SetInputCFD", 0, 1, 50, 10),
]


def record(special: int, channel: int, timetag: int) -> bytes:
    """One V2 T2 record, packed field by field."""
    return struct.pack("<I", (special << 31) | (channel << 25) | timetag)


async def connected(
    script: list[Step], frames: list[bytes] | None = None
) -> tuple[HydraHarp400, ScriptedTransport, ScriptedFrames]:
    transport = ScriptedTransport(CONNECT + script, instrument="hh")
    stream = ScriptedFrames(frames or [], instrument="hh")
    tagger = HydraHarp400("hh", transport, stream)
    await tagger.connect()
    return tagger, transport, stream


async def test_identity_offsets_and_rates() -> None:
    tagger, transport, _ = await connected(
        [
            call("HH_SetInputChannelOffset", 0, 1, -1500),
            call("HH_GetCountRate", 0, 0, values="[1200]"),
            call("HH_GetCountRate", 0, 1, values="[0]"),
        ]
    )
    assert isinstance(tagger, TimeTagger)
    assert (tagger.n_channels, tagger.resolution_ps) == (2, 1)
    assert tagger.identity["serial"] == "1020304"
    await tagger.set_channel_delay_ps(1, -1500)
    assert await tagger.get_channel_delay_ps(1) == -1500
    assert await tagger.get_count_rates_hz(0.1) == [1200.0, 0.0]
    with pytest.raises(InstrumentFault):
        await tagger.set_channel_delay_ps(0, 100_000)  # beyond +-99 999 ps
    transport.assert_complete()


async def test_fifo_records_become_batches() -> None:
    frames = [
        record(0, 1, 100) + record(0, 0, 250) + record(1, 0, 300),  # sync: no input click
        record(1, 63, 2) + record(0, 1, 5),  # two wraps of 2**25 ps, then a click
        record(1, 63, 0),  # an overflow counting 0 means 1
        record(0, 5, 1),  # input 5 on a 2-input device
    ]
    tagger, transport, stream = await connected(
        [call("HH_StartMeas", 0, 360000000), call("HH_StopMeas", 0)], frames
    )
    await tagger.start_stream()
    first = await tagger.read_batch(1.0)
    assert first.channel.tolist() == [1, 0] and first.time_ps.tolist() == [100, 250]
    assert (first.start_ps, first.stop_ps) == (0, 301)
    second = await tagger.read_batch(1.0)
    assert second.time_ps.tolist() == [2 * 2**25 + 5] and second.start_ps == 301
    third = await tagger.read_batch(1.0)
    assert len(third) == 0 and third.stop_ps == 3 * 2**25
    with pytest.raises(ProtocolError):
        await tagger.read_batch(1.0)
    await tagger.stop_stream()
    transport.assert_complete()
    stream.assert_complete()


async def test_refusals_and_foreign_devices() -> None:
    tagger, transport, _ = await connected([call("HH_StartMeas", 0, 360000000, ret=-16)])
    with pytest.raises(InstrumentFault) as caught:
        await tagger.start_stream()
    assert caught.value.command == "HH_StartMeas"
    transport.assert_complete()
    foreign = ScriptedTransport(
        [
            call("HH_OpenDevice", 0, values='["1"]'),
            call("HH_Initialize", 0, 2, 0),
            call("HH_GetHardwareInfo", 0, values='["PicoHarp 300","1","1"]'),
        ],
        instrument="hh",
    )
    with pytest.raises(ProtocolError, match="HydraHarp"):
        await HydraHarp400("hh", foreign, ScriptedFrames([], instrument="hh")).connect()


def _spec(settings: dict[str, object]) -> InstrumentSpec:
    return InstrumentSpec(
        name="hh",
        class_path="drivers.picoquant.hydraharp:HydraHarp400",
        settings=settings,
        transport=TransportSpec(kind="tcp", address="127.0.0.1:7001"),
    )


async def test_station_offsets_are_set_at_connect_and_reported() -> None:
    built = HydraHarp400.from_config(_spec({"delays_ps": [0, 250]}), BuildContext("lab", "bob"))
    assert built.remembered_settings == {"delays_ps[0]": 0, "delays_ps[1]": 250}
    with pytest.raises(ConfigError, match=r"settings\.delays_ps: .*delays_ps\[1\]=100000"):
        HydraHarp400.from_config(_spec({"delays_ps": [0, 100_000]}), BuildContext("lab", "bob"))
    transport = ScriptedTransport(
        [
            *CONNECT,
            call("HH_SetInputChannelOffset", 0, 0, 0),
            call("HH_SetInputChannelOffset", 0, 1, 250),
            call("HH_SetInputChannelOffset", 0, 0, -40),
        ],
        instrument="hh",
    )
    tagger = HydraHarp400("hh", transport, ScriptedFrames([], instrument="hh"))
    tagger._remember_declared("delays_ps", [0, 250])  # as from_config does
    await tagger.connect()
    await tagger.set_channel_delay_ps(0, -40)
    snapshot = await tagger.snapshot()
    assert snapshot["delays_ps"] == [-40, 250] and snapshot["resolution_ps"] == 1
    transport.assert_complete()
