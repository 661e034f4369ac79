"""Calibration routines, each a plan with a pass/fail verdict: see ``registry``.

``await calibrate_all(run) -> CalibrationReport``; ``labctl calibrate NAME|all --config C``.
"""

from experiments.calibration.common import RoutineResult
from experiments.calibration.registry import (
    PLANS,
    ROUTINES,
    CalibrationReport,
    calibrate,
    calibrate_all,
)

__all__ = ["PLANS", "ROUTINES", "CalibrationReport", "RoutineResult", "calibrate", "calibrate_all"]
