"""Public TSL-570 drivers, unmodified, drive our TSL-570 wire twin over a real TCP socket.

- QMI (``qmi.instruments.santec.tsl_570.Santec_Tsl570``, QuTech), over its own TCP transport;
- PyMeasure (``pymeasure.instruments.santec.TSL570``), over pyvisa-py ``TCPIP::...::SOCKET``.

After every call the twin's state is checked. Both clients block, so they run in a thread
while the twin serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from pymeasure.instruments.santec import TSL570
from qmi.core.context import QMI_Context
from qmi.core.exceptions import QMI_InstrumentException
from qmi.instruments.santec.tsl_570 import Santec_Tsl570

from tests.sims.wire.served import served

call = asyncio.to_thread


async def test_qmi_santec_tsl570_main_functions() -> None:
    async with served("laser") as setup:
        host, port = setup.address
        twin = setup.twin
        laser = Santec_Tsl570(QMI_Context("labctl-test"), "laser", f"tcp:{host}:{port}")
        await call(laser.open)  # reads :WAV:MIN?/MAX?, :WAV:FREQ:MIN?/MAX?, :POW:UNIT?
        try:
            idn = await call(laser.get_idn)
            assert (idn.vendor, idn.model) == ("SANTEC", "TSL-570")
            assert await call(laser.get_minimum_wavelength) == 1260.0
            assert await call(laser.get_maximum_wavelength) == 1680.0

            await call(laser.set_power_level_unit_to_mw)
            assert await call(laser.get_power_level_unit) == "mW"
            await call(laser.set_power_level, 1.5)
            assert await twin.get_power_mw() == pytest.approx(1.5)
            assert await call(laser.get_power_level) == 1.5

            await call(laser.set_power_level_unit_to_dbm)
            await call(laser.set_power_level, 3.0)  # dBm
            assert await twin.get_power_mw() == pytest.approx(10**0.3, rel=1e-6)
            assert await call(laser.get_power_level) == 3.0

            await call(laser.set_wavelength, 1550.1234)
            assert await twin.get_wavelength_nm() == pytest.approx(1550.1234)
            assert await call(laser.get_wavelength) == pytest.approx(1550.1234)

            await call(laser.set_frequency, 193.41449)
            assert await twin.get_wavelength_nm() == pytest.approx(299792.458 / 193.41449)
            assert await call(laser.get_frequency) == pytest.approx(193.41449)

            await call(laser.set_optical_output_status, True)
            assert await twin.get_output() is True
            assert await call(laser.get_optical_output_status) == "ON"
            assert await call(laser.get_actual_power) == 3.0
            await call(laser.set_optical_output_status, "OFF")
            assert await twin.get_output() is False
            assert setup.world.snapshot()["laser"]["enabled"] is False

            await call(laser.set_coherence_control_status, True)
            assert await call(laser.get_coherence_control_status) == "ON"
            await call(laser.set_sweep_speed, 50)
            assert await call(laser.get_sweep_speed) == 50.0

            await call(laser.reset)
            await call(laser.clear)
            assert await call(laser.operation_complete) is True
            assert await call(laser.get_errors) == []
            assert setup.server.errors == []
        finally:
            await call(laser.close)


async def test_qmi_reads_the_manual_error_text() -> None:
    async with served("laser") as setup:
        host, port = setup.address
        laser = Santec_Tsl570(QMI_Context("labctl-test"), "laser", f"tcp:{host}:{port}")
        await call(laser.open)
        try:
            await call(laser.set_sweep_state, 1)  # the twin runs no sweep: Execution error
        except QMI_InstrumentException as exc:
            assert "Execution error" in str(exc)
        else:
            raise AssertionError("a refused command must raise")
        finally:
            await call(laser.close)


async def test_pymeasure_santec_tsl570_main_functions(caplog: pytest.LogCaptureFixture) -> None:
    async with served("laser") as setup:
        host, port = setup.address
        twin = setup.twin
        laser = await call(
            TSL570,
            f"TCPIP::{host}::{port}::SOCKET",
            visa_library="@py",
            read_termination="\r",
            write_termination="\r",
            timeout=2000,
        )
        try:
            assert (await call(lambda: laser.id)).startswith("SANTEC,TSL-570,")
            assert await call(lambda: laser.command_set) == "Legacy"

            await call(setattr, laser, "power_unit", "mW")
            assert await call(lambda: laser.power_unit) == "mW"
            await call(setattr, laser, "power_setpoint", 2.5)
            assert await twin.get_power_mw() == pytest.approx(2.5)
            assert await call(lambda: laser.power_setpoint) == pytest.approx(2.5)

            await call(setattr, laser, "wavelength_setpoint", 1551.25)
            assert await twin.get_wavelength_nm() == pytest.approx(1551.25)
            assert await call(lambda: laser.wavelength_setpoint) == pytest.approx(1551.25)
            assert await call(lambda: laser.wavelength_min) == 1260.0
            assert await call(lambda: laser.wavelength_max) == 1680.0

            await call(setattr, laser, "frequency_setpoint", 193.1)
            assert await twin.get_wavelength_nm() == pytest.approx(299792.458 / 193.1)
            assert await call(lambda: laser.frequency_setpoint) == pytest.approx(193.1)

            # A setting without an error check is not answered: *OPC? orders it before
            # the twin is inspected (as a program waits for a real instrument).
            await call(setattr, laser, "output_enabled", True)
            assert await call(lambda: laser.complete) == "1"
            assert await twin.get_output() is True
            assert await call(lambda: laser.output_enabled) is True
            assert await call(lambda: laser.power) == pytest.approx(2.5)
            await call(setattr, laser, "output_enabled", False)
            assert await call(lambda: laser.complete) == "1"
            assert await twin.get_output() is False

            await call(setattr, laser, "sweep_mode", 3)
            assert int(await call(lambda: laser.sweep_mode)) == 3
            await call(laser.clear)
            await call(laser.reset)
            assert await call(laser.check_errors) == []

            # Out of range: PyMeasure reads the queue after the setting and logs the error.
            with caplog.at_level(logging.ERROR):
                await call(setattr, laser, "wavelength_setpoint", 1700)
            assert "-222" in caplog.text and '"Data out of range"' in caplog.text
            assert await twin.get_wavelength_nm() == pytest.approx(299792.458 / 193.1)
        finally:
            await call(laser.adapter.close)
