"""Twin faults on the second models' wires, as their real drivers see them: a timeout is
silence, a garbled reply a ProtocolError, a dropped TCP link ConnectionLost."""

from __future__ import annotations

import pytest

from labctl.interfaces.errors import ConnectionLost, InstrumentTimeout, ProtocolError
from sims.faults import Disconnect, FaultSchedule, GarbledReply, Timeout
from tests.sims.wire.wired import wired_station


def _schedule(world: object, fault: object) -> None:
    FaultSchedule.for_world(world).schedule(fault)  # type: ignore[arg-type]


async def test_n7776c_timeout_garbled_and_disconnect_reach_the_driver() -> None:
    async with wired_station(["laser"], wires={"laser": "keysight-n7776c"}) as setup:
        laser, now = setup.drivers["laser"], setup.world.clock.now_s()
        _schedule(setup.world, Timeout(at_s=now, duration_s=1.0, instrument="laser", count=1))
        with pytest.raises(InstrumentTimeout) as info:
            await laser.get_power_mw()
        assert info.value.command == ":SOUR0:POW?"
        # Queries only read: one garbled reply is asked again, three in a row give up.
        _schedule(setup.world, GarbledReply(at_s=now, instrument="laser"))
        assert await laser.get_wavelength_nm() == pytest.approx(1550.0)
        _schedule(setup.world, GarbledReply(at_s=now, instrument="laser", count=3))
        with pytest.raises(ProtocolError):
            await laser.get_wavelength_nm()
        _schedule(setup.world, Disconnect(at_s=now, duration_s=5.0, instrument="laser"))
        with pytest.raises(ConnectionLost):
            await laser.get_output()
        await laser.close()
        setup.world.clock.advance(6.0)
        await laser.connect()
        assert await laser.get_power_mw() == pytest.approx(1.0)


async def test_mpc320_and_dicon_garbled_replies_are_protocol_errors() -> None:
    wires = {"polarization_controller": "thorlabs-mpc320", "optical_switch": "dicon-mems"}
    kinds = list(wires)
    async with wired_station(kinds, wires=wires) as setup:
        now = setup.world.clock.now_s()
        _schedule(setup.world, GarbledReply(at_s=now, instrument="pc-bob"))
        with pytest.raises(ProtocolError, match="not an APT message"):
            await setup.drivers["pc-bob"].get_voltages_mv()
        # The DiCon driver asks a garbled query again (it only reads): one garble is absorbed,
        # three in a row (the first try and both re-sends) are a ProtocolError.
        _schedule(setup.world, GarbledReply(at_s=now, instrument="switch"))
        assert await setup.drivers["switch"].get_port() == setup.world.switch_port()
        _schedule(setup.world, GarbledReply(at_s=now, instrument="switch", count=3))
        with pytest.raises(ProtocolError):
            await setup.drivers["switch"].get_port()
        # The next call is clean.
        assert await setup.drivers["switch"].get_port() == setup.world.switch_port()
