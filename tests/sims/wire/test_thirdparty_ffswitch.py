"""A public Agiltron FF switch driver, unmodified, drives our FF wire twin over a real
pseudo-terminal: QMI's ``Agiltron_Ff1x4`` (QuTech; ``01 11 00 00`` reads the routed port,
``01 12 00 <port>`` routes and must be echoed byte for byte).

After every call the twin's (and the world's) routed port is checked. QMI blocks, so it runs
in a thread while the twin serves on the test's event loop.
"""

from __future__ import annotations

import asyncio

import pytest
from qmi.core.context import QMI_Context
from qmi.instruments.agiltron import Agiltron_Ff1x4

from tests.sims.wire.served import served

call = asyncio.to_thread


async def test_qmi_agiltron_ff1x4_routes_and_reads_back() -> None:
    async with served("optical_switch") as setup:
        switch = Agiltron_Ff1x4(QMI_Context("labctl-test"), "switch", f"serial:{setup.serial_path}")
        await call(switch.open)
        try:
            assert await call(switch.get_active_channel) == await setup.twin.get_port()
            for port in (2, 4, 1, 3):
                await call(switch.set_channel_active, port)
                assert await setup.twin.get_port() == port
                assert setup.world.switch_port() == port
                assert await call(switch.get_active_channel) == port
            with pytest.raises(ValueError):
                await call(switch.set_channel_active, 5)  # checked by QMI, nothing sent
            assert setup.world.switch_port() == 3
        finally:
            await call(switch.close)
