"""No secret reaches the run folder in clear: the config copy has its secret values redacted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labctl.cli.resume import station_file
from labctl.interfaces.errors import ConfigError
from labctl.runner.context import StationLike
from labctl.runner.engine import RunEngine
from labctl.runner.metadata import REDACTED, redact_station_text
from labctl.store.run_folder import RunFolder
from tests.runner.runner_fixtures import counting_plan

SECRET_TEXT = """\
lab: l
node: n
mqtt:
  url: mqtts://broker.example.org
  username: lab
  password: hunter2-hunter2
  commands:
    mode: hmac
    token: cmd-token-0123456789abcdef
qkd:
  psk: 00112233445566778899aabbccddeeff
storage:
  key_store_key_file: secrets/store.key
"""


def test_secret_values_are_redacted_and_paths_kept() -> None:
    copy = redact_station_text(SECRET_TEXT)
    for secret in ("hunter2-hunter2", "cmd-token-0123456789abcdef", "00112233445566778899"):
        assert secret not in copy
    data = yaml.safe_load(copy)
    assert data["mqtt"]["password"] == REDACTED and data["mqtt"]["commands"]["token"] == REDACTED
    assert data["qkd"]["psk"] == REDACTED
    assert data["storage"]["key_store_key_file"] == "secrets/store.key"
    assert data["mqtt"]["username"] == "lab" and data["mqtt"]["commands"]["mode"] == "hmac"


def test_a_file_without_secrets_is_copied_verbatim() -> None:
    text = "# comment kept\nlab: l\nnode: n\nmqtt:\n  password_file: pw.txt\n"
    assert redact_station_text(text) == text


async def test_the_run_folder_copy_holds_no_secret(
    marker_station: StationLike, tmp_path: Path
) -> None:
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs", config_text=SECRET_TEXT)
    result = await engine.run(counting_plan, name="redact", args={"n": 1, "step_s": 0.0})
    assert result.status == "ok"
    everything = b"".join(p.read_bytes() for p in result.path.rglob("*") if p.is_file())
    for secret in (b"hunter2-hunter2", b"cmd-token-0123456789abcdef", b"00112233445566778899"):
        assert secret not in everything
    assert REDACTED in (result.path / "config.yaml").read_text(encoding="utf-8")


def _run_folder(tmp_path: Path, original: Path) -> RunFolder:
    folder = RunFolder.create(tmp_path / "runs", "r", config_text=redact_station_text(SECRET_TEXT))
    folder.write_metadata({"plan": "p:q", "config_file": str(original)})
    return folder


def test_resume_uses_the_unchanged_original_behind_a_redacted_copy(tmp_path: Path) -> None:
    original = tmp_path / "station.yaml"
    original.write_text(SECRET_TEXT, encoding="utf-8")
    assert station_file(_run_folder(tmp_path, original)) == original


def test_resume_refuses_a_redacted_copy_when_the_original_changed(tmp_path: Path) -> None:
    original = tmp_path / "station.yaml"
    original.write_text(SECRET_TEXT.replace("username: lab", "username: other"), encoding="utf-8")
    with pytest.raises(ConfigError, match="secrets redacted"):
        station_file(_run_folder(tmp_path, original))
