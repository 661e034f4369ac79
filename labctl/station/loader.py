"""Read a station file: YAML with line numbers -> StationConfig, or ConfigError with file:line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from labctl.interfaces.errors import ConfigError
from labctl.station.classpath import import_class
from labctl.station.errors import ConfigErrorGroup, config_error_from
from labctl.station.model import StationConfig
from labctl.station.yaml_lines import LineMap, read_yaml


def _resolve(base: Path, value: Path | None) -> Path | None:
    """A path from the file made absolute relative to the config file's folder."""
    if value is None:
        return None
    value = value.expanduser()
    return value if value.is_absolute() else (base / value).resolve()


def _anchor_paths(config: StationConfig, base: Path) -> StationConfig:
    """The same config with every file path taken relative to ``base``."""
    storage = config.storage.model_copy(
        update={
            "runs_dir": _resolve(base, config.storage.runs_dir),
            "calibration_store": _resolve(base, config.storage.calibration_store),
            "key_store": _resolve(base, config.storage.key_store),
            "key_store_key_file": _resolve(base, config.storage.key_store_key_file),
        }
    )
    logging = config.logging.model_copy(
        update={"json_file": _resolve(base, config.logging.json_file)}
    )
    mqtt_update: dict[str, Any] = {"password_file": _resolve(base, config.mqtt.password_file)}
    if config.mqtt.tls is not None:
        tls = config.mqtt.tls
        mqtt_update["tls"] = tls.model_copy(
            update={
                "ca_file": _resolve(base, tls.ca_file),
                "cert_file": _resolve(base, tls.cert_file),
                "key_file": _resolve(base, tls.key_file),
            }
        )
    mqtt = config.mqtt.model_copy(update=mqtt_update)
    return config.model_copy(update={"storage": storage, "logging": logging, "mqtt": mqtt})


def validate_config(data: Any, lines: LineMap) -> StationConfig:
    """Validate parsed YAML; every problem is reported at once with its line."""
    if data is None:
        raise ConfigError(
            "the file is empty; expected a mapping with lab, node and instruments",
            file=lines.file,
            line=1,
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping (lab: ..., node: ...), got {type(data).__name__}",
            file=lines.file,
            line=lines.line_of(()),
        )
    try:
        config = StationConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error_from(StationConfig, exc, lines) from None
    if lines.file is not None:
        config = _anchor_paths(config, Path(lines.file).resolve().parent)
    config._file = lines.file
    config._lines = dict(lines.lines)
    return config


def load_config(path: str | Path) -> StationConfig:
    """Read and validate a station file; ConfigError names file, line, field and a fix."""
    data, lines = read_yaml(path)
    return validate_config(data, lines)


def import_classes(config: StationConfig) -> dict[str, type[Any]]:
    """Import the world and every instrument class; all failures reported together.

    The result maps ``"world"`` (when present) and each instrument name to its class.
    """
    classes: dict[str, type[Any]] = {}
    problems: list[ConfigError] = []
    entries: list[tuple[str, str, str]] = []
    if config.world is not None:
        entries.append(("world", config.world.class_path, "world"))
    entries += [(n, i.class_path, f"instruments.{n}") for n, i in config.instruments.items()]
    for key, class_path, field in entries:
        source = config.source_of(*field.split("."), "class")
        try:
            classes[key] = import_class(
                class_path,
                field=f"{field}.class",
                source=source,
                allowed_packages=config.allowed_packages,
            )
        except ConfigError as exc:
            problems.append(exc)
    if problems:
        raise ConfigErrorGroup(problems)
    return classes
