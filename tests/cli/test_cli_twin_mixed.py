"""``labctl twin serve configs/sim-mixed.yaml`` serves three twins as second models, and
``labctl check configs/hil-mixed.yaml --connect`` reaches every instrument through the
real drivers. Both files are copied with free ports and a private link folder, so the
test never touches the default ports 47000-47031 or /tmp/labctl-twin."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli.hil_bench import ServedBench
from tests.cli.test_cli_twin import start_serve, stop_serve

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PORTS = {  # hil-mixed.yaml's address -> the endpoint twin serve prints for it
    "47000": ("laser", "control"),
    "47010": ("detectors", "control"),
    "47011": ("detectors", "counts"),
    "47020": ("tagger-alice", "control"),
    "47021": ("tagger-alice", "stream"),
    "47022": ("tagger-bob", "control"),
    "47023": ("tagger-bob", "stream"),
    "47030": ("transmitter", "control"),
    "47031": ("transmitter", "upload"),
}


@pytest.mark.slow
def test_mixed_station_is_healthy_against_served_second_models(tmp_path: Path) -> None:
    links = tmp_path / "links"
    sim = (REPO / "configs" / "sim-mixed.yaml").read_text()
    sim = sim.replace("storage:\n  runs_dir: ../runs", f"storage:\n  runs_dir: {tmp_path}")
    sim = sim.replace(
        "twin_serve:\n  instruments:\n    laser: {wire: keysight-n7776c}",
        f"twin_serve:\n  link_dir: {links}\n  instruments:\n"
        "    laser: {wire: keysight-n7776c, port: 0}\n"
        "    detectors: {control_port: 0, counts_port: 0}\n"
        "    tagger-alice: {control_port: 0, stream_port: 0}\n"
        "    tagger-bob: {control_port: 0, stream_port: 0}\n"
        "    transmitter: {port: 0, upload_port: 0}",
    )
    assert "port: 0" in sim, "configs/sim-mixed.yaml's twin_serve section changed"
    (tmp_path / "sim-mixed.yaml").write_text(sim)
    process, lines = start_serve(tmp_path / "sim-mixed.yaml")
    try:
        endpoints = {tuple(line.split()[:2]): line.split()[2] for line in lines[:-1]}
        hil = (REPO / "configs" / "hil-mixed.yaml").read_text()
        for default, key in DEFAULT_PORTS.items():
            hil = hil.replace(default, endpoints[key].rsplit(":", 1)[1])
        hil = hil.replace("/tmp/labctl-twin/", f"{links}/").replace("../runs", str(tmp_path))
        (tmp_path / "hil-mixed.yaml").write_text(hil)
        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "labctl",
                "check",
                str(tmp_path / "hil-mixed.yaml"),
                "--connect",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "all 7 instrument(s) connected and healthy" in check.stdout
        for driver in ("N7776C", "MPC320", "DiconMems"):
            assert driver in check.stdout
    finally:
        rest = stop_serve(process, signal.SIGINT)
    assert "twin serve: stopped" in rest


# configs/hil.yaml's station with three models swapped, as a lab would edit it: each entry's
# `class:`; transports stay (the same VISA socket and serial links). The settings below are
# what the other model has: the TSL-570's coherence control and the EPC-400's scrambling
# and fourth squeezer have no counterpart on an N7776C or a three-paddle MPC320.
SWAPS = {
    "laser": ("drivers.keysight.n7776c:N7776C", {"power_mw": 1.0, "wavelength_nm": 1550.0}),
    "pc-bob": ("drivers.thorlabs.mpc320:MPC320", {"voltages_mv": [0.0, 0.0, 0.0]}),
    "switch": ("drivers.dicon.mems:DiconMems", None),  # settings unchanged
}


@pytest.mark.slow
def test_twin_serve_for_a_station_serves_the_models_it_names(tmp_path: Path) -> None:
    station = yaml.safe_load((REPO / "configs" / "hil.yaml").read_text())
    for name, (class_path, settings) in SWAPS.items():
        station["instruments"][name]["class"] = class_path
        if settings is not None:
            station["instruments"][name]["settings"] = settings
    path = tmp_path / "swapped.yaml"
    path.write_text(yaml.safe_dump(station))
    bench = ServedBench.start(tmp_path / "bench", driven_by=path)  # configs/sim.yaml
    try:
        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "labctl",
                "check",
                str(bench.config(path, tmp_path)),
                "--connect",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        bench.stop()
    assert check.returncode == 0, check.stdout + check.stderr
    assert "all 7 instrument(s) connected and healthy" in check.stdout
    for driver in ("N7776C", "MPC320", "DiconMems", "EosSNSPD", "ID1000", "PulseStreamer"):
        assert driver in check.stdout
