"""The main job through the real CLI: ``labctl run sim.yaml --duration ...`` in a subprocess,
streaming to a Mosquitto started by the test, with a subscriber recording everything."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.stream.mosquitto import Mosquitto
from labctl.stream.recorder import recording
from labctl.stream.settings import MqttSettings

REPO = Path(__file__).resolve().parents[2]
LAB, NODE = "sim-lab", "alice-bob"
SUMMARY_FIELDS = (
    "run_id",
    "status",
    "pulses",
    "detections",
    "sifted_bits",
    "qber_z",
    "qber_x",
    "secret_bits",
    "key_rate_per_pulse",
    "secret_key_rate_bps",
    "ec_efficiency",
    "channel_uses",
    "sync_offset_ps",
    "sync_drift_ppb",
)

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, broker_url: str) -> Path:
    data: dict[str, Any] = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text())
    # Calibration takes ~16 s of run clock; then a 1e8-pulse block every 2 s.
    data["qkd"] = {"block_interval_s": 2.0}
    data["mqtt"] = {"url": broker_url}
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "sim.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _keys(path: Path) -> list[tuple[str, int, bytes]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key_id, n_bits, key FROM keys ORDER BY key_id").fetchall()
    return [(str(k), int(n), bytes(b)) for k, n, b in rows]


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


async def test_labctl_run_generates_identical_keys_and_streams_the_run(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config = _config(tmp_path, broker.url)
    base = f"labctl/v1/{LAB}/{NODE}"
    async with recording(MqttSettings.from_url(broker.url), f"{base}/#") as rec:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "labctl.cli",
            "run",
            str(config),
            "--duration",
            "22s",
            cwd=tmp_path,
            env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="120"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out_b, err_b = await asyncio.wait_for(proc.communicate(), 240)
        out, err = out_b.decode(), err_b.decode()
        assert proc.returncode == 0, out + err
        state_topic = f"{base}/$state"
        assert await rec.wait_for(
            lambda: (
                [p for t, p in rec.messages if t == state_topic][-1:] == [b"ready"]
                and any(t.endswith("/primary") and b'"stop"' in p for t, p in rec.messages)
            ),
            10,
        )
    # The terminal: a summary table, the end of the run, and no qcodes chatter.
    assert "secret_key_rate_bps" in out and ": ok (plan finished)" in out
    assert "Created run with guid" not in out + err
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.name.endswith("-main"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert all(f in summary for f in SUMMARY_FIELDS)
    assert summary["status"] == "ok" and summary["blocks"] >= 2
    assert summary["secret_bits"] > 0 and 0.01 < summary["qber_z"] < 0.03
    assert summary["sync_drift_ppb"] == pytest.approx(200.0, abs=0.1)  # 0.2 ppm in sim.yaml
    alice = _keys(tmp_path / "runs" / "keys-alice.sqlite")
    assert alice and alice == _keys(tmp_path / "runs" / "keys-bob.sqlite")
    # Wegman-Carter by default: 3 checkpoints per block, their bound in the run's epsilon.
    auth = summary["authentication"]
    assert auth["mode"] == "wegman-carter" and auth["checkpoints"] >= 3 * summary["blocks_with_key"]
    assert summary["eps_total"] == pytest.approx(
        summary["blocks_with_key"] * (1e-10 + 1e-15) + summary["eps_auth"]
    )
    assert summary["net_key_bits"] == summary["secret_bits"] - summary["auth_key_bits"]
    for party in ("alice", "bob"):
        pool = tmp_path / "runs" / f"keys-{party}.authpool"
        assert pool.stat().st_mode & 0o777 == 0o600
    # The stream: $meta, $state running -> ready, the start doc, a qkd doc and link
    # metrics per block, the stop doc; calibration events are plain JSON.
    run_id = summary["run_id"]
    states = [p.decode() for t, p in rec.messages if t == f"{base}/$state"]
    assert "running" in states and states[-1] == "ready"
    assert states.index("running") < len(states) - 1
    meta = json.loads(next(p for t, p in rec.messages if t == f"{base}/$meta"))
    assert meta["simulated"] is True and "tagger-bob" in meta["instruments"]
    docs = rec.runs.documents[run_id]
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "start" and kinds[-1] == "stop"
    assert docs[-1]["data"]["exit_status"] == "ok"
    qkd = [d["data"] for d in docs if d["stream"] == "qkd"]
    assert [q["block"] for q in qkd] == list(range(summary["blocks"]))
    topics = [t for t, _ in rec.messages]
    assert topics.count(f"{base}/link/alice-bob/qber") == summary["blocks"]
    report = [d["data"]["report"] for d in docs if "report" in d["data"]]
    assert report and report[0]["passed"] is True and "polarization" in report[0]["routines"]
