"""qcodes' own Tektronix AWG5208 driver (unmodified) runs the AWG5208 wire twin: clock,
amplitudes, .wfmx upload and load, waveform list, channel assignment, play, run state,
stop. The pattern it uploads in labctl's convention is what the world plays."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from labctl.interfaces.pattern import seeded_pattern, state_codes
from sims.wire.awg5208 import Awg5208Wire
from sims.world import World
from tests.sims.wire.wired import NAMES, WIRE_WORLD, make_twin

AMPLITUDE_V = 0.5  # peak to peak: full scale is +-0.25 V


def qcodes_session(address: str, ch1: np.ndarray, ch2: np.ndarray) -> dict[str, Any]:
    """What qcodes' driver does and reads, in its own (blocking) way."""
    from qcodes.instrument_drivers.tektronix import TektronixAWG5208

    awg = TektronixAWG5208("awg5208_twin", address, visalib="@py")
    try:
        seen: dict[str, Any] = {"model": awg.IDN()["model"]}
        awg.sample_rate(4e8)
        seen["sample_rate"] = awg.sample_rate()
        awg.ch1.awg_amplitude(AMPLITUDE_V)
        awg.ch2.awg_amplitude(AMPLITUDE_V)
        seen["amplitude"] = awg.ch1.awg_amplitude()
        awg.clearWaveformList()
        for name, data in (("alice_ch1", ch1), ("alice_ch2", ch2)):
            wfmx = awg.makeWFMXFile(data, AMPLITUDE_V)
            awg.sendWFMXFile(wfmx, f"{name}.wfmx")
            awg.loadWFMXFile(f"{name}.wfmx")
        seen["waveforms"] = awg.waveformList
        awg.ch1.setWaveform("alice_ch1")
        awg.ch2.setWaveform("alice_ch2")
        seen["asset"] = awg.ch1.assigned_asset()
        awg.ch1.state(1)
        awg.ch2.state(1)
        awg.play(timeout=5)
        seen["playing"] = awg.run_state()
        awg.stop()
        seen["stopped"] = awg.run_state()
        return seen
    finally:
        awg.close()


async def test_qcodes_awg5208_driver_runs_the_twin() -> None:
    world = World.from_settings(WIRE_WORLD)
    pattern = seeded_pattern(2000, [0.7, 0.2, 0.1], 0.5, seed=4)
    spp = 4  # 400 MSa/s, 10 ns pulses
    volts_1 = np.repeat(1.0 - pattern.intensity / 4.0, spp) * AMPLITUDE_V / 2
    volts_2 = np.repeat(-0.75 + 0.5 * (2.0 * pattern.basis + pattern.bit), spp) * AMPLITUDE_V / 2
    clock = np.zeros(volts_1.size)
    clock[:: spp * 1000] = 1
    frame = np.zeros(volts_1.size)
    frame[0] = 1
    async with make_twin("transmitter", world) as twin:
        wire = Awg5208Wire(NAMES["transmitter"], twin)
        await wire.start()
        try:
            host, port = wire.endpoints()["control"].rsplit(":", 1)
            seen = await asyncio.to_thread(
                qcodes_session,
                f"TCPIP0::{host}::{port}::SOCKET",
                np.array([volts_1, clock, frame]),
                volts_2,
            )
        finally:
            await wire.stop()
        assert seen["model"] == "AWG5208"
        assert seen["sample_rate"] == 4e8 and seen["amplitude"] == AMPLITUDE_V
        assert seen["waveforms"] == ["alice_ch1", "alice_ch2"] and seen["asset"] == "alice_ch1"
        assert (seen["playing"], seen["stopped"]) == ("Running", "Stopped")
        codes, repeat = world._program()._staged  # what the world plays on its next start
        assert np.array_equal(codes.unpacked(), state_codes(pattern)) and repeat
        assert wire.waveforms["alice_ch1"].markers[:: spp * 1000].tolist() == [3, 1]
        assert await twin.get_marker_divider() == 1000
