"""RunEngine in-process: documents, run folder, every exit path ends in safe state + stop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from qcodes.dataset import load_by_guid
from qcodes.dataset.sqlite.database import connect

from labctl.runner.control import RunControl
from labctl.runner.engine import RunEngine
from labctl.runner.status import StopPlan
from labctl.runner.suspenders import Suspender
from labctl.store.events import read_events
from tests.runner.runner_fixtures import counting_plan, read_marks, stuck_plan


def _stop(events: list[dict]) -> dict:
    stops = [e for e in events if e["kind"] == "stop"]
    assert len(stops) == 1, stops
    return stops[0]["data"]


async def test_ok_run_writes_folder_documents_and_dataset(marker_station, tmp_path: Path) -> None:
    engine = RunEngine(
        marker_station,
        runs_dir=tmp_path / "runs",
        config={"lab": "l", "mqtt": {"password": "hunter2"}},
        config_text="lab: l\n",
    )
    result = await engine.run(counting_plan, name="Count Test", args={"n": 5, "step_s": 0.0})
    assert result.status == "ok" and result.result == {"recorded": 5}
    folder = result.path
    assert folder.name.endswith("-Count-Test") and folder.parent == tmp_path / "runs"
    assert (folder / "config.yaml").read_text() == "lab: l\n"
    events = read_events(folder / "events.jsonl")
    assert [e["seq"] for e in events] == list(range(len(events)))
    start = events[0]
    assert start["kind"] == "start" and start["run_id"] == result.run_id
    assert start["data"]["plan"].endswith(":counting_plan")
    assert start["data"]["args"] == {"n": 5, "step_s": 0.0}
    assert start["data"]["config"]["mqtt"]["password"] == "***"
    assert "labctl" in start["data"]["code_version"]
    assert start["data"]["snapshots"]["laser"]["output"] is False
    primary = [
        e["data"]["index"] for e in events if e["kind"] == "event" and e["stream"] == "primary"
    ]
    assert primary == [0, 1, 2, 3, 4]
    stop = _stop(events)
    assert stop["exit_status"] == "ok" and stop["safe_state"] == "ok"
    assert stop["checkpoints"] == 5
    assert [m["action"] for m in read_marks(tmp_path / "marks.jsonl")][-1] == "safe_state"
    metadata = result.path / "metadata.json"
    assert '"status": "ok"' in metadata.read_text()
    assert "run " in (folder / "run.log").read_text()
    guid = __import__("json").loads(metadata.read_text())["datasets"]["counts"]
    data = load_by_guid(guid, conn=connect(str(folder / "data.db"))).get_parameter_data()
    assert list(data["value_hz"]["idx"]) == [0, 1, 2, 3, 4]
    assert list(data["value_hz"]["value_hz"]) == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]


async def test_plan_exception_fails_with_safe_state(marker_station, tmp_path: Path) -> None:
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs")
    result = await engine.run(counting_plan, args={"n": 5, "step_s": 0.0, "fail_at": 2})
    assert result.status == "failed"
    assert "RuntimeError: simulated plan failure at index 2" in result.reason
    stop = _stop(read_events(result.path / "events.jsonl"))
    assert stop["exit_status"] == "failed" and stop["reason"] == result.reason
    assert marker_station.instruments["laser"].safe_states == 1
    assert marker_station.instruments["laser"].output is False


async def test_abort_command_stops_at_next_checkpoint(marker_station, tmp_path: Path) -> None:
    control = RunControl()
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs")
    task = asyncio.create_task(
        engine.run(counting_plan, args={"n": 1000, "step_s": 0.01}, control=control)
    )
    await asyncio.sleep(0.2)
    control.abort("operator pressed abort")
    result = await asyncio.wait_for(task, 10)
    assert result.status == "aborted" and result.reason == "operator pressed abort"
    assert marker_station.instruments["laser"].safe_states == 1
    checkpoint = __import__("json").loads((result.path / "checkpoint.json").read_text())
    primary = [
        e
        for e in read_events(result.path / "events.jsonl")
        if e["stream"] == "primary" and e["kind"] == "event"
    ]
    assert checkpoint["state"]["next"] == len(primary)  # aborted right after a checkpoint


async def test_pause_holds_plan_until_resume(marker_station, tmp_path: Path) -> None:
    control = RunControl()
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs")
    task = asyncio.create_task(
        engine.run(counting_plan, args={"n": 30, "step_s": 0.01}, control=control)
    )
    reached_pause_point = asyncio.Event()
    control.on_state(lambda state: state.value == "paused" and reached_pause_point.set())
    await asyncio.sleep(0.1)
    control.pause()
    # Wait (bounded) until the plan has reached its pause point, however busy the machine.
    await asyncio.wait_for(reached_pause_point.wait(), 10)
    events_path = next((tmp_path / "runs").iterdir()) / "events.jsonl"
    before = len(read_events(events_path))
    await asyncio.sleep(0.3)
    assert len(read_events(events_path)) == before
    assert control.state.value == "paused"
    control.resume()
    result = await asyncio.wait_for(task, 10)
    assert result.status == "ok"
    actions = [
        e["data"].get("action")
        for e in read_events(result.path / "events.jsonl")
        if e["stream"] == "runner"
    ]
    assert actions == ["paused", "resumed"]


async def test_halt_cancels_a_plan_without_checkpoints(marker_station, tmp_path: Path) -> None:
    control = RunControl()
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs")
    task = asyncio.create_task(engine.run(stuck_plan, control=control))
    await asyncio.sleep(0.2)
    control.abort("first ctrl-c")  # no checkpoint will ever come
    await asyncio.sleep(0.2)
    assert not task.done()
    control.abort("second ctrl-c")  # escalates to halt
    result = await asyncio.wait_for(task, 10)
    assert result.status == "halted" and "second ctrl-c" in result.reason
    assert marker_station.instruments["laser"].output is False


async def test_duration_reached_gives_timeout(marker_station, tmp_path: Path) -> None:
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs", halt_grace_s=0.2)
    counted = await engine.run(counting_plan, args={"n": 10_000, "step_s": 0.02}, duration_s=0.3)
    assert counted.status == "timeout"
    stuck = await engine.run(stuck_plan, duration_s=0.2)
    assert stuck.status == "timeout" and "no checkpoint" in stuck.reason
    assert marker_station.instruments["laser"].safe_states == 2


async def test_watchdog_stops_a_stalled_plan(marker_station, tmp_path: Path) -> None:
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs", watchdog_s=0.3)
    result = await asyncio.wait_for(engine.run(stuck_plan), 10)
    assert result.status == "failed" and result.reason.startswith("watchdog: plan stalled")
    assert marker_station.instruments["laser"].safe_states == 1


async def test_suspender_whose_remedy_never_helps_aborts(marker_station, tmp_path: Path) -> None:
    remedies: list[int] = []

    async def always_bad() -> str:
        return "detector 2 latched"

    async def remedy(run) -> None:
        remedies.append(1)

    suspender = Suspender("latch", always_bad, remedy, settle_s=0.0, max_failures=3)
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs", suspenders=[suspender])
    result = await engine.run(counting_plan, args={"n": 5, "step_s": 0.0})
    assert result.status == "aborted"
    assert result.reason == (
        "suspender 'latch': 3 remedies did not clear the condition; last: detector 2 latched"
    )
    assert len(remedies) == 3
    assert marker_station.instruments["laser"].safe_states == 1


async def test_named_request_runs_registered_remedy(marker_station, tmp_path: Path) -> None:
    ran: list[str] = []

    async def recalibrate(run) -> None:
        ran.append(run.run_id)

    control = RunControl()
    control.request("recalibrate")
    control.request("make-coffee")
    engine = RunEngine(
        marker_station, runs_dir=tmp_path / "runs", remedies={"recalibrate": recalibrate}
    )
    result = await engine.run(counting_plan, args={"n": 2, "step_s": 0.0}, control=control)
    assert result.status == "ok" and ran == [result.run_id]
    runner = [
        e["data"] for e in read_events(result.path / "events.jsonl") if e["stream"] == "runner"
    ]
    assert {"action": "request-ignored", "request": "make-coffee"} in runner
    assert {"action": "remedy-done", "remedy": "recalibrate"} in runner


async def test_resume_in_process_continues_without_duplicates(
    marker_station, tmp_path: Path
) -> None:
    control = RunControl()
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs")
    task = asyncio.create_task(
        engine.run(counting_plan, args={"n": 40, "step_s": 0.01}, control=control)
    )
    await asyncio.sleep(0.15)
    control.abort("stop for now")
    first = await task
    assert first.status == "aborted"
    second = await engine.resume(first.path, counting_plan)
    assert second.status == "ok" and second.run_id == first.run_id
    events = read_events(first.path / "events.jsonl")
    # The first run's stop document came after its last checkpoint: rolled back, and its
    # seq is voided by the "resumed" event rather than reused for other content.
    seqs = [e["seq"] for e in events]
    resumed = next(e for e in events if e["data"].get("action") == "resumed")
    first_void, last_void = resumed["data"]["void_seqs"]
    assert seqs == sorted(set(seqs))
    assert set(seqs) | set(range(first_void, last_void + 1)) == set(range(seqs[-1] + 1))
    indices = [
        e["data"]["index"] for e in events if e["stream"] == "primary" and e["kind"] == "event"
    ]
    assert indices == list(range(40))
    assert [e["data"]["exit_status"] for e in events if e["kind"] == "stop"] == ["ok"]
    with pytest.raises(ValueError, match="finished ok"):
        await engine.resume(first.path, counting_plan)


async def committing_plan(run: Any) -> None:
    """Commit steps 0..n-1, each with its event; a resume continues after the last one."""
    start = int((run.resume_state or {}).get("next", 0))
    for i in range(start, int(run.args.get("n", 3))):
        run.commit({"next": i + 1}, ("primary", {"index": i}))
        await run.checkpoint()
    if run.resume_state is None:
        raise StopPlan("aborted", "stopped after the commits")


async def test_an_event_committed_with_the_state_survives_a_death_before_its_log_line(
    marker_station, tmp_path: Path
) -> None:
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs")
    first = await engine.run(committing_plan, args={"n": 3})
    assert first.status == "aborted"
    # Make it look like the process died after the last checkpoint, while writing the
    # committed event: the log ends in a torn copy of that event's line.
    events_path = first.path / "events.jsonl"
    committed = next(e for e in read_events(events_path) if e["data"].get("index") == 2)
    lines = events_path.read_bytes().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if b'"index":2' in line)
    events_path.write_bytes(b"".join(lines[:last]) + lines[last][:20])
    second = await engine.resume(first.path, committing_plan)
    assert second.status == "ok"
    events = read_events(events_path)
    assert [e for e in events if "index" in e["data"]][-1] == committed
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    resumed = next(e for e in events if e["data"].get("action") == "resumed")
    assert resumed["data"]["void_seqs"] is None  # nothing rolled back: it was committed
