"""The station file's ``calibration:`` section: limits and known values per routine.

Every routine has defaults that suit the simulated station; the config overrides them. A
key that is not known, or a value of the wrong kind, is a ConfigError naming
``calibration.<routine>.<key>`` and the station file.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labctl.interfaces.errors import ConfigError

DAY_S = 86400.0

DEFAULTS: dict[str, dict[str, Any]] = {
    "instruments": {
        "laser": "laser",
        "pc": "pc-bob",
        "detectors": "detectors",
        "tagger": "tagger-bob",
        "switch": "switch",
    },
    "link": {  # known losses between Alice's laser and Bob's detectors
        "fiber_loss_db": None,
        "switch_loss_db": None,
        "receiver_loss_db": None,
        "detector_efficiency": None,
        "bob_port": None,
    },
    "delays": {"capture_s": 0.005, "max_residual_ps": 5.0, "valid_s": DAY_S},
    "detectors": {
        "dark_integration_s": 10.0,
        "capture_s": 0.005,
        "afterpulse_power_mw": 0.04,
        "afterpulse_capture_s": 0.2,
        "max_dark_rate_hz": 1000.0,
        # A biased detector has dark counts: far fewer is a detector not counting photons
        # (blinded by bright light); set it from the detector's test sheet.
        "min_dark_rate_hz": 1.0,
        "max_current_excess_ua": 0.05,  # bias-line current above bias with the laser off
        "min_relative_efficiency": 0.8,
        "max_afterpulse_probability": 0.1,
        "max_jitter_fwhm_ps": 100.0,
        "dead_time_ns": [5.0, 500.0],
        "valid_s": DAY_S,
    },
    "polarization": {
        "max_evaluations": 60,
        "evaluation_s": 0.002,
        "v_pi_mv": 2000.0,
        "max_qber": 0.03,
        "misalignment": None,
        "valid_s": 3600.0,
    },
    "mean_photon_number": {"capture_s": 0.005, "tolerance": 0.1, "valid_s": DAY_S},
    "switch": {
        "integration_s": 2.0,  # dark and leak ports: only darks and crosstalk to count
        "bob_integration_s": 0.01,  # Bob's port is bright
        "max_insertion_loss_db": 3.0,
        "max_crosstalk_db": -30.0,
        "valid_s": 7 * DAY_S,
    },
}

_STRINGS = {"instruments"}
_SIGNED = {"max_crosstalk_db"}


@dataclass(frozen=True, slots=True)
class CalibrationSettings:
    """Validated ``calibration:`` section: ``settings.section("detectors")["capture_s"]``."""

    values: dict[str, dict[str, Any]]
    file: str | None = None

    def section(self, name: str) -> dict[str, Any]:
        """One routine's settings (defaults merged with the config)."""
        return self.values[name]

    def require(self, section: str, key: str) -> Any:
        """A value with no default: ConfigError telling where to set it when missing."""
        value = self.values[section][key]
        if value is None:
            raise ConfigError(
                "not set; this calibration needs it (a known property of the link)",
                file=self.file,
                field=f"calibration.{section}.{key}",
            )
        return value

    @classmethod
    def from_section(cls, raw: Any, file: str | None = None) -> CalibrationSettings:
        """Validate the raw ``calibration:`` mapping."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError("must be a mapping", file=file, field="calibration")
        values = {name: dict(defaults) for name, defaults in DEFAULTS.items()}
        for name, entries in raw.items():
            if name not in DEFAULTS:
                raise _unknown(name, list(DEFAULTS), file, "calibration")
            if not isinstance(entries, Mapping):
                raise ConfigError("must be a mapping", file=file, field=f"calibration.{name}")
            for key, value in entries.items():
                where = f"calibration.{name}.{key}"
                if key not in DEFAULTS[name]:
                    raise _unknown(key, list(DEFAULTS[name]), file, f"calibration.{name}")
                values[name][key] = _check(name, key, value, DEFAULTS[name][key], where, file)
        return cls(values, file)


def _unknown(key: Any, known: list[str], file: str | None, where: str) -> ConfigError:
    close = difflib.get_close_matches(str(key), known, n=1)
    return ConfigError(
        f"unknown key {key!r} (known: {', '.join(known)})",
        file=file,
        field=f"{where}.{key}",
        suggestion=close[0] if close else None,
    )


def _check(section: str, key: str, value: Any, default: Any, where: str, file: str | None) -> Any:
    if section in _STRINGS:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"must be an instrument name, got {value!r}", file=file, field=where)
        return value
    if isinstance(default, list):
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and all(_number(v) for v in value)
            and value[0] < value[1]
        )
        if not ok:
            raise ConfigError(f"must be [low, high] numbers, got {value!r}", file=file, field=where)
        return [float(v) for v in value]
    if key in ("max_evaluations", "bob_port"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"must be an integer >= 1, got {value!r}", file=file, field=where)
        return value
    if not _number(value):
        raise ConfigError(f"must be a finite number, got {value!r}", file=file, field=where)
    if key == "detector_efficiency" and not 0.0 < value <= 1.0:
        raise ConfigError(f"must be in (0, 1], got {value!r}", file=file, field=where)
    if key not in _SIGNED and not key.endswith("_loss_db") and value <= 0:
        raise ConfigError(f"must be > 0, got {value!r}", file=file, field=where)
    if key.endswith("_loss_db") and value < 0:
        raise ConfigError(f"a loss must be >= 0 dB, got {value!r}", file=file, field=where)
    return float(value)


def _number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(float(value))
    )
