"""Simulated stations for calibration tests: configs/sim.yaml with overrides, run as runs."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from labctl.runner.engine import RunEngine, RunResult
from labctl.station import Station, load_config

REPO = Path(__file__).resolve().parents[3]


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def station_file(tmp_path: Path, overrides: dict[str, Any] | None = None) -> Path:
    """configs/sim.yaml with ``overrides`` merged in, storage under ``tmp_path``."""
    data = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text(encoding="utf-8"))
    data = merge(data, overrides or {})
    data["storage"] = {
        "runs_dir": str(tmp_path / "runs"),
        "calibration_store": str(tmp_path / "calibration.json"),
        "key_store": str(tmp_path / "keys.sqlite"),
    }
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def run_on_station(
    path: Path,
    plan: Callable[[Any], Awaitable[Any]],
    before: Callable[[Station], Awaitable[None]] | None = None,
) -> tuple[RunResult, Station]:
    """Connect the station of ``path``, optionally act on it, and run ``plan`` as one run."""
    config = load_config(path)
    station = Station.from_config(config)
    async with station:
        if before is not None:
            await before(station)
        engine = RunEngine(station, runs_dir=Path(config.storage.runs_dir), config={})
        result = await engine.run(plan)
    return result, station
