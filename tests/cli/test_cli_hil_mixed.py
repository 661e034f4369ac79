"""The main job through a mixed-vendor station: configs/sim-mixed.yaml served by ``labctl twin
serve`` (laser as a Keysight N7776C, Bob's polarization controller as a Thorlabs MPC320, the
switch as a DiCon MEMS 1x4), driven by configs/hil-mixed.yaml's real drivers, ends with
secret key and identical key stores at Alice and Bob."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.hil_bench import ServedBench, env
from tests.cli.test_cli_hil import QUIET_FIBER, keys

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a served bench, real drivers

# One block of 1e8 pulses (the fewest that leave key after the finite-key bound at 25 km):
# the next would start a block interval after it, past the run's duration, so the run ends
# when that block is stored (about 60 s of calibration, synchronization and the block on an
# idle machine). The duration only bounds a slow one: several times that under heavy load.
DURATION_S = 300
QKD = {"block_interval_s": float(DURATION_S), "channel_timeout_s": float(DURATION_S)}
# Dark counts over 1 s instead of 10 (100 Hz darks against a 1000 Hz limit: ~100 counts
# decide it), dark switch ports over 0.5 s instead of 2: the same checks, sooner.
CALIBRATION = {"detectors": {"dark_integration_s": 1.0}, "switch": {"integration_s": 0.5}}


def test_mixed_vendor_main_job_stores_identical_keys(tmp_path: Path) -> None:
    bench = ServedBench.start(tmp_path / "bench", world=QUIET_FIBER, station="sim-mixed")
    try:
        config = bench.config("hil-mixed", tmp_path, qkd=QKD, calibration=CALIBRATION)
        done = subprocess.run(
            [sys.executable, "-m", "labctl", "run", str(config), "--duration", f"{DURATION_S}s"],
            cwd=tmp_path,
            env=env(),
            capture_output=True,
            text=True,
            timeout=DURATION_S + 300,
            check=False,
        )
    finally:
        bench.stop()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = next((tmp_path / "runs" / "hil-mixed").glob("*-main"))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["secret_bits"] > 0, summary
    alice = keys(tmp_path / "runs" / "keys-alice.sqlite")
    assert alice and alice == keys(tmp_path / "runs" / "keys-bob.sqlite")
    assert sum(n for _, n, _ in alice) == summary["secret_bits"]
    # The run went through the second models' drivers, not the defaults'.
    start = (folder / "events.jsonl").read_text().splitlines()[0]
    for driver in ("drivers.keysight.n7776c", "drivers.thorlabs.mpc320", "drivers.dicon.mems"):
        assert driver in start
