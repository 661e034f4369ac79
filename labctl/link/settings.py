"""The ``qkd:`` section of a station file: block size, security parameters, thresholds.

Every key is optional. Bad values raise ConfigError naming ``qkd.<key>`` and, when the
section came from a file, its file and line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from labctl.interfaces.errors import ConfigError
from labctl.qkd.cascade.schedule import ScheduleName


@dataclass(frozen=True)
class KeygenSettings:
    """Live key generation settings (defaults suit configs/sim.yaml)."""

    block_pulses: int = 100_000_000
    """Pulses per block (1e8 at 1 GHz = 0.1 s of acquisition): finite-key size."""
    block_interval_s: float = 10.0
    """Run-clock time from one block's start to the next; acquisition duty = block / interval."""
    eps_sec: float = 1e-10
    eps_cor: float = 1e-15
    qber_max: float = 0.11
    """Key output stops for a block whose key- or test-basis QBER exceeds this."""
    cascade: ScheduleName = "optimized"
    queue_blocks: int = 4
    """Blocks waiting for post-processing; a full queue drops the new block (counted)."""
    channel_timeout_s: float = 60.0
    link_id: str = "alice-bob"
    key_basis: int = 0
    """Basis code (0 = Z) whose sifted bits become key; the other basis tests."""
    suspend_qber: float = 0.05
    """A block QBER (either basis) above this suspends the run and recalibrates polarization."""
    suspend_settle_s: float = 1.0
    """Run-clock wait after the recalibration before the QBER is checked again."""
    drift_dither_rad: float = 0.06
    """Retardance offset of the drift tracker's probes (experiments/keygen/drift.py); 0 = off."""
    drift_reference_pairs: int = 2
    """Probe pairs on the calibration frame before each key block (drift tracking)."""
    stall_blocks: int = 3
    """Blocks in a row without key that recalibrate polarization."""
    stall_margin_qber: float = 0.01
    """Mean QBER of recent blocks above the post-calibration floor that recalibrates."""
    auth: str = "wegman-carter"
    """Classical channel authentication: ``wegman-carter`` (information-theoretic, consumes
    key from a pool; labctl.qkd.auth.transcript) or ``hmac`` (HMAC-SHA256 only:
    computational security, no key consumed)."""
    auth_pool_slots: int = 64
    """Wegman-Carter: pad slots (16 bytes) per direction the pool is topped up to from each
    stored key block (a block uses 3)."""

    @classmethod
    def from_section(
        cls, section: Mapping[str, Any] | None, *, file: str | None = None
    ) -> KeygenSettings:
        """Validate a ``qkd:`` mapping (None = all defaults)."""
        values = dict(section or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown key(s) {unknown}; known: {sorted(known)}", file=file, field="qkd"
            )
        out: dict[str, Any] = {}
        for name, value in values.items():
            out[name] = _check(name, value, file)
        return cls(**out)


def _check(name: str, value: Any, file: str | None) -> Any:
    """One validated value (ConfigError naming the field)."""
    where = f"qkd.{name}"

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{why}, got {value!r}", file=file, field=where)

    if name in ("cascade", "link_id", "auth"):
        if not isinstance(value, str) or not value:
            raise bad("must be a non-empty string")
        if name == "cascade" and value not in ("optimized", "original"):
            raise bad("must be 'optimized' or 'original'")
        if name == "auth" and value not in ("wegman-carter", "hmac"):
            raise bad("must be 'wegman-carter' or 'hmac'")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad("must be a finite number")
    if name in (
        "block_pulses",
        "queue_blocks",
        "key_basis",
        "stall_blocks",
        "auth_pool_slots",
        "drift_reference_pairs",
    ):
        if float(value) != int(value):
            raise bad("must be a whole number")
        number = int(value)
        if name == "key_basis" and number not in (0, 1):
            raise bad("must be 0 (Z) or 1 (X)")
        if name == "block_pulses" and number < 1000:
            raise bad("must be >= 1000")
        if name in ("queue_blocks", "stall_blocks", "drift_reference_pairs") and number < 1:
            raise bad("must be >= 1")
        if name == "auth_pool_slots" and number < 8:
            raise bad("must be >= 8")
        return number
    number_f = float(value)
    if name in ("eps_sec", "eps_cor") and not 0.0 < number_f < 1.0:
        raise bad("must be in (0, 1)")
    if name in ("qber_max", "suspend_qber") and not 0.0 < number_f <= 0.5:
        raise bad("must be in (0, 0.5]")
    if name in ("block_interval_s", "channel_timeout_s") and number_f <= 0.0:
        raise bad("must be > 0")
    if name == "stall_margin_qber" and not 0.0 < number_f <= 0.5:
        raise bad("must be in (0, 0.5]")
    if name == "drift_dither_rad" and not 0.0 <= number_f <= 0.5:
        raise bad("must be in [0, 0.5] (0 turns drift tracking off)")
    if name == "suspend_settle_s" and number_f < 0.0:
        raise bad("must be >= 0")
    return number_f
