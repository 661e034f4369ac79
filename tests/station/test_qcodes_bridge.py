"""labctl instruments in a real qcodes Station and Measurement (SQLite file, read back)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qcodes
from qcodes.dataset import (
    Measurement,
    initialise_or_create_database_at,
    load_by_id,
    load_or_create_experiment,
)

from experiments.sync.alice import alice_of
from labctl.notebook import BackgroundLoop
from labctl.station import Station, load_config
from labctl.station.qcodes_bridge import LoopThreadError, bridge, bridge_station

SIM = Path(__file__).resolve().parents[2] / "configs" / "sim.yaml"


@pytest.fixture
def sim_station() -> Iterator[tuple[BackgroundLoop, Any]]:
    """The sim station, connected on a background loop (as a notebook script would)."""
    background = BackgroundLoop()

    async def open_station() -> Any:
        station = Station.from_config(load_config(SIM))
        await station.__aenter__()
        return station

    station = background.call(open_station(), 60.0)
    try:
        yield background, station
    finally:
        background.call(station.__aexit__(None, None, None), 60.0)
        background.close()


def test_station_snapshot_and_measurement_round_trip(
    sim_station: tuple[BackgroundLoop, Any], tmp_path: Path
) -> None:
    background, station = sim_station
    # Alice's transmitter plays her public calibration frame: no pattern, no light.
    background.call(alice_of(station).ensure_light(), 60.0)
    qc_station = qcodes.Station()
    bridged = bridge_station(station.instruments, background.loop, qc_station)
    try:
        laser, detectors = bridged["laser"], bridged["detectors"]
        tagger, pc, switch = bridged["tagger-bob"], bridged["pc-bob"], bridged["switch"]
        assert laser.power_mw.unit == "mW" and pc.voltage_2_mv.unit == "mV"
        assert detectors.ch1_bias_ua.unit == "µA" and tagger.ch3_delay_ps.unit == "ps"

        laser.output(True)
        switch.port(1)
        pc.voltage_2_mv(1250.0)
        tagger.ch3_delay_ps(4000)
        detectors.ch1_bias_ua(9.5)
        # The settings reached the labctl instruments (read back through their async API).
        twin_pc = station.instruments["pc-bob"]
        assert background.call(twin_pc.get_voltages_mv())[2] == 1250.0
        assert background.call(station.instruments["tagger-bob"].get_channel_delay_ps(3)) == 4000

        snapshot = qc_station.snapshot()
        params = snapshot["instruments"]["laser"]["parameters"]
        assert params["output"]["value"] is True and params["power_mw"]["unit"] == "mW"
        pc_params = snapshot["instruments"]["pc_bob"]["parameters"]
        assert pc_params["voltage_2_mv"]["value"] == 1250.0
        assert snapshot["instruments"]["tagger_bob"]["parameters"]["ch3_delay_ps"]["value"] == 4000

        detectors.integration_s(0.001)
        initialise_or_create_database_at(tmp_path / "bridge.db")
        experiment = load_or_create_experiment("bridge", sample_name="sim")
        measurement = Measurement(exp=experiment, station=qc_station)
        measurement.register_parameter(laser.power_mw)
        measurement.register_parameter(detectors.ch0_count_rate_hz, setpoints=(laser.power_mw,))
        powers = [0.5, 1.0, 2.0]
        with measurement.run() as saver:
            for power in powers:
                laser.power_mw(power)
                saver.add_result(
                    (laser.power_mw, laser.power_mw()),
                    (detectors.ch0_count_rate_hz, detectors.ch0_count_rate_hz()),
                )
            run_id = saver.run_id
    finally:
        for wrapped in bridged.values():
            wrapped.close()

    data = load_by_id(run_id).get_parameter_data()["detectors_ch0_count_rate_hz"]
    np.testing.assert_allclose(data["laser_power_mw"], powers)
    rates = data["detectors_ch0_count_rate_hz"]
    # More light, more clicks (mean photon number scales with power; far from saturation
    # at 0.5 mW the rate is clearly lower than at 2 mW).
    assert rates[0] < rates[2]
    assert (
        load_by_id(run_id).snapshot["station"]["instruments"]["switch"]["parameters"]["port"][
            "value"
        ]
        == 1
    )


def test_calling_from_the_loop_thread_raises_instead_of_deadlocking(
    sim_station: tuple[BackgroundLoop, Any],
) -> None:
    background, station = sim_station
    laser = bridge(station.instruments["laser"], background.loop, timeout_s=5.0)
    try:

        async def misuse() -> None:
            laser.power_mw()

        with pytest.raises(LoopThreadError, match="deadlock"):
            background.call(misuse(), 10.0)
        assert laser.power_mw() == 1.0  # from another thread it works
    finally:
        laser.close()


def test_a_stopped_loop_is_reported(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    try:
        station = Station.from_config(load_config(SIM))
        laser = bridge(station.instruments["laser"], loop, timeout_s=1.0)
        try:
            with pytest.raises(LoopThreadError, match="not running"):
                laser.output()
        finally:
            laser.close()
    finally:
        loop.close()
