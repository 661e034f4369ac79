"""Failure paths: no light, a latched detector, the switch on the wrong port, bad config."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.calibration.registry import calibrate, plan_detectors, plan_switch
from experiments.calibration.settings import CalibrationSettings
from experiments.sync.settings import SyncSettings
from labctl.interfaces.errors import ConfigError
from labctl.station import Station
from tests.experiments.calibration.cal_helpers import run_on_station, station_file


async def test_no_light_fails_with_reason(tmp_path: Path) -> None:
    # A cut fiber: 1000 km of 0.2 dB/km (200 dB) leaves nothing but dark counts at Bob.
    path = station_file(tmp_path, {"world": {"settings": {"fiber": {"length_km": 1000.0}}}})

    async def delays_and_switch(run: object) -> object:
        return await calibrate(run, ["delays", "switch"])

    result, _ = await run_on_station(path, delays_and_switch)
    delays, switch = result.result.results
    assert not delays.passed and "no light" in delays.reason
    assert not switch.passed and "no light at Bob's detectors on any switch port" in switch.reason


async def test_latched_detector_refuses_to_start(tmp_path: Path) -> None:
    async def latch(station: Station) -> None:
        station.world.latch_detector(1)  # Z1 blinded before the technician starts

    result, _ = await run_on_station(station_file(tmp_path), plan_detectors, latch)
    (routine,) = result.result.results
    assert not routine.passed
    assert routine.reason.startswith("refused: unhealthy instrument(s): detectors: latched")
    assert "Z1" in routine.reason
    assert not (tmp_path / "calibration.json").exists()  # nothing stored for a failure


async def test_switch_on_the_wrong_port_fails_with_reason(tmp_path: Path) -> None:
    # The config says Bob's receiver hangs on port 3; the light really goes through port 1.
    path = station_file(tmp_path, {"calibration": {"link": {"bob_port": 3}}})
    result, _ = await run_on_station(path, plan_switch)
    (routine,) = result.result.results
    assert not routine.passed
    assert "switch on the wrong port: Bob's light comes through port 1" in routine.reason


def test_calibration_section_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"calibration\.detectors\.capture_sec.*'capture_s'"):
        CalibrationSettings.from_section({"detectors": {"capture_sec": 1.0}}, "sim.yaml")
    with pytest.raises(ConfigError, match=r"calibration\.link\.detector_efficiency: must be in"):
        CalibrationSettings.from_section({"link": {"detector_efficiency": 1.5}})
    with pytest.raises(ConfigError, match=r"calibration\.polarization\.max_evaluations"):
        CalibrationSettings.from_section({"polarization": {"max_evaluations": 0}})
    with pytest.raises(ConfigError, match=r"calibration\.link\.fiber_loss_db: not set"):
        CalibrationSettings.from_section({}).require("link", "fiber_loss_db")
    with pytest.raises(ConfigError, match=r"sync\.channels: channel 0: detector 'Q'"):
        SyncSettings.from_section({"channels": {0: "Q"}})
    with pytest.raises(ConfigError, match=r"sync\.max_ppm: must be a number > 0"):
        SyncSettings.from_section({"max_ppm": -1})


async def test_blinded_detectors_fail_calibration_on_darks_and_current(tmp_path: Path) -> None:
    # Eve blinds during calibration: with the laser off the detectors count nothing at all.
    eve = {"blinding": True, "blinding_detection_efficiency": 0.2}
    path = station_file(tmp_path, {"world": {"settings": {"eve": eve}}})
    result, _ = await run_on_station(path, plan_detectors)
    (routine,) = result.result.results
    assert not routine.passed
    for name in ("Z0", "Z1", "X0", "X1"):
        assert f"{name} dark count rate 0.0 Hz < 1 Hz with bias on" in routine.reason
        assert f"{name} draws 0.169 uA above its bias with the laser off" in routine.reason
    assert not (tmp_path / "calibration.json").exists()
