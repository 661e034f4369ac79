"""Helpers shared by labctl sub-commands (this module adds no command of its own)."""

from __future__ import annotations

import argparse
from pathlib import Path

from labctl.log import add_json_file, set_level
from labctl.station.loader import load_config
from labctl.station.model import StationConfig


def apply_config_logging(args: argparse.Namespace, config: StationConfig) -> None:
    """Honour the config's logging section where the command line did not say otherwise."""
    if getattr(args, "log_level", None) is None:
        set_level(config.logging.level)
    if getattr(args, "log_json", None) is None and config.logging.json_file is not None:
        add_json_file(config.logging.json_file, config.logging.level)


def load_station_config(args: argparse.Namespace, path: str | Path) -> StationConfig:
    """Load and validate a station file, then apply its logging settings (ConfigError if bad)."""
    config = load_config(path)
    apply_config_logging(args, config)
    return config
