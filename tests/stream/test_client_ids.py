"""Two processes of the same lab/node on one Mosquitto: no evictions, no false ``lost``,
and ``$state`` (with its last will) owned by one process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from labctl.stream.client import unique_client_id
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.recorder import recording
from labctl.stream.settings import MqttSettings

REPO = Path(__file__).resolve().parents[2]
NODE = "labctl/v1/lab/alice-bob"

CHILD = """
import asyncio, json, sys, time
from labctl.documents import Document
from labctl.stream.publisher import MqttPublisher
from labctl.stream.settings import MqttSettings

async def main() -> None:
    url, outbox, name, owns, n = sys.argv[1:5] + [int(sys.argv[5])]
    pub = MqttPublisher(MqttSettings.from_url(url), lab="lab", node="alice-bob",
                        outbox_dir=outbox, owns_state=owns == "owner")
    await pub.start()
    pub.set_state("running")
    assert await pub.wait_connected(20)
    print("up", flush=True)
    for seq in range(n):
        pub.emit(Document("event", name, seq, time.time(), "primary", {"i": seq}))
        await asyncio.sleep(0.02)
    assert await pub.flush(20)
    if n == 0:
        await asyncio.sleep(3600)  # wait to be killed
    print(json.dumps({"connects": pub.connects, "client_id": pub.client_id}), flush=True)
    pub.set_state("ready")
    await asyncio.sleep(0.5)  # retained topics go out with the pump, not through flush()
    await pub.aclose()

asyncio.run(main())
"""


async def _child(
    url: str, outbox: Path, name: str, owner: bool, n: int
) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, url, str(outbox), name, "owner" if owner else "guest", str(n),
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert child.stdout is not None
    assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"up"
    return child


def test_unique_client_ids_differ_per_call_and_carry_the_pid() -> None:
    a, b = unique_client_id("labctl-lab-node-pub"), unique_client_id("labctl-lab-node-pub")
    assert a != b
    assert a.startswith(f"labctl-lab-node-pub-{os.getpid()}-")


async def test_two_processes_of_one_node_never_evict_each_other(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    n = 60  # about 1.2 s of publishing each, side by side
    async with recording(settings, f"{NODE}/#", client_id="observer") as rec:
        children = [
            await _child(mosquitto.url, tmp_path / f"outbox-{i}", f"run-{i}", i == 0, n)
            for i in range(2)
        ]
        reports = []
        for child in children:
            out, _ = await asyncio.wait_for(child.communicate(), 60)
            assert child.returncode == 0
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
        assert await rec.wait_for(
            lambda: sum(t.startswith(f"{NODE}/run/") for t, _ in rec.messages) >= 2 * n, 10
        )
    # Each process kept its one connection for the whole run.
    assert [r["connects"] for r in reports] == [1, 1]
    assert reports[0]["client_id"] != reports[1]["client_id"]
    states = [p for t, p in rec.messages if t == f"{NODE}/$state"]
    assert b"lost" not in states
    # Only the owner wrote $state: running while it ran, ready at its end.
    assert states[-1] == b"ready"
    for i in range(2):
        seqs = {
            json.loads(p)["seq"] for t, p in rec.messages if t.startswith(f"{NODE}/run/run-{i}/")
        }
        assert seqs == set(range(n))


async def test_last_will_belongs_to_the_owner_only(mosquitto: Mosquitto, tmp_path: Path) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    async with recording(settings, f"{NODE}/$state", client_id="observer") as rec:
        owner = await _child(mosquitto.url, tmp_path / "o0", "run-0", True, 0)
        guest = await _child(mosquitto.url, tmp_path / "o1", "run-1", False, 0)
        assert await rec.wait_for(lambda: (f"{NODE}/$state", b"running") in rec.messages, 10)
        guest.send_signal(signal.SIGKILL)  # the second process dies: the node is not lost
        await guest.wait()
        await asyncio.sleep(1.0)
        assert (f"{NODE}/$state", b"lost") not in rec.messages
        owner.send_signal(signal.SIGKILL)  # the owner dies: its will marks the node lost
        await owner.wait()
        assert await rec.wait_for(lambda: rec.messages[-1] == (f"{NODE}/$state", b"lost"), 10)
