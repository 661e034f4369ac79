"""Import the classes a station file names ('package.module:Class') and check they can be built.

Importing a module runs its code, so a station file may only name modules under an allowed
package: the shipped ``drivers`` and ``sims``, plus the packages the file itself lists in
``allowed_packages`` (a lab's own drivers, ``allowed_packages: [mylab]``). The check is on
the text of the class path and comes before anything is imported.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from typing import Any

from labctl.interfaces.build import Source
from labctl.interfaces.errors import ConfigError

SHIPPED_PACKAGES = ("drivers", "sims")
"""Packages every station file may name classes from."""


def is_allowed(module_name: str, allowed_packages: Iterable[str]) -> bool:
    """True when ``module_name`` is one of the packages or inside one (by name, no import)."""
    return any(
        module_name == package or module_name.startswith(package + ".")
        for package in (*SHIPPED_PACKAGES, *allowed_packages)
    )


def import_class(
    class_path: str, *, field: str, source: Source, allowed_packages: Iterable[str] = ()
) -> type[Any]:
    """Import ``package.module:Class``; ConfigError says whether the module or the name is wrong.

    Refused before any import when the module is outside ``drivers``, ``sims`` and
    ``allowed_packages``.
    """

    def fail(message: str, suggestion: str | None = None) -> ConfigError:
        return ConfigError(
            message, file=source.file, line=source.line, field=field, suggestion=suggestion
        )

    module_name, sep, attr_path = class_path.partition(":")
    if not sep or not module_name or not attr_path:
        raise fail(f"class path '{class_path}' must look like 'package.module:Class'")
    extra = tuple(allowed_packages)
    if not is_allowed(module_name, extra):
        allowed = ", ".join(f"'{p}'" for p in (*SHIPPED_PACKAGES, *extra))
        top = module_name.split(".", 1)[0]
        raise fail(
            f"module '{module_name}' is outside the allowed packages ({allowed}); not imported. "
            f"To trust it, list its package at the top level: allowed_packages: [{top}]"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            message = f"module '{module_name}' not found (no module named '{missing}')"
        else:  # the module exists but one of its own imports is missing
            message = f"module '{module_name}' failed to import: no module named '{missing}'"
        raise fail(message) from None
    except Exception as exc:  # any error while executing the module body
        raise fail(f"module '{module_name}' failed to import: {type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = [n for n in dir(target) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
            suggestion = f"{module_name}:{attr_path.replace(part, close[0])}" if close else None
            raise fail(
                f"module '{module_name}' has no attribute '{attr_path}'", suggestion
            ) from None
    if not isinstance(target, type):
        raise fail(f"'{class_path}' is not a class")
    if not callable(getattr(target, "from_config", None)):
        raise fail(
            f"class '{class_path}' has no from_config(spec, context) classmethod, "
            "so the station cannot build it"
        )
    return target
