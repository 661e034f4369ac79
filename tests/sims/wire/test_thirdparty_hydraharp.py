"""QMI's PicoQuant HydraHarp 400 driver (``qmi.instruments.picoquant.PicoQuant_HydraHarp400``,
QuTech), unmodified, runs the HydraHarp wire twin in T2 mode: open by serial number,
initialize, hardware info, inputs, CFD levels, channel offsets, count rates, and a
measurement whose FiFo records its own background thread reads and decodes into events.

QMI calls HHLib through ctypes; HHLib itself talks USB to the device, so here its calls
are carried out by the bridge (hhlib_bridge.py) in place of ``libhh400.so``: the one part
of the stack that is not QMI's. QMI blocks, so it runs in a thread while the twin serves.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from qmi.core.context import QMI_Context
from qmi.instruments.picoquant import PicoQuant_HydraHarp400
from qmi.instruments.picoquant.support._library_wrapper import _LibWrapper

from sims.wire.hydraharp import HydraHarpWire
from sims.world import World
from tests.sims.wire.hhlib_bridge import BridgeHHLib
from tests.sims.wire.wired import NAMES, WIRE_WORLD, make_twin

call = asyncio.to_thread


def with_bridge(harp: PicoQuant_HydraHarp400, hhlib: BridgeHHLib) -> None:
    """QMI's own library wrapper (prefix, error codes) around the bridge's HHLib calls."""
    wrapper = object.__new__(_LibWrapper)
    wrapper._prefix = "HH"
    wrapper._lib = hhlib
    harp._lazy_lib = wrapper


def measure(harp: PicoQuant_HydraHarp400, seconds: float) -> tuple[bool, np.ndarray]:
    """Start, collect the decoded events for ``seconds``, stop (QMI's T2 flow)."""
    harp.start_measurement(60_000)
    active = harp.get_measurement_active()
    chunks = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        chunks.append(harp.get_events())
    harp.stop_measurement()
    chunks.append(harp.get_events())
    return active, np.concatenate(chunks)


async def test_qmi_hydraharp400_t2_main_functions() -> None:
    world = World.from_settings(WIRE_WORLD)
    world.set_laser_enabled(True)
    async with make_twin("time_tagger", world) as twin:
        wire = HydraHarpWire(NAMES["time_tagger"], twin)
        await wire.start()
        hhlib = BridgeHHLib(wire.endpoints()["control"], wire.endpoints()["stream"])
        harp = PicoQuant_HydraHarp400(QMI_Context("labctl-test"), "hh", "LCTWIN05")
        with_bridge(harp, hhlib)
        try:
            await call(harp.open)
            assert wire.opened
            await call(harp.initialize, "T2", "INTERNAL")
            assert wire.mode == 2
            assert await call(harp.get_hardware_info) == ("HydraHarp 400", "930004", "2.0")
            assert await call(harp.get_serial_number) == "LCTWIN05"
            n_inputs = await call(harp.get_number_of_input_channels)
            assert n_inputs == twin.n_channels == 4
            assert await call(harp.get_resolution) == float(twin.resolution_ps)
            await call(harp.set_input_cfd, 1, 120, 10)
            assert wire.cfd[1] == (120, 10)
            await call(harp.set_input_channel_offset, 2, 700)
            assert await twin.get_channel_delay_ps(2) == 700
            await call(harp.set_input_channel_offset, 2, 0)
            rates = [await call(harp.get_count_rate, ch) for ch in range(n_inputs)]
            assert all(rate > 0 for rate in rates)
            await call(harp.set_input_channel_enable, 3, False)
            active, events = await call(measure, harp, 1.0)
            assert active and not wire.measuring and not twin.is_streaming
        finally:
            if harp.is_open():
                await call(harp.close)
            hhlib.close()
            await wire.stop()
    # QMI decoded the twin's clicks: inputs 0..2 (3 disabled), times rising in 1 ps units.
    assert events.size > 1000
    assert set(np.unique(events["type"]).tolist()) == {0, 1, 2}
    assert np.all(np.diff(events["timestamp"].astype(np.int64)) >= 0)
    assert hhlib.fifo_records >= events.size  # overflow records are QMI's to drop
    assert {"HH_StartMeas", "HH_StopMeas", "HH_CTCStatus"} <= set(hhlib.calls)
