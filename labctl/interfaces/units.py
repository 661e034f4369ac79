"""Unit conventions and conversions.

Units live in names (``delay_ps``, ``rate_hz``, ``power_mw``); these helpers convert
between them so that nobody multiplies by 1e12 by hand.
"""

from __future__ import annotations

import math

PS_PER_S = 1_000_000_000_000
PS_PER_NS = 1_000
PS_PER_US = 1_000_000
PS_PER_MS = 1_000_000_000


def seconds_to_ps(seconds: float) -> int:
    """Seconds -> integer picoseconds (rounded to nearest)."""
    return round(seconds * PS_PER_S)


def ps_to_seconds(time_ps: int | float) -> float:
    """Picoseconds -> seconds."""
    return float(time_ps) / PS_PER_S


def db_to_transmission(loss_db: float) -> float:
    """Loss in dB (positive = attenuation) -> power transmission in [0, 1]."""
    return float(10.0 ** (-loss_db / 10.0))


def transmission_to_db(transmission: float) -> float:
    """Power transmission in (0, 1] -> loss in dB (positive)."""
    if transmission <= 0.0:
        return math.inf
    return -10.0 * math.log10(transmission)


def mw_to_dbm(power_mw: float) -> float:
    """Milliwatts -> dBm."""
    if power_mw <= 0.0:
        return -math.inf
    return 10.0 * math.log10(power_mw)


def dbm_to_mw(power_dbm: float) -> float:
    """dBm -> milliwatts."""
    return float(10.0 ** (power_dbm / 10.0))


UNIT_OF_SUFFIX = (
    ("_ps", "ps"), ("_ns", "ns"), ("_us", "µs"), ("_ms", "ms"), ("_s", "s"),
    ("_ghz", "GHz"), ("_mhz", "MHz"), ("_khz", "kHz"), ("_hz", "Hz"), ("_bps", "bit/s"),
    ("_dbm", "dBm"), ("_db", "dB"), ("_mw", "mW"), ("_uw", "µW"), ("_nw", "nW"), ("_w", "W"),
    ("_mv", "mV"), ("_v", "V"), ("_ma", "mA"), ("_ua", "µA"), ("_a", "A"),
    ("_nm", "nm"), ("_km", "km"), ("_m", "m"), ("_deg", "deg"), ("_rad", "rad"),
    ("_ppb", "ppb"), ("_ppm", "ppm"), ("_pct", "%"), ("_celsius", "degC"), ("_bits", "bit"),
    ("_bytes", "byte"),
)  # fmt: skip
"""Name suffix -> unit text (longest suffixes of a family first: ``_dbm`` before ``_db``)."""


def unit_of(name: str) -> str:
    """The unit a quantity name carries in its suffix (``delay_ps`` -> ``ps``), else ``""``."""
    lowered = name.lower()
    for suffix, unit in UNIT_OF_SUFFIX:
        if lowered.endswith(suffix):
            return unit
    return ""
