"""labctl.notebook.SyncRunner: plans from plain scripts, loop in a background thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from labctl.interfaces import WallClock
from labctl.notebook import SyncRunner
from tests.runner.runner_fixtures import MarkerInstrument, MiniStation, counting_plan


def test_sync_runner_runs_and_aborts_from_another_thread(tmp_path: Path) -> None:
    assert not _loop_running()  # a plain script: no event loop here
    laser = MarkerInstrument("laser", tmp_path / "marks.jsonl", WallClock())
    with SyncRunner(lambda: MiniStation({"laser": laser}), runs_dir=tmp_path / "runs") as runner:
        done = runner.run(counting_plan, args={"n": 3, "step_s": 0.0})
        assert done.status == "ok" and done.result == {"recorded": 3}
        timer = threading.Timer(0.3, runner.abort, args=("stop from script",))
        timer.start()
        stopped = runner.run(counting_plan, args={"n": 100_000, "step_s": 0.01}, timeout_s=30)
        timer.join()
    assert stopped.status == "aborted" and stopped.reason == "stop from script"
    assert laser.safe_states == 2


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
