"""Public OZ Optics EPC drivers, unmodified, drive our EPC-400 wire twin over a real
pseudo-terminal (opened as a serial port at 9600 baud):

- QMI (``qmi.instruments.ozoptics.epc_driver.OzOptics_EpcDriver``, QuTech): reads exactly
  one content line, then ``Done``, for every command;
- pylablib (``pylablib.devices.OZOptics.EPC04``): reads up to ``Done``/``Error!``, skips a
  command echo, and sends zero-padded arguments (``V1,0500``, ``F2,0033``).

After every call the twin's state is checked. Both clients block, so they run in a thread.
"""

from __future__ import annotations

import asyncio

import pytest
from pylablib.devices.OZOptics import EPC04, OZOpticsError
from qmi.core.context import QMI_Context
from qmi.instruments.ozoptics.epc_driver import OzOptics_EpcDriver

from tests.sims.wire.served import served

call = asyncio.to_thread


async def test_qmi_ozoptics_epc_main_functions() -> None:
    async with served("polarization_controller") as setup:
        twin, server = setup.twin, setup.server
        transport = f"serial:{setup.serial_path}:baudrate=9600"
        epc = OzOptics_EpcDriver(QMI_Context("labctl-test"), "epc", transport)
        await call(epc.open)
        try:
            await call(epc.set_voltage, 2, -1500)
            assert await twin.get_voltages_mv() == [0.0, -1500.0, 0.0, 0.0]
            assert await call(epc.get_voltages) == (0, -1500, 0, 0)
            await call(epc.set_high, 1)
            await call(epc.set_low, 3)
            await call(epc.set_zero, 2)
            assert await twin.get_voltages_mv() == [5000.0, 0.0, -5000.0, 0.0]
            assert await call(epc.get_voltages) == (5000, 0, -5000, 0)

            await call(epc.set_operating_mode_ac)
            assert server.mode == "AC"
            assert await call(epc.get_operating_mode) == "AC"
            await call(epc.set_frequency, 3, 42)
            assert server.frequency_hz == [0, 0, 42, 0]
            assert await call(epc.get_frequencies) == (0, 0, 42, 0)
            await call(epc.set_waveform_type_triangle)
            assert await call(epc.get_waveform_type) == "Triangle"
            await call(epc.set_waveform_type_sine)
            assert server.waveform == 1

            await call(epc.enable_dc_in_ac_mode)
            await call(epc.toggle_channel_ac_dc, 2)
            assert await call(epc.is_in_dc_in_ac_mode) is True
            assert await call(epc.get_ac_dc_channel_status) == ("V", "F", "V", "V")
            await call(epc.disable_dc_in_ac_mode)
            assert server.dc_in_ac is False

            await call(epc.save_to_flash)
            assert server.saved == {"mode": "AC", "frequency_hz": [0, 0, 42, 0]}
            await call(epc.set_operating_mode_dc)
            assert await call(epc.get_operating_mode) == "DC"
        finally:
            await call(epc.close)


@pytest.mark.parametrize("echo", [False, True])
async def test_pylablib_epc04_main_functions(echo: bool) -> None:
    async with served("polarization_controller", echo=echo) as setup:
        twin, server = setup.twin, setup.server
        epc = await call(EPC04, (setup.serial_path, 9600), 2.0)
        try:
            assert await call(epc.set_voltage, 0, 1.25) == pytest.approx(1.25)
            assert await twin.get_voltages_mv() == [1250.0, 0.0, 0.0, 0.0]
            voltages = [0.1, -0.2, 0.3, -4.0]
            assert await call(epc.set_all_voltages, voltages) == pytest.approx(voltages)
            assert await twin.get_voltages_mv() == [100.0, -200.0, 300.0, -4000.0]
            assert await call(epc.get_voltages) == pytest.approx(voltages)

            assert await call(epc.set_mode, "ac") == "ac"
            assert server.mode == "AC"
            assert await call(epc.set_frequency, 1, 33) == 33.0
            assert server.frequency_hz == [0, 33, 0, 0]
            assert await call(epc.set_waveform, "tri") == "tri"
            assert server.waveform == 2
            await call(epc.save_preset)
            assert server.saved is not None
            settings = await call(epc.get_settings)
            assert settings["mode"] == "ac" and settings["frequencies"] == [0.0, 33.0, 0.0, 0.0]
            assert await call(epc.set_mode, "dc") == "dc"
            assert server.mode == "DC"

            with pytest.raises(OZOpticsError, match="Error!"):
                await call(epc.query, "XYZ")  # unknown command
        finally:
            await call(epc.close)
