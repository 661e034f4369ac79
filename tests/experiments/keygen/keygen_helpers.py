"""Shared helpers of the key-generation tests: a station file in a temp folder, runs on it."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from experiments.keygen.acquisition import LinearClockMap
from experiments.keygen.plan import generate_key
from labctl.runner.engine import RunEngine, RunResult
from labctl.station import Station, load_config

ROOT = Path(__file__).resolve().parents[3]


def write_config(
    tmp_path: Path, qkd: dict[str, Any] | None = None, faults: list[dict[str, Any]] | None = None
) -> Path:
    """configs/sim.yaml copied under tmp_path/configs (so runs and key stores land in tmp)."""
    data = yaml.safe_load((ROOT / "configs" / "sim.yaml").read_text(encoding="utf-8"))
    data["qkd"] = {"block_pulses": 100_000_000, "block_interval_s": 1.0, **(qkd or {})}
    if faults:
        data["instruments"]["laser"].setdefault("settings", {})["faults"] = faults
    folder = tmp_path / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sim.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def truth_clock_map(world: Any) -> LinearClockMap:
    """The exact clock map from the world's hidden truth (tests only; plans synchronize)."""
    truth = world.truth
    return LinearClockMap(
        truth.bob_offset_ps + truth.fiber_delay_ps,
        truth.period_ps,
        truth.bob_frequency_offset_ppm * 1000.0,
    )


async def run_keygen(config_path: Path, duration_s: float, **kwargs: Any) -> RunResult:
    """generate_key under a RunEngine on the config's station, synchronized from truth."""
    config = load_config(config_path)
    station = Station.from_config(config)
    async with station:
        plan = functools.partial(generate_key, clock_map=truth_clock_map(station.world), **kwargs)
        engine = RunEngine(station, runs_dir=Path(config.storage.runs_dir))
        return await engine.run(plan, plan_name="keygen-test", duration_s=duration_s)


def store_rows(path: Path) -> list[tuple[str, int, bytes]]:
    """(key_id, n_bits, key bytes) of every key in a store file, read with plain sqlite3."""
    import sqlite3

    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key_id, n_bits, key FROM keys ORDER BY key_id").fetchall()
    return [(str(k), int(n), bytes(b)) for k, n, b in rows]
