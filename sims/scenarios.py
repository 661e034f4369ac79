"""Scenario files (configs/sim.yaml, configs/scenarios/*.yaml) as world settings, with overrides.

A scenario's physics lives in its ``world: settings:`` section. ``scenario_settings`` reads it
and applies the one override every scenario supports, the link length (``distance_km`` ->
``fiber.length_km``), so a sweep over distance needs no copies of the file.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from labctl.interfaces.errors import ConfigError


def scenario_settings(
    path: str | Path, *, distance_km: float | None = None, seed: int | None = None
) -> dict[str, Any]:
    """The ``world.settings`` mapping of a scenario file, with distance and seed overridden."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read the scenario: {err.strerror}", file=str(path)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        raise ConfigError(f"not valid YAML: {err}", file=str(path), line=line) from None
    world = data.get("world") if isinstance(data, dict) else None
    if not isinstance(world, dict):
        raise ConfigError("the scenario has no `world:` section", file=str(path), field="world")
    settings = copy.deepcopy(world.get("settings") or {})
    if not isinstance(settings, dict):
        raise ConfigError("must be a mapping", file=str(path), field="world.settings")
    if distance_km is not None:
        if isinstance(distance_km, bool) or not (
            isinstance(distance_km, int | float) and math.isfinite(distance_km) and distance_km >= 0
        ):
            raise ConfigError(
                f"distance_km must be a finite number >= 0, got {distance_km!r}",
                field="distance_km",
            )
        fiber = settings.setdefault("fiber", {})
        if not isinstance(fiber, dict):
            raise ConfigError("must be a mapping", file=str(path), field="world.settings.fiber")
        fiber["length_km"] = float(distance_km)
    if seed is not None:
        settings["seed"] = seed
    return settings


def scenario_world(
    path: str | Path, *, distance_km: float | None = None, seed: int | None = None
) -> Any:
    """A fresh World built from a scenario file (see ``scenario_settings`` for overrides)."""
    from sims.world import World  # late: the world is the heavy part

    return World.from_settings(scenario_settings(path, distance_km=distance_km, seed=seed))
