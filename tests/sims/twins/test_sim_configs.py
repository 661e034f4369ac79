"""configs/sim.yaml and configs/scenarios/gys.yaml: they build, connect and hold their physics."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.interfaces import (
    Laser,
    OpticalSwitch,
    PolarizationController,
    SinglePhotonDetector,
    TimeTagger,
)
from labctl.interfaces.errors import ConfigError
from labctl.station import Station, load_config
from sims.scenarios import scenario_settings, scenario_world
from sims.world import World

ROOT = Path(__file__).resolve().parents[3]
SIM = ROOT / "configs" / "sim.yaml"
GYS = ROOT / "configs" / "scenarios" / "gys.yaml"


@pytest.mark.parametrize("path", [SIM, GYS], ids=["sim", "gys"])
async def test_station_connects_every_twin_healthy(path: Path) -> None:
    station = Station.from_config(load_config(path))
    assert isinstance(station.world, World)
    async with station:
        health = await station.health_all()
        snapshots = await station.snapshot_all()
    five = {"laser", "pc-bob", "detectors", "tagger-alice", "tagger-bob", "switch"}
    assert set(health) == (five | {"transmitter"} if path == SIM else five)
    assert all(h.ok for h in health.values()), {n: h.detail for n, h in health.items()}
    assert all(s["simulated"] is True for s in snapshots.values())
    assert isinstance(station.get("laser", Laser), Laser)
    assert isinstance(station.get("pc-bob", PolarizationController), PolarizationController)
    assert isinstance(station.get("detectors", SinglePhotonDetector), SinglePhotonDetector)
    assert isinstance(station.get("switch", OpticalSwitch), OpticalSwitch)
    sides = sorted(t.side for t in station.find(TimeTagger))  # type: ignore[attr-defined]
    assert sides == ["alice", "bob"]
    assert all(i.world is station.world for i in station.instruments.values())  # type: ignore[attr-defined]


def test_sim_yaml_is_the_realistic_default() -> None:
    world = Station.from_config(load_config(SIM)).world
    settings = world.settings
    assert settings.source.rate_hz == 1.0e9
    assert settings.source.wavelength_nm == 1550.0
    assert (settings.fiber.length_km, settings.fiber.loss_db_per_km) == (25.0, 0.2)
    classes = {c.name: (c.mu, c.probability) for c in settings.source.intensities}
    assert classes == {"signal": (0.5, 0.8), "decoy": (0.1, 0.15), "vacuum": (0.0, 0.05)}
    assert all(d.efficiency >= 0.7 and d.jitter_fwhm_ps <= 50 for d in settings.detectors)


def test_gys_yaml_holds_the_gys_numbers() -> None:
    settings = World.from_settings(scenario_settings(GYS)).settings
    assert settings.fiber.loss_db_per_km == 0.21
    assert settings.receiver.misalignment == 0.033
    assert settings.receiver.optical_loss_db == 0.0 and settings.switch.insertion_loss_db == 0.0
    assert all(d.efficiency == 0.045 for d in settings.detectors)
    y0 = sum(d.dark_count_probability_per_pulse or 0.0 for d in settings.detectors)
    assert math.isclose(y0, 1.7e-6)


@pytest.mark.parametrize("distance_km", [50.0, 100.0])
def test_gys_distance_sets_the_gain(distance_km: float) -> None:
    world = scenario_world(GYS, distance_km=distance_km)
    settings = world.settings
    assert settings.fiber.length_km == distance_km
    eta = 10 ** (-0.21 * distance_km / 10) * 0.045
    y0 = 1.7e-6
    # Gain per pulse, averaged over intensity classes: Q_k = 1 - (1 - Y0) exp(-eta mu_k).
    gain = sum(
        c.probability * (1 - (1 - y0) * math.exp(-eta * c.mu)) for c in settings.source.intensities
    )
    integration_s = 0.02
    clicks = sum(world.detector_count_rates_hz(integration_s)) * integration_s
    expected = gain * settings.source.rate_hz * integration_s
    assert abs(clicks - expected) < 5 * math.sqrt(expected)


def test_scenario_errors_name_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="distance_km"):
        scenario_settings(GYS, distance_km=-5.0)
    no_world = tmp_path / "no_world.yaml"
    no_world.write_text("lab: a\nnode: b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no `world:` section") as caught:
        scenario_settings(no_world)
    assert caught.value.file == str(no_world)
    broken = tmp_path / "broken.yaml"
    broken.write_text("world:\n  settings: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        scenario_settings(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        scenario_settings(tmp_path / "missing.yaml")


def test_labctl_check_connect_reports_all_twins_healthy() -> None:
    labctl = Path(sys.executable).with_name("labctl")
    result = subprocess.run(
        [str(labctl), "check", str(SIM), "--connect"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 7 instrument(s) connected and healthy" in result.stdout


def test_field_trial_schedule_covers_the_trial_and_parses() -> None:
    import collections

    import yaml

    from sims.faults import AttackWindow, parse_faults

    path = ROOT / "configs" / "scenarios" / "field-trial.yaml"
    load_config(path)  # validates like `labctl check`
    raw = yaml.safe_load(path.read_text())
    sim = yaml.safe_load(SIM.read_text())
    assert (
        raw["world"]["settings"]["fiber"]["drift_rad_per_sqrt_s"]
        == (sim["world"]["settings"]["fiber"]["drift_rad_per_sqrt_s"])
    )
    faults = [
        fault
        for name, spec in raw["instruments"].items()
        for fault in parse_faults(
            (spec.get("settings") or {}).get("faults", []), where=name, instrument=name
        )
    ]
    kinds = collections.Counter(f.kind for f in faults)
    assert kinds["disconnect"] >= 5 and kinds["latch"] == 2 and kinds["garbled"] >= 1
    assert kinds["drift_jump"] >= 1
    attacks = [f for f in faults if isinstance(f, AttackWindow)]
    assert [a.until_s - a.at_s for a in attacks] == [3600.0]
    assert all(0.0 < f.at_s < 12 * 3600.0 for f in faults)
    assert kinds["blinding"] == 1
