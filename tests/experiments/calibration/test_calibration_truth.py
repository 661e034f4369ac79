"""Every calibration recovers the twin's hidden parameters (world.truth, read only here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from experiments.calibration.registry import calibrate_all
from tests.experiments.calibration.cal_helpers import run_on_station, station_file

WORLD = {
    "world": {
        "settings": {
            "seed": 21,
            "fiber": {"initial_rotation_rad": [0.9, -0.5, 1.3]},
            "detectors": {
                "afterpulse_probability": 0.04,
                "overrides": {
                    "Z1": {"efficiency": 0.7, "delay_ps": 180, "dark_count_rate_hz": 300.0},
                    "X0": {"delay_ps": 1350},
                },
            },
        }
    },
    # Known link: the detectors' mean absolute efficiency is (0.8 + 0.7 + 0.8 + 0.8) / 4.
    "calibration": {"link": {"detector_efficiency": 0.775}},
}


async def test_calibrate_all_recovers_the_hidden_parameters(tmp_path: Path) -> None:
    result, station = await run_on_station(station_file(tmp_path, WORLD), calibrate_all)
    assert result.status == "ok", result.reason
    report = result.result
    truth = station.world.truth
    verdicts = {r.name: (r.passed, r.reason) for r in report.results}
    assert all(ok for ok, _ in verdicts.values()), [v for v in verdicts.values() if not v[0]]

    # Channel delays: tagger delay + cable delay is the same on every channel.
    delays = report.get("delays").values["delay_ps"]
    arrival = [int(delays[str(ch)]) + truth.detector_delay_ps[ch] for ch in range(4)]
    assert max(arrival) - min(arrival) <= 3

    det = report.get("detectors").values
    mean_eff = sum(truth.detector_efficiency) / 4
    for i, name in enumerate(("Z0", "Z1", "X0", "X1")):
        entry = det[name]
        dark = truth.dark_count_rate_hz[i]
        # 10 s of darks: Poisson counting error sqrt(N); 5 sigma.
        assert abs(entry["dark_count_rate_hz"] - dark) < 5 * math.sqrt(dark / 10.0)
        assert entry["relative_efficiency"] == pytest.approx(
            truth.detector_efficiency[i] / mean_eff, rel=0.02
        )
        assert entry["dead_time_ns"] == pytest.approx(50.0, abs=0.2)
        assert entry["jitter_fwhm_ps"] == pytest.approx(30.0, rel=0.1)
        assert entry["afterpulse_probability"] == pytest.approx(0.04, abs=0.012)

    pol = report.get("polarization").values
    # Floor: e_det = 1 % plus half the background; afterpulses make ~2 % of clicks background.
    assert 0.01 < pol["floor_estimate"] < 0.025
    assert pol["qber"] <= pol["floor_estimate"] + 0.005
    assert pol["evaluations"] <= 60

    mu = report.get("mean_photon_number").values["mu"]
    assert mu["signal"] == pytest.approx(0.5, rel=0.03)
    assert mu["decoy"] == pytest.approx(0.1, rel=0.03)
    assert abs(mu["vacuum"]) < 0.003

    sw = report.get("switch").values
    assert sw["insertion_loss_db"] == pytest.approx(0.7, abs=0.15)
    assert sw["crosstalk_db"]["2"] == pytest.approx(-50.0, abs=1.5)

    store = json.loads((tmp_path / "calibration.json").read_text())
    assert set(store) == {
        "tagger-bob/delays",
        "detectors/detectors",
        "pc-bob/polarization",
        "laser/mean_photon_number",
        "switch/switch",
    }
    entry = store["detectors/detectors"]
    assert entry["expires_s"] > entry["time_s"]
    assert entry["provenance"]["run_id"] == result.run_id
    metadata = json.loads((result.path / "metadata.json").read_text())
    assert {"cal_delays_histogram", "cal_polarization", "cal_switch"} <= set(metadata["datasets"])
