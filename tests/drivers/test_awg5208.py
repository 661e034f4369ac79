"""Exact-exchange tests of the Tektronix AWG5208 transmitter driver: SCPI text and blocks."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from drivers.tektronix.awg5208 import AWG5208Transmitter
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    InstrumentFault,
    InstrumentSpec,
    ProtocolError,
    Transmitter,
    TransportSpec,
)
from labctl.interfaces.pattern import PatternMode, PulsePattern
from labctl.testing.exchange import ScriptedTransport, Step

IDN: list[Step] = [(b"*IDN?\n", b"TEKTRONIX,AWG5208,B010123,FV:6.6.0087.0\n")]
CHECK_OK: list[Step] = [(b"*OPC?\n", b"1\n"), (b"SYSTem:ERRor?\n", b'0,"No error"\n')]


def block(payload: bytes) -> bytes:
    """IEEE 488.2 definite-length block, built by hand."""
    digits = str(len(payload)).encode()
    return b"#" + str(len(digits)).encode() + digits + payload


def floats(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


async def connected(script: list[Step], **options: int) -> tuple[AWG5208Transmitter, Any]:
    transport = ScriptedTransport(IDN + script, instrument="alice-awg")
    awg = AWG5208Transmitter("alice-awg", transport, **options)
    await awg.connect()
    return awg, transport


async def test_identity_period_and_mode() -> None:
    awg, transport = await connected(
        [
            (b"CLOCk:SRATe 400000000\n", b""),
            *CHECK_OK,
            (b"CLOCk:SRATe?\n", b"4.0000000000E+8\n"),
        ]
    )
    assert isinstance(awg, Transmitter)
    assert awg.pattern_mode is PatternMode.REPEATING
    assert awg.memory_pulses == 500_000_000
    await awg.set_period_ps(10_000)
    assert await awg.get_period_ps() == 10_000
    transport.assert_complete()


async def test_load_writes_levels_markers_and_run_mode() -> None:
    # 3 pulses, 2 samples each, clock marker every 2 pulses.
    pattern = PulsePattern(
        np.array([0, 1, 2], np.uint8), np.array([0, 1, 1], np.uint8), np.array([1, 0, 1], np.uint8)
    )
    ch1 = floats(1.0, 1.0, 0.75, 0.75, 0.5, 0.5)
    ch2 = floats(-0.25, -0.25, 0.25, 0.25, 0.75, 0.75)
    markers = bytes([3, 0, 0, 0, 1, 0])
    awg, transport = await connected(
        [
            (b"AWGControl:STOP\n", b""),
            (b"WLISt:WAVeform:DELete ALL\n", b""),
            (b'WLISt:WAVeform:NEW "labctl_ch1",6\n', b""),
            (b'WLISt:WAVeform:DATA "labctl_ch1",0,6,' + block(ch1) + b"\n", b""),
            (b'WLISt:WAVeform:MARKer:DATA "labctl_ch1",0,6,' + block(markers) + b"\n", b""),
            (b'SOURce1:CASSet:WAVeform "labctl_ch1"\n', b""),
            (b"SOURce1:RMODe TRIGgered\n", b""),
            (b'WLISt:WAVeform:NEW "labctl_ch2",6\n', b""),
            (b'WLISt:WAVeform:DATA "labctl_ch2",0,6,' + block(ch2) + b"\n", b""),
            (b'SOURce2:CASSet:WAVeform "labctl_ch2"\n', b""),
            (b"SOURce2:RMODe TRIGgered\n", b""),
            *CHECK_OK,
            (b"OUTPut1:STATe 1\n", b""),
            (b"OUTPut2:STATe 1\n", b""),
            (b"AWGControl:RUN\n", b""),
            (b"TRIGger:IMMediate ATRigger\n", b""),
            *CHECK_OK,
            (b"AWGControl:RSTATe?\n", b"2\n"),
            (b"AWGControl:STOP\n", b""),
            (b"AWGControl:RSTATe?\n", b"0\n"),
        ],
        samples_per_pulse=2,
        marker_divider=2,
    )
    await awg.load_pattern(pattern, repeat=False)
    await awg.start()
    assert await awg.is_running()
    await awg.stop()
    assert not await awg.is_running()
    transport.assert_complete()


async def test_errors_and_refusals_name_the_command() -> None:
    awg, transport = await connected(
        [
            (b"CLOCk:SRATe 400000000\n", b""),
            (b"*OPC?\n", b"1\n"),
            (b"SYSTem:ERRor?\n", b'-222,"Data out of range"\n'),
            (b"AWGControl:RSTATe?\n", b"RUNNING\n"),
        ]
    )
    with pytest.raises(InstrumentFault) as caught:
        await awg.set_period_ps(10_000)
    assert caught.value.command == "set_period_ps" and "-222" in caught.value.message
    with pytest.raises(ProtocolError):
        await awg.is_running()
    with pytest.raises(InstrumentFault, match="REPEATING"):
        await awg.append_pattern(PulsePattern(*(np.zeros(4, np.uint8) for _ in range(3))))
    with pytest.raises(InstrumentFault, match="no pulse"):
        await awg.load_pattern(PulsePattern.empty(), repeat=True)
    with pytest.raises(InstrumentFault, match="Sa/s"):
        await awg.set_period_ps(1)  # 4 samples in 1 ps: far beyond 2.5 GS/s
    transport.assert_complete()


async def test_a_foreign_identity_is_refused() -> None:
    transport = ScriptedTransport([(b"*IDN?\n", b"KEYSIGHT,33622A,MY1,1.0\n")], instrument="x")
    with pytest.raises(ProtocolError, match="AWG5200"):
        await AWG5208Transmitter("x", transport).connect()


def _spec(settings: dict[str, object]) -> InstrumentSpec:
    return InstrumentSpec(
        name="alice-awg",
        class_path="drivers.tektronix.awg5208:AWG5208Transmitter",
        settings=settings,
        transport=TransportSpec(kind="tcp", address="127.0.0.1:4000"),
    )


async def test_station_settings_and_snapshot() -> None:
    settings: dict[str, object] = {
        "period_ps": 10_000,
        "samples_per_pulse": 2,
        "marker_divider": 50,
    }
    built = AWG5208Transmitter.from_config(_spec(settings), BuildContext("lab", "alice"))
    assert built.remembered_settings == {"period_ps": 10_000}  # the others live in the driver
    assert (built.memory_pulses, await built.get_marker_divider()) == (1_000_000_000, 50)
    with pytest.raises(ConfigError, match=r"settings\.marker_divider: .*marker_divider=0"):
        AWG5208Transmitter.from_config(_spec({"marker_divider": 0}), BuildContext("lab", "alice"))
    awg, transport = await connected(
        [(b"CLOCk:SRATe?\n", b"2.0000000000E+8\n")], samples_per_pulse=2, marker_divider=50
    )
    snapshot = await awg.snapshot()
    assert list(snapshot)[4:] == [
        "period_ps",
        "samples_per_pulse",
        "marker_divider",
        "memory_pulses",
        "pattern_mode",
        "loaded_pulses",
        "repeat",
    ]
    assert (snapshot["period_ps"], snapshot["samples_per_pulse"]) == (10_000, 2)
    assert snapshot["marker_divider"] == 50
    with pytest.raises(ValueError, match="marker_divider=0"):
        await awg.set_marker_divider(0)
    transport.assert_complete()
