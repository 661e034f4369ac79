"""Drift tracking in the main job on the twins: the tracker steers Bob's controller between
blocks and follows a polarization jump; with tracking off, a jump the QBER suspender (5 %)
does not see but that pushes the QBER above the floor recalibrates polarization through the
key-stall suspender."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.store.events import read_events
from tests.experiments.keygen.keygen_helpers import run_keygen, store_rows, write_config

# 0.2 rad about the circular axis: QBER + sin^2(0.1) = 1 pp in both bases, under the 5 %
# suspend limit but more than 0.5 pp above the floor of the first blocks.
JUMP = [{"kind": "drift_jump", "at_s": 4.5, "angle_rad": 0.2, "axis": [0.0, 0.0, 1.0]}]


@pytest.mark.timeout(900)  # eleven 1e8-pulse blocks: minutes when loaded
async def test_the_tracker_follows_a_jump_without_a_recalibration(tmp_path: Path) -> None:
    config = write_config(tmp_path, qkd={"stall_margin_qber": 0.005}, faults=JUMP)
    result = await run_keygen(config, duration_s=10.5)
    events = read_events(result.path / "events.jsonl")
    steps = [e["data"] for e in events if e.get("stream") == "drift"]
    assert steps and all(len(s["setpoint_mv"]) == 4 and len(s["step_mv"]) == 2 for s in steps)
    runner = [e["data"] for e in events if e.get("stream") == "runner"]
    assert not [d for d in runner if d.get("suspender")], runner
    blocks = [e["data"] for e in events if e.get("stream") == "qkd" and "block" in e["data"]]
    assert all(b["status"] == "key" for b in blocks), blocks
    # Every block after the jump is back on the floor of the blocks before it.
    floor = max(0.5 * (b["qber_z"] + b["qber_x"]) for b in blocks[:4])
    assert all(0.5 * (b["qber_z"] + b["qber_x"]) < floor + 0.002 for b in blocks[5:]), blocks


@pytest.mark.timeout(900)  # eleven 1e8-pulse blocks and a calibration: minutes when loaded
async def test_without_tracking_a_stall_recalibrates(tmp_path: Path) -> None:
    # Alice's node waits for the next block while Bob recalibrates: on a loaded machine that
    # takes a minute of wall time, hence the longer channel timeout.
    qkd = {"stall_margin_qber": 0.005, "channel_timeout_s": 600.0, "drift_dither_rad": 0.0}
    config = write_config(tmp_path, qkd=qkd, faults=JUMP)
    result = await run_keygen(config, duration_s=10.5)
    events = read_events(result.path / "events.jsonl")
    assert not [e for e in events if e.get("stream") == "drift"]
    runner = [e["data"] for e in events if e.get("stream") == "runner"]
    stalls = [d for d in runner if d.get("suspender") == "key-stall"]
    assert stalls and "above the floor" in stalls[0]["reason"], runner
    assert not [d for d in runner if d.get("suspender") == "qber"]
    cal = [e["data"] for e in events if e.get("stream") == "calibration"]
    assert cal and cal[-1]["routine"] == "polarization" and cal[-1]["passed"], cal
    blocks = [e["data"] for e in events if e.get("stream") == "qkd" and "block" in e["data"]]
    last = blocks[-1]
    assert last["status"] == "key" and 0.5 * (last["qber_z"] + last["qber_x"]) < 0.025, blocks
    alice = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    assert alice and alice == store_rows(tmp_path / "runs" / "keys-bob.sqlite")
