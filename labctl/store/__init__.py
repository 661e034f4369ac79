"""Run folders, qcodes datasets and the calibration store."""

from labctl.store.calibration import Calibration, CalibrationStore
from labctl.store.datasets import Column, RunDatabase, RunDataset
from labctl.store.events import EventLog, read_events, truncate_events
from labctl.store.run_folder import RunFolder, slugify

__all__ = [
    "Calibration",
    "CalibrationStore",
    "Column",
    "EventLog",
    "RunDatabase",
    "RunDataset",
    "RunFolder",
    "read_events",
    "slugify",
    "truncate_events",
]
