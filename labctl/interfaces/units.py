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
