"""The ``labctl`` entry point: help, version, schema, command discovery."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

import labctl
from labctl.cli.main import build_parser, command_modules

DATA = Path(__file__).resolve().parents[1] / "station" / "data"


def run(*args: str, module: str = "labctl") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_matches_the_package() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"labctl {labctl.__version__}"


def test_help_lists_commands_and_global_options() -> None:
    result = run("--help")
    assert result.returncode == 0
    for word in ("check", "schema", "--log-json", "--log-level", "--version"):
        assert word in result.stdout


def test_check_help_says_what_plain_check_does() -> None:
    result = run("check", "--help", module="labctl.cli")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "import every class path" in text
    assert "build and connect nothing" in text


def test_no_command_is_bad_input() -> None:
    result = run()
    assert result.returncode == 2
    assert "usage: labctl" in result.stderr


def test_schema_is_a_json_schema_that_accepts_good_files_and_rejects_typos() -> None:
    result = run("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = yaml.safe_load((DATA / "good.yaml").read_text())
    assert list(validator.iter_errors(good)) == []
    typo = yaml.safe_load((DATA / "typo.yaml").read_text())
    # transport is optional (anyOf object/null): the real reasons sit in each error's context.
    errors = list(validator.iter_errors(typo))
    messages = [sub.message for e in errors for sub in [e, *e.context]]
    assert any("'adress' was unexpected" in m for m in messages)
    assert any("'address' is a required property" in m for m in messages)


def test_schema_can_be_written_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "station.schema.json"
    assert run("schema", "-o", str(target)).returncode == 0
    assert json.loads(target.read_text())["properties"]["instruments"]["type"] == "object"


def test_discovery_finds_command_modules_by_register_only() -> None:
    modules, broken = command_modules()
    names = {m.__name__ for m in modules}
    assert {"labctl.cli.check", "labctl.cli.schema"} <= names
    assert "labctl.cli.common" not in names and "labctl.cli.main" not in names
    assert broken == [], broken
    parser, _ = build_parser()
    args = parser.parse_args(["check", "x.yaml", "--connect"])
    assert args.connect and args.config == "x.yaml" and callable(args.func)


def test_unknown_option_is_bad_input() -> None:
    result = run("check", "--frobnicate", "x.yaml")
    assert result.returncode == 2
    assert "unrecognized arguments: --frobnicate" in result.stderr


def test_log_level_accepts_any_case() -> None:
    result = run("--log-level", "debug", "check", str(DATA / "typo.yaml"))
    assert result.returncode == 2 and "invalid choice" not in result.stderr
