"""``labctl run`` of a plan that ends degraded: exit code 3, ``$state = degraded`` on MQTT."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from labctl.stream.mosquitto import Mosquitto
from labctl.stream.recorder import recording
from labctl.stream.settings import MqttSettings

REPO = Path(__file__).resolve().parents[2]


async def test_degraded_run_exits_3_and_publishes_degraded(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        config = tmp_path / "station.yaml"
        config.write_text(
            "lab: testlab\nnode: alice\nallowed_packages: [tests]\n"
            "instruments:\n"
            "  laser:\n"
            "    class: tests.runner.runner_fixtures:MarkerInstrument\n"
            f"    settings: {{marker_file: {tmp_path / 'marks.jsonl'}}}\n"
            f"mqtt:\n  url: {broker.url}\n"
            "storage:\n  runs_dir: runs\n"
            "runner:\n  plan: tests.runner.runner_fixtures:degraded_plan\n"
        )
        settings = MqttSettings.from_url(broker.url)
        topic = "labctl/v1/testlab/alice/$state"
        async with recording(settings, topic, client_id="observer") as rec:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "labctl.cli", "run", str(config),
                cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 3, err.decode()
            assert ": degraded (only 1 of 10 blocks gave key)" in out.decode()
            assert await rec.wait_for(lambda: (topic, b"degraded") in rec.messages, 10)
        states = [p for t, p in rec.messages if t == topic]
        assert states[-1] == b"degraded" and b"running" in states
