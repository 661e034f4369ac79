"""Calibration and synchronization as steps of the key-generation plan.

They call the calibration and sync packages (experiments.calibration, experiments.sync)
and return what key generation needs: nothing from calibration (it leaves the station
calibrated and records its report), a clock map from synchronization.
"""

from __future__ import annotations

import importlib
from typing import Any

from experiments.keygen.acquisition import ClockMap


async def calibrate(run: Any) -> dict[str, Any] | None:
    """Run every calibration (``experiments.calibration.calibrate_all``); its report summary."""
    module = importlib.import_module("experiments.calibration")
    report = await module.calibrate_all(run)
    summary = getattr(report, "summary", None)
    data: Any = summary() if callable(summary) else summary
    return data if isinstance(data, dict) else {"report": repr(report)}


async def synchronize(run: Any) -> ClockMap:
    """Lock Bob's clock onto Alice's pulses (``experiments.sync.synchronize``)."""
    module = importlib.import_module("experiments.sync")
    if not hasattr(module, "synchronize"):
        module = importlib.import_module("experiments.sync.plan")
    result: ClockMap = await module.synchronize(run)
    return result


def sync_figures(clock_map: ClockMap) -> tuple[float | None, float | None]:
    """(offset_ps, drift_ppb) of a clock map, when it exposes them."""
    offset = getattr(clock_map, "offset_ps", None)
    drift = getattr(clock_map, "drift_ppb", None)
    return (
        None if offset is None else float(offset),
        None if drift is None else float(drift),
    )
