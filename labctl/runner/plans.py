"""Finding a plan from its ``module:function`` name (config ``runner.plan`` or ``--plan``)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

Plan = Callable[[Any], Awaitable[Any]]


def load_plan(spec: str) -> Plan:
    """Import ``package.module:function`` and check it is an ``async def plan(run)``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"plan {spec!r}: expected 'module:function', e.g. 'experiments.keygen:main'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"plan {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise ValueError(f"plan {spec!r}: module {module_name!r} has no {attr!r}") from exc
    if not inspect.iscoroutinefunction(target):
        raise ValueError(f"plan {spec!r}: {attr} must be an 'async def plan(run)' function")
    plan: Plan = target
    return plan
