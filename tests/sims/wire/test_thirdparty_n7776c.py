"""PyMeasure's Keysight N7776C driver (``pymeasure.instruments.keysight.KeysightN7776C``),
unmodified, drives our N7776C wire twin over pyvisa-py ``TCPIP::host::port::SOCKET``.

It sends ``SOUR0:POW %f mW`` / ``sour0:wav %fnm`` with unit suffixes, reads the power in W
after selecting the W unit, the wavelength in metres, and the laser lock with ``:LOCK?``.
After every call the twin's state is checked. The client blocks, so it runs in a thread.
"""

from __future__ import annotations

import asyncio

import pytest
from pymeasure.instruments.keysight import KeysightN7776C

from tests.sims.wire.served import served

call = asyncio.to_thread


async def synced(laser: KeysightN7776C) -> None:
    """Settings are not answered: ``*OPC?`` orders them before the twin is inspected."""
    assert await call(laser.ask, "*OPC?") == "+1"


async def test_pymeasure_keysight_n7776c_main_functions() -> None:
    async with served("laser", wire="keysight-n7776c") as setup:
        host, port = setup.address
        twin = setup.twin
        laser = await call(
            KeysightN7776C,
            f"TCPIP::{host}::{port}::SOCKET",
            visa_library="@py",
            read_termination="\n",
            write_termination="\n",
            timeout=2000,
        )
        try:
            assert (await call(lambda: laser.id)).startswith("Keysight Technologies,N7776C,")
            assert await call(lambda: laser.locked) is False

            await call(setattr, laser, "output_power_mW", 2.5)
            await synced(laser)
            assert await twin.get_power_mw() == pytest.approx(2.5)
            assert await call(lambda: laser.output_power_mW) == pytest.approx(2.5)
            assert await call(lambda: laser.output_power_dBm) == pytest.approx(3.9794, abs=1e-4)
            await call(setattr, laser, "output_power_dBm", 3.0)
            await synced(laser)
            assert await twin.get_power_mw() == pytest.approx(10**0.3)

            await call(setattr, laser, "wavelength", 1551.25)
            await synced(laser)
            assert await twin.get_wavelength_nm() == pytest.approx(1551.25)
            assert await call(lambda: laser.wavelength) == pytest.approx(1551.25)

            await call(setattr, laser, "output_enabled", True)
            await synced(laser)
            assert await call(lambda: laser.output_enabled) is True
            assert await twin.get_output() is True
            await call(setattr, laser, "output_enabled", False)
            await synced(laser)
            assert await call(lambda: laser.output_enabled) is False
            assert setup.world.snapshot()["laser"]["enabled"] is False

            # Locked, the laser refuses to switch on (-221 in the error queue).
            await call(setattr, laser, "locked", True)
            assert await call(lambda: laser.locked) is True
            await call(setattr, laser, "output_enabled", True)
            assert await call(lambda: laser.output_enabled) is False
            assert await call(laser.ask, "SYST:ERR?") == '-221,"Settings conflict"'
            await call(setattr, laser, "locked", False)
            assert setup.server.errors == []
        finally:
            await call(laser.adapter.close)
