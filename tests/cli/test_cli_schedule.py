"""``labctl schedule``: the ``schedule:`` section and options, validated; a real schedule of
repeated runs as a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.cli.schedule import default_calibration_plan, parse_schedule
from labctl.interfaces.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_section_and_command_line_entries() -> None:
    schedule = parse_schedule(
        {
            "timezone": "UTC",
            "until": "3d",
            "runs": [
                {"name": "night", "at": "22:00", "every": "12h", "duration": "2h"},
                {"plan": "m:sweep", "args": {"n": 3}, "priority": 5},
            ],
            "recalibrate": {"margin": "10m"},
        },
        default_plan="experiments.keygen.plan:main",
        cli={"at": "06:30", "count": 1},
    )
    night, sweep, cli = schedule.runs
    assert night.plan_spec == "experiments.keygen.plan:main" and night.name == "night"
    assert night.trigger.at == dt.time(22, 0) and night.trigger.every_s == 43200.0
    assert night.trigger.count is None and night.duration_s == 7200.0
    assert sweep.name == "sweep" and sweep.args == {"n": 3} and sweep.priority == 5
    assert sweep.trigger.count == 1 and sweep.trigger.at is None  # queued once, at once
    assert cli.trigger.at == dt.time(6, 30)
    assert schedule.recalibrate is not None
    assert schedule.recalibrate.plan_spec == default_calibration_plan()
    assert schedule.recalibrate.margin_s == 600.0 and schedule.until_s == 3 * 86400.0


def test_nothing_scheduled_queues_runner_plan_once() -> None:
    (only,) = parse_schedule(None, default_plan="m:main").runs
    assert only.plan_spec == "m:main" and only.trigger.count == 1


@pytest.mark.parametrize(
    ("section", "field", "text"),
    [
        ({"runs": [{"at": "25:00"}]}, "schedule.runs[0].at", "time of day"),
        ({"runs": [{"every": "soon"}]}, "schedule.runs[0].every", "duration"),
        ({"runs": [{"count": 0, "every": "1h"}]}, "schedule.runs[0].count", ">= 1"),
        ({"runs": [{"count": 2}]}, "schedule.runs[0].count", "needs every"),
        ({"runs": [{"evry": "1h"}]}, "schedule.runs[0]", "unknown key"),
        ({"timezone": "Nowhere/City"}, "schedule.timezone", "unknown time zone"),
        ({"recalibrate": {"margin": "-"}}, "schedule.recalibrate.margin", "duration"),
        ({"when": 1}, "schedule", "unknown key"),
    ],
)
def test_bad_schedule_names_the_field(section: dict, field: str, text: str) -> None:
    with pytest.raises(ConfigError, match=text) as caught:
        parse_schedule(section, default_plan="m:main")
    assert caught.value.field == field


@pytest.mark.slow
def test_schedule_runs_a_plan_repeatedly(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(
        "lab: testlab\nnode: alice\nallowed_packages: [tests]\n"
        "instruments:\n"
        "  laser:\n"
        "    class: tests.runner.runner_fixtures:MarkerInstrument\n"
        f"    settings: {{marker_file: {tmp_path / 'marks.jsonl'}}}\n"
        "storage:\n  runs_dir: runs\n"
        "runner:\n  plan: tests.runner.runner_fixtures:counting_plan\n"
        "schedule:\n  runs:\n    - {name: again, every: 1s, count: 2, args: {n: 2, step_s: 0.01}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "schedule", str(config)],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    runs = sorted((tmp_path / "runs").iterdir())
    assert [r.name.split("-", 2)[2].split("-")[0] for r in runs] == ["again", "again"]
    for run in runs:
        assert json.loads((run / "metadata.json").read_text())["status"] == "ok"
    assert proc.stdout.count("again: ok (plan finished)") == 2
    assert not list(tmp_path.glob("*.lock"))
