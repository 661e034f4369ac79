"""The main job on a station that has instruments, a clock and a config, and no world."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from experiments.keygen import main
from labctl.interfaces.clock import Clock
from labctl.interfaces.instrument import Instrument
from labctl.runner.engine import RunEngine
from labctl.station import Station
from labctl.station.loader import load_config
from labctl.station.model import StationConfig
from tests.experiments.keygen.keygen_helpers import store_rows, write_config


class WorldlessStation:
    """What a plan may see of a station: no ``world`` attribute at all (``__slots__``)."""

    __slots__ = ("__weakref__", "clock", "config", "instruments")

    def __init__(
        self, config: StationConfig, instruments: Mapping[str, Instrument], clock: Clock
    ) -> None:
        self.config = config
        self.instruments = dict(instruments)
        self.clock = clock


async def test_main_job_calibrates_synchronizes_and_stores_key_without_a_world(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path))
    built = Station.from_config(config)  # the twins need their world; the plan never sees it
    async with built:
        station = WorldlessStation(config, built.instruments, built.clock)
        assert not hasattr(station, "world")
        engine = RunEngine(station, runs_dir=Path(config.storage.runs_dir))
        result = await engine.run(main, plan_name="main-no-world", duration_s=25.0)
    assert result.status == "ok", result.reason
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["blocks"] >= 2 and summary["secret_bits"] > 0
    alice = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    assert alice and alice == store_rows(tmp_path / "runs" / "keys-bob.sqlite")
