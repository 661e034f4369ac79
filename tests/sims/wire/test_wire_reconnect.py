"""Stop a wire twin mid-stream, restart it: ConnectionLost, reconnect, settings re-applied."""

from __future__ import annotations

import asyncio

import pytest

from labctl.interfaces.errors import ConnectionLost
from sims.wire.eos import EosWire
from sims.wire.tsl570 import Tsl570Wire
from sims.world import World
from tests.sims.wire.wired import WIRE_WORLD, make_twin, wired_station


async def test_eos_restarted_mid_stream_gets_its_settings_back() -> None:
    async with wired_station(["detector"]) as setup:
        driver = setup.drivers["detectors"]
        old = setup.server("detectors")
        control_port = int(old.endpoints()["control"].rsplit(":", 1)[1])
        counts_port = int(old.endpoints()["counts"].rsplit(":", 1)[1])
        await driver.set_trigger_level_mv(0, 111.0)
        await driver.set_bias_ua(1, 9.5)
        await driver.set_enabled(2, False)

        # Mid-stream: the counts stream is being read when the device goes away.
        reading = asyncio.create_task(driver.get_count_rates_hz(2.0))
        await asyncio.sleep(0.3)
        await old.stop()
        with pytest.raises(ConnectionLost) as lost:
            await asyncio.wait_for(reading, 10.0)
        assert lost.value.instrument == "detectors"

        # The device comes back power-cycled: a fresh twin holding its power-up defaults.
        world = World.from_settings(WIRE_WORLD)
        twin = make_twin("detector", world)
        async with twin:
            assert await twin.get_trigger_level_mv(0) == 150.0
            restarted = EosWire(
                "detectors", twin, control_port=control_port, counts_port=counts_port
            )
            await restarted.start()
            try:
                await driver.close()
                await driver.connect()
                assert await twin.get_trigger_level_mv(0) == 111.0
                assert await twin.get_bias_ua(1) == 9.5
                assert [await twin.get_enabled(ch) for ch in range(4)] == [
                    True,
                    True,
                    False,
                    True,
                ]
                rates = await driver.get_count_rates_hz(0.1)
                assert len(rates) == 4 and rates[2] == 0.0
            finally:
                await restarted.stop()


async def test_tsl570_restarted_comes_back_with_power_then_output() -> None:
    async with wired_station(["laser"]) as setup:
        driver = setup.drivers["laser"]
        old = setup.server("laser")
        port = int(old.endpoints()["control"].rsplit(":", 1)[1])
        await driver.set_power_mw(2.5)
        await driver.set_wavelength_nm(1551.25)
        await driver.set_output(True)
        await old.stop()
        with pytest.raises(ConnectionLost):
            await driver.get_output()

        world = World.from_settings(WIRE_WORLD)
        twin = make_twin("laser", world)
        async with twin:
            await twin.set_output(False)  # powered up with the output off
            restarted = Tsl570Wire("laser", twin, port=port)
            await restarted.start()
            try:
                await driver.close()
                await driver.connect()
                assert await twin.get_power_mw() == 2.5
                assert await twin.get_wavelength_nm() == 1551.25
                assert await twin.get_output() is True
                assert world.snapshot()["laser"]["enabled"] is True
            finally:
                await restarted.stop()
