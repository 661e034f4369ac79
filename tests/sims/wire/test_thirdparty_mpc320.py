"""QMI's Thorlabs MPC320 driver (``qmi.instruments.thorlabs.mpc320.Thorlabs_Mpc320``,
QuTech), unmodified, drives our MPC320 wire twin over a real pseudo-terminal opened as a
115200-baud serial port: the APT binary messages for identity, channel enable, absolute
moves, homing, status updates and the polarisation parameters.

After every call the twin's state is checked. The client blocks, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from qmi.core.context import QMI_Context
from qmi.instruments.thorlabs.apt_protocol import AptChannelState
from qmi.instruments.thorlabs.mpc320 import Thorlabs_Mpc320

from tests.sims.wire.served import served

call = asyncio.to_thread


async def settled(twin: Any, axis: int, voltage_mv: float) -> None:
    """Wait until paddle ``axis`` reached ``voltage_mv``, as a program waits for a motor.

    QMI's ``is_move_completed`` discards what is pending, asks for a status, and gives up
    when an older message arrives in between; so, as QMI advises, wait before asking.
    """
    for _ in range(200):
        if (await twin.get_voltages_mv())[axis] == pytest.approx(voltage_mv):
            await asyncio.sleep(0.05)  # the reply follows the twin call on the line
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"paddle {axis} never reached {voltage_mv} mV")


MV_PER_COUNT = 10_000 / 1370  # the twin's -5000..+5000 mV over the paddles' 0..1370 counts


async def test_qmi_thorlabs_mpc320_main_functions() -> None:
    async with served("polarization_controller", wire="thorlabs-mpc320") as setup:
        twin, server = setup.twin, setup.server
        mpc = Thorlabs_Mpc320(QMI_Context("labctl-test"), "mpc", f"serial:{setup.serial_path}")
        await call(mpc.open)
        try:
            idn = await call(mpc.get_idn)
            # QMI hands the raw fields on: model bytes, serial number as an int.
            fields: tuple[object, ...] = (idn.vendor, idn.model, idn.serial)
            assert fields == ("Thorlabs", b"MPC320", 38000321)

            await call(mpc.enable_channels, [1, 2, 3])
            assert await call(mpc.get_channel_state, 2) == AptChannelState.ENABLE

            await call(mpc.move_absolute, 2, 42.0)  # 42 degrees = 338 counts
            counts = round(42.0 / (170 / 1370))
            await settled(twin, 1, -5000 + counts * MV_PER_COUNT)
            assert await call(mpc.is_move_completed, 2) is True
            status = await call(mpc.get_status_update, 2)
            assert status.position == pytest.approx(counts * 170 / 1370)

            await call(mpc.set_polarisation_parameters, 60, 0, 10, 10, 10)
            params = await call(mpc.get_polarisation_parameters)
            assert params.velocity == pytest.approx(60)
            assert params.home_position == pytest.approx(0.0)
            await call(mpc.home_channel, 2)
            await settled(twin, 1, -5000.0)  # home position 0 degrees = 0 counts
            assert await call(mpc.is_channel_homed, 2) is True

            await call(mpc.disable_all_channels)
            assert await call(mpc.get_channel_state, 1) == AptChannelState.DISABLE
            assert server.enabled == {1: False, 2: False, 3: False}
        finally:
            await call(mpc.close)
