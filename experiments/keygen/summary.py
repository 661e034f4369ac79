"""The run summary: totals over blocks, written as summary.json and printed at the end."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.keygen.nodes import BlockResult
from labctl.qkd.entropy import binary_entropy
from labctl.store.atomic import write_bytes_atomic


@dataclass
class BlockTotals:
    """Running sums over blocks: a run's summary holds these, not one record per block.

    A live link finishes up to ~10 blocks a second, so a list of per-block results would
    grow by ~1 kB a block for as long as the run lasts; the sums are all summary.json needs.
    """

    blocks: int = 0
    blocks_with_key: int = 0
    pulses: int = 0
    acquired_s: float = 0.0
    detections: int = 0
    sifted_bits: int = 0
    key_bits: int = 0
    """Key-basis bits of blocks with a key-basis QBER (the weights of qber_z)."""
    corrected_bits: float = 0.0
    """Sum of qber_z x key-basis bits: the errors Cascade corrected."""
    test_bits: int = 0
    test_errors: float = 0.0
    disclosed_bits: int = 0
    secret_bits: int = 0
    channel_uses: int = 0
    round_trips: int = 0

    def add(self, r: BlockResult) -> None:
        """Count one block."""
        self.blocks += 1
        self.blocks_with_key += r.status == "key"
        self.pulses += r.pulses
        self.acquired_s += r.acquired_s
        self.detections += r.detections
        self.sifted_bits += r.sifted_bits
        if r.qber_z is not None:
            self.key_bits += r.key_basis_bits
            self.corrected_bits += r.qber_z * r.key_basis_bits
        if r.qber_x is not None:
            self.test_bits += r.test_basis_bits
            self.test_errors += r.qber_x * r.test_basis_bits
        self.disclosed_bits += r.disclosed_bits
        self.secret_bits += r.secret_bits
        self.channel_uses += r.channel_uses
        self.round_trips += r.round_trips


@dataclass
class KeySummary:
    """Totals over every post-processed block of one run (no key material).

    Memory per block is one key id (36 characters) for blocks that stored a key: the ids are
    what summary.json lists; everything else is a running sum (:class:`BlockTotals`).
    """

    run_id: str
    rate_hz: float
    status: str = "ok"
    reason: str = ""
    sums: BlockTotals = field(default_factory=BlockTotals)
    key_ids: list[str] = field(default_factory=list)
    sync_offset_ps: float | None = None
    sync_drift_ppb: float | None = None
    backlog: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, result: BlockResult) -> None:
        """Count one block."""
        self.sums.add(result)
        if result.key_id is not None:
            self.key_ids.append(result.key_id)

    def totals(self) -> dict[str, Any]:
        """The summary.json object."""
        t = self.sums
        qber_z = t.corrected_bits / t.key_bits if t.key_bits else None
        h = binary_entropy(qber_z) if qber_z is not None and 0.0 < qber_z < 0.5 else 0.0
        return {
            "run_id": self.run_id,
            "status": self.status,
            "reason": self.reason,
            "blocks": t.blocks,
            "blocks_with_key": t.blocks_with_key,
            "pulses": t.pulses,
            "acquired_s": t.acquired_s,
            "detections": t.detections,
            "sifted_bits": t.sifted_bits,
            "qber_z": qber_z,
            "qber_x": t.test_errors / t.test_bits if t.test_bits else None,
            "secret_bits": t.secret_bits,
            "key_rate_per_pulse": t.secret_bits / t.pulses if t.pulses else 0.0,
            "secret_key_rate_bps": t.secret_bits / t.acquired_s if t.acquired_s else 0.0,
            "ec_efficiency": t.disclosed_bits / (t.key_bits * h) if h > 0 and t.key_bits else None,
            "disclosed_bits": t.disclosed_bits,
            "channel_uses": t.channel_uses,
            "round_trips": t.round_trips,
            "sync_offset_ps": self.sync_offset_ps,
            "sync_drift_ppb": self.sync_drift_ppb,
            "backlog": dict(self.backlog),
            "key_ids": list(self.key_ids),
            **self.extra,
        }

    def write(self, folder: Path) -> Path:
        """Write summary.json (atomically) into the run folder."""
        path = Path(folder) / "summary.json"
        write_bytes_atomic(path, (json.dumps(_finite(self.totals()), indent=2) + "\n").encode())
        return path

    def text(self) -> str:
        """A short human-readable summary."""
        t = self.totals()

        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f} %"

        eff = t["ec_efficiency"]
        lines = [
            f"key generation {t['status']}: {t['blocks_with_key']}/{t['blocks']} blocks gave key"
            + (f" ({t['reason']})" if t["reason"] else ""),
            f"  pulses {t['pulses']:.3e}  detections {t['detections']}  sifted {t['sifted_bits']}",
            f"  QBER Z {pct(t['qber_z'])}  QBER X {pct(t['qber_x'])}  "
            f"EC efficiency {'n/a' if eff is None else f'{eff:.3f}'}",
            f"  secret bits {t['secret_bits']}  rate {t['key_rate_per_pulse']:.3e} /pulse  "
            f"{t['secret_key_rate_bps']:.0f} bit/s while acquiring",
            f"  classical channel: {t['channel_uses']} messages, "
            f"{t['round_trips']} Cascade round trips",
        ]
        return "\n".join(lines)


def _finite(obj: Any) -> Any:
    """JSON cannot hold inf/nan: they become None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
