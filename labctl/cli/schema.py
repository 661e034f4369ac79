"""``labctl schema``: print the JSON schema of station files, for editors and YAML servers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import labctl
from labctl.station.model import StationConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def station_schema() -> dict[str, Any]:
    """The JSON schema of a station file (field names as written in YAML)."""
    schema = StationConfig.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "labctl station file",
        "description": f"Station configuration for labctl {labctl.__version__}",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def register(subparsers: Any) -> None:
    """Add the ``schema`` sub-command."""
    parser = subparsers.add_parser(
        "schema",
        help="print the JSON schema of station files",
        description="Print the JSON schema of station files, e.g. for the YAML language "
        "server: add '# yaml-language-server: $schema=station.schema.json' to a station file.",
    )
    parser.add_argument("-o", "--output", metavar="PATH", help="write to PATH instead of stdout")
    parser.set_defaults(func=run_schema)


def run_schema(args: argparse.Namespace) -> int:
    """Entry point of ``labctl schema``."""
    text = json.dumps(station_schema(), indent=2, sort_keys=False) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0
