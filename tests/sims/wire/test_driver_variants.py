"""Our real drivers against wire twins set up like other firmware of the same device:
a TSL-570 ending its replies in CR LF, an EPC-400 that echoes each command first."""

from __future__ import annotations

import pytest

from tests.sims.wire.served import served
from tests.sims.wire.wired import make_driver


async def test_tsl570_driver_reads_crlf_replies() -> None:
    async with served("laser", terminator=b"\r\n") as setup:
        async with make_driver("laser", setup.server.endpoints()) as laser:
            await laser.set_power_mw(1.5)
            await laser.set_wavelength_nm(1550.25)
            await laser.set_output(True)
            assert await setup.twin.get_power_mw() == pytest.approx(1.5)
            assert await setup.twin.get_wavelength_nm() == pytest.approx(1550.25)
            assert await setup.twin.get_output() is True
            assert await laser.get_power_mw() == pytest.approx(1.5)
            assert await laser.get_output() is True
            assert (await laser.health()).ok


async def test_epc400_driver_skips_the_echo() -> None:
    async with served("polarization_controller", echo=True) as setup:
        async with make_driver("polarization_controller", setup.server.endpoints()) as epc:
            await epc.set_voltages_mv([100.0, -200.0, 300.0, -400.0])
            assert await setup.twin.get_voltages_mv() == [100.0, -200.0, 300.0, -400.0]
            assert await epc.get_voltages_mv() == [100.0, -200.0, 300.0, -400.0]
            await epc.set_scrambling(True)
            assert setup.server.mode == "AC"
            assert (await epc.health()).ok
