"""A served bench for hardware-in-the-loop tests: ``labctl twin serve`` on free ports.

``ServedBench.start(tmp)`` serves configs/sim.yaml (every port picked free, serial links in
``tmp``; ``station="sim-mixed"`` serves that file, its second models kept);
``bench.config("hil", tmp)`` writes configs/hil.yaml (or hil-alice / hil-bob / hil-mixed)
pointed at those endpoints, with its run folder and key stores in ``tmp``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
READY = "twin serve: ready"
FREE_PORTS = {
    "laser": {"port": 0},
    "detectors": {"control_port": 0, "counts_port": 0},
    "tagger-alice": {"control_port": 0, "stream_port": 0},
    "tagger-bob": {"control_port": 0, "stream_port": 0},
    "transmitter": {"port": 0, "upload_port": 0},
}


def env() -> dict[str, str]:
    """The test process's environment with the repository importable, no progress bars."""
    result = dict(os.environ)
    result["PYTHONPATH"] = os.pathsep.join([str(REPO), result.get("PYTHONPATH", "")])
    result["LABCTL_PROGRESS"] = "0"
    return result


@dataclass
class ServedBench:
    """A running ``labctl twin serve`` and the endpoints it printed."""

    process: subprocess.Popen[str]
    endpoints: dict[tuple[str, str], str]
    lines: Queue[str] = field(default_factory=Queue)

    @classmethod
    def start(
        cls,
        folder: Path,
        world: dict[str, Any] | None = None,
        station: str = "sim",
        driven_by: Path | None = None,
    ) -> ServedBench:
        """Serve configs/<station>.yaml (world settings updated by ``world``) on free ports;
        ``driven_by``: serve each twin as the model that station's driver speaks to."""
        path = REPO / "configs" / f"{station}.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for key, value in (world or {}).items():
            data["world"]["settings"].setdefault(key, {}).update(value)
        links = folder / "links"
        links.mkdir(parents=True, exist_ok=True)
        # The models the station file names (``wire:``) stay; only the ports become free.
        named = (data.get("twin_serve") or {}).get("instruments") or {}
        instruments = {name: dict(named.get(name, {})) for name in data["instruments"]}
        for name, ports in FREE_PORTS.items():
            instruments.setdefault(name, {}).update(ports)
        data["twin_serve"] = {"link_dir": str(links), "instruments": instruments}
        data["storage"] = {"runs_dir": str(folder / "served")}
        config = folder / "served.yaml"
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        command = [sys.executable, "-m", "labctl", "twin", "serve", str(config)]
        process = subprocess.Popen(
            command + ([] if driven_by is None else ["--for", str(driven_by)]),
            cwd=REPO,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        stdout = process.stdout
        lines: Queue[str] = Queue()
        threading.Thread(
            target=lambda: [lines.put(line) for line in iter(stdout.readline, "")], daemon=True
        ).start()
        endpoints: dict[tuple[str, str], str] = {}
        seen: list[str] = []
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0).rstrip("\n")
            except Empty:
                if process.poll() is not None:
                    break
                continue
            seen.append(line)
            if line.startswith(READY):
                return cls(process, endpoints, lines)
            parts = line.split()
            if len(parts) == 3:
                endpoints[(parts[0], parts[1])] = parts[2]
        process.kill()
        process.wait(10)
        raise AssertionError(f"twin serve did not get ready: {seen}")

    def stop(self) -> None:
        """SIGINT, then SIGKILL if it does not end within 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def _port(self, name: str, role: str) -> str:
        return self.endpoints[(name, role)].rsplit(":", 1)[1]

    def config(
        self,
        which: str | Path,
        folder: Path,
        qkd: dict[str, Any] | None = None,
        calibration: dict[str, dict[str, Any]] | None = None,
    ) -> Path:
        """configs/<which>.yaml (or the station file ``which``) pointed at this bench; runs
        and key stores under ``folder``; ``qkd`` and ``calibration`` settings updated."""
        source = which if isinstance(which, Path) else REPO / "configs" / f"{which}.yaml"
        which = source.stem
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
        for name, spec in data["instruments"].items():
            transport = spec["transport"]
            if name == "laser":
                port = self._port("laser", "control")
                transport["address"] = f"TCPIP::127.0.0.1::{port}::SOCKET"
            elif name in ("pc-bob", "switch"):
                transport["address"] = self.endpoints[(name, "serial")]
            elif name == "detectors":
                transport["address"] = self.endpoints[(name, "control")]
                transport["options"]["counts_address"] = self.endpoints[(name, "counts")]
            elif name.startswith("tagger"):
                transport["address"] = self.endpoints[(name, "control")]
                transport["options"]["stream_address"] = self.endpoints[(name, "stream")]
            elif name == "transmitter":
                transport["address"] = self.endpoints[(name, "control")]
                transport["options"]["upload_port"] = int(self._port(name, "upload"))
        data["storage"] = {
            "runs_dir": str(folder / "runs" / which),
            "calibration_store": str(folder / "runs" / which / "calibration.json"),
            "key_store": str(folder / "runs" / "keys.sqlite"),
        }
        if qkd:
            data.setdefault("qkd", {}).update(qkd)
        for routine, values in (calibration or {}).items():
            data.setdefault("calibration", {}).setdefault(routine, {}).update(values)
        path = folder / f"{which}.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path
