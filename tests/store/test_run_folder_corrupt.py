"""A damaged run folder is an error naming the file and the field, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.store.events import read_events
from labctl.store.run_folder import RunFolder, RunFolderError

ROOT = Path(__file__).resolve().parents[2]

GOOD_METADATA = {
    "run_id": "r",
    "plan": "labctl.runner.plans:noop",
    "status": "crashed",
    "args": {},
    "datasets": {"main": "guid-1"},
    "resumes": [],
}
GOOD_CHECKPOINT = {"seq_next": 3, "state": {"i": 1}, "datasets": {"main": {"last_row_id": 2}}}


def _folder(tmp_path: Path, metadata: object = None, checkpoint: object = None) -> RunFolder:
    path = tmp_path / "20260101-000000-run"
    path.mkdir()
    folder = RunFolder(path)
    (path / "metadata.json").write_text(json.dumps(metadata or GOOD_METADATA), encoding="utf-8")
    if checkpoint is not None:
        (path / "checkpoint.json").write_text(json.dumps(checkpoint), encoding="utf-8")
    return folder


def test_good_files_read_back(tmp_path: Path) -> None:
    folder = _folder(tmp_path, checkpoint=GOOD_CHECKPOINT)
    assert folder.read_metadata() == GOOD_METADATA
    assert folder.read_checkpoint() == GOOD_CHECKPOINT


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"plan": 7}, "plan", "expected a string, got int 7"),
        ({"args": []}, "args", "expected an object"),
        ({"datasets": {"main": 5}}, "datasets.main", "expected a string guid"),
        ({"datasets": "x"}, "datasets", "expected an object"),
        ({"resumes": [1]}, "resumes[0]", "expected an object"),
        ({"status": ["ok"]}, "status", "expected a string"),
    ],
)
def test_metadata_fields_of_the_wrong_type_are_named(
    tmp_path: Path, change: dict[str, object], field: str, expected: str
) -> None:
    folder = _folder(tmp_path, {**GOOD_METADATA, **change})
    with pytest.raises(RunFolderError) as info:
        folder.read_metadata()
    assert str(info.value).startswith(f"{folder.metadata_path}: field '{field}': {expected}")
    assert info.value.field == field


@pytest.mark.parametrize(
    ("checkpoint", "field", "expected"),
    [
        ({"seq_next": "3"}, "seq_next", "expected an integer >= 0, got str '3'"),
        ({"seq_next": -1}, "seq_next", "expected an integer >= 0, got -1"),
        ({"seq_next": True}, "seq_next", "expected an integer >= 0, got bool True"),
        ({"datasets": {"main": 2}}, "datasets.main", "expected an object"),
        ({"datasets": {"main": {"last_row_id": 1.5}}}, "datasets.main.last_row_id", "integer"),
    ],
)
def test_checkpoint_fields_of_the_wrong_type_are_named(
    tmp_path: Path, checkpoint: dict[str, object], field: str, expected: str
) -> None:
    folder = _folder(tmp_path, checkpoint=checkpoint)
    with pytest.raises(RunFolderError) as info:
        folder.read_checkpoint()
    assert f"{folder.checkpoint_path}: field '{field}': " in str(info.value)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"plan": ', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_unparseable_files_name_the_file(tmp_path: Path, raw: bytes, expected: str) -> None:
    folder = _folder(tmp_path)
    folder.metadata_path.write_bytes(raw)
    folder.checkpoint_path.write_bytes(raw)
    for read, path in (
        (folder.read_metadata, folder.metadata_path),
        (folder.read_checkpoint, folder.checkpoint_path),
    ):
        with pytest.raises(RunFolderError) as info:
            read()
        assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"seq": "1"}', "field 'seq': expected an integer >= 0"),
        (b'{"no_seq": 1}', "field 'seq'"),
        (b"\xff\xff", "corrupt event line"),
        (b"[" * 100_000, "corrupt event line"),
    ],
)
def test_a_corrupt_event_line_names_file_line_and_field(
    tmp_path: Path, line: bytes, expected: str
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"seq": 0}\n' + line + b'\n{"seq": 2}\n')
    with pytest.raises(ValueError) as info:
        read_events(path)
    assert str(info.value).startswith(f"{path}:2: ") and expected in str(info.value)


def test_labctl_resume_on_a_corrupt_checkpoint_exits_2_naming_it(tmp_path: Path) -> None:
    folder = _folder(tmp_path, checkpoint={"seq_next": "soon"})
    (folder.path / "config.yaml").write_text("lab: l\nnode: n\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "labctl", "resume", str(folder.path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"{folder.checkpoint_path}: field 'seq_next': expected an integer" in result.stderr
    assert "Traceback" not in result.stderr
