"""What installed packages add to labctl, found through entry points rather than by name.

labctl is the framework: it never imports the plans (``experiments``) or the simulated lab
(``sims``). A package that adds to it declares entry points in its ``pyproject.toml``, under
``[project.entry-points."GROUP"]``; this project's own pyproject declares those of
``experiments`` and ``sims``. The groups:

``labctl.commands``
    ``NAME = "package.module"``: a module whose ``register(subparsers)`` adds a sub-command
    to ``labctl`` (as the modules of ``labctl.cli`` do).
``labctl.calibrations``
    ``NAME = "package.module:plan"``: the plan ``labctl calibrate NAME`` runs; ``all`` is
    also the recalibration plan of schedules that name none.
``labctl.config_checks``
    ``NAME = "package.module:function"``: ``function(config)`` raises ConfigError for a bad
    section before a calibration touches any instrument.
``labctl.settings``
    ``SECTION = "package.module:Class"``: a free-form config section whose keys are the
    fields of a settings dataclass (``--set`` suggestions and checks use it).
``labctl.wire_servers``
    ``NAME = "package.module"``: serves a simulated station's twins behind their devices'
    protocols (``labctl twin serve``); ``twins`` is the one used.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from labctl.interfaces.errors import ConfigError

COMMANDS = "labctl.commands"
CALIBRATIONS = "labctl.calibrations"
CONFIG_CHECKS = "labctl.config_checks"
SETTINGS = "labctl.settings"
WIRE_SERVERS = "labctl.wire_servers"


@cache
def declared(group: str) -> dict[str, EntryPoint]:
    """Name -> entry point of ``group``, over every installed distribution (sorted by name)."""
    found = {ep.name: ep for ep in entry_points(group=group)}
    return dict(sorted(found.items()))


def spec(group: str, name: str) -> str:
    """The ``module:attribute`` text of entry ``name`` of ``group`` (ConfigError if absent)."""
    found = declared(group)
    if name not in found:
        known = ", ".join(found) or "none (is the package installed? pip install -e .)"
        raise ConfigError(f"no {group} entry point {name!r}; installed: {known}", field=group)
    return found[name].value


def load_module(group: str, name: str) -> ModuleType:
    """The module that entry ``name`` of ``group`` points to."""
    text = spec(group, name)
    module, _, attribute = text.partition(":")
    if attribute:
        raise ConfigError(
            f"{group} entry point {name!r} = {text!r}: expected a module", field=group
        )
    return importlib.import_module(module)


def load(group: str, name: str) -> object:
    """The object that entry ``name`` of ``group`` points to."""
    spec(group, name)  # a clear error when it is not declared
    return declared(group)[name].load()
