"""Soak: 12 simulated hours of periodic measurement on the twins; does memory grow?

A run measures Bob's detector count rates every ``--period-s`` of virtual clock, writing
one event, one dataset row and one checkpoint each time, for ``--hours`` of sim time. RSS
is sampled after every step; the baseline is the RSS after the warm-up (first 10 % of the
steps), and the figure is the peak RSS after warm-up relative to that baseline.
Prints one JSON object. Usage: python benchmarks/runner_soak.py [--hours 12] [--period-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from labctl.interfaces import Laser, SinglePhotonDetector
from labctl.runner.engine import RunEngine
from labctl.station import Station, load_config

STATION = """
lab: soak
node: bench
world:
  class: sims.world:World
  settings: {seed: 3}
instruments:
  laser:
    class: sims.twins:SimLaser
    settings: {power_mw: 1.0}
  detectors:
    class: sims.twins:SimDetector
    settings: {channels: [Z0, Z1, X0, X1]}
storage:
  runs_dir: runs
"""


async def soak(hours: float, period_s: float, workdir: Path) -> dict[str, Any]:
    """Run the soak plan and return the figures."""
    (workdir / "station.yaml").write_text(STATION)
    config = load_config(workdir / "station.yaml")
    process = psutil.Process()
    steps = int(hours * 3600 / period_s)
    warmup = max(1, steps // 10)
    rss: list[int] = []

    async def periodic_measurement(run: Any) -> int:
        laser = run.find(Laser)[0]
        detector = run.find(SinglePhotonDetector)[0]
        await laser.set_output(True)
        for ch in range(detector.n_channels):
            await detector.set_enabled(ch, True)
        data = run.dataset("rates", setpoints=["step"], measured=["total_rate_hz"])
        with run.progress.task("soak", total=steps) as bar:
            for step in range(steps):
                rates = await run.call(detector.get_count_rates_hz, 0.0005)
                data.add(step=step, total_rate_hz=sum(rates))
                run.emit("primary", {"step": step, "total_rate_hz": sum(rates)})
                bar.advance()
                await run.checkpoint({"next": step + 1})
                await run.sleep(period_s)
                rss.append(process.memory_info().rss)
        return steps

    station = Station.from_config(config)
    wall0 = time.perf_counter()
    async with station:
        result = await RunEngine(station, runs_dir=workdir / "runs").run(
            periodic_measurement, name="soak"
        )
    wall_s = time.perf_counter() - wall0
    baseline = rss[warmup - 1]
    peak = max(rss[warmup:]) if len(rss) > warmup else baseline
    return {
        "benchmark": "runner_soak",
        "status": result.status,
        "simulated_hours": hours,
        "period_s": period_s,
        "steps": steps,
        "warmup_steps": warmup,
        "rss_baseline_mib": round(baseline / 2**20, 2),
        "rss_peak_after_warmup_mib": round(peak / 2**20, 2),
        "rss_growth_ratio": round(peak / baseline, 4),
        "rss_growth_percent": round(100 * (peak / baseline - 1), 2),
        "target_percent": 10.0,
        "wall_s": round(wall_s, 1),
        "sim_speedup": round(hours * 3600 / wall_s, 1),
        "events_file_mib": round((result.path / "events.jsonl").stat().st_size / 2**20, 2),
    }


def main() -> None:
    """Parse options, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--period-s", type=float, default=10.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labctl-soak-") as tmp:
        figures = asyncio.run(soak(options.hours, options.period_s, Path(tmp)))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
