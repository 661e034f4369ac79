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
class KeySummary:
    """Totals over every post-processed block of one run (no key material)."""

    run_id: str
    rate_hz: float
    status: str = "ok"
    reason: str = ""
    blocks: list[BlockResult] = field(default_factory=list)
    sync_offset_ps: float | None = None
    sync_drift_ppb: float | None = None
    backlog: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, result: BlockResult) -> None:
        """Count one block."""
        self.blocks.append(result)

    def totals(self) -> dict[str, Any]:
        """The summary.json object."""
        b = self.blocks
        pulses = sum(r.pulses for r in b)
        acquired_s = sum(r.acquired_s for r in b)
        key_bits = sum(r.key_basis_bits for r in b if r.qber_z is not None)
        corrected = sum(r.qber_z * r.key_basis_bits for r in b if r.qber_z is not None)
        test_bits = sum(r.test_basis_bits for r in b if r.qber_x is not None)
        test_err = sum(r.qber_x * r.test_basis_bits for r in b if r.qber_x is not None)
        qber_z = corrected / key_bits if key_bits else None
        disclosed = sum(r.disclosed_bits for r in b)
        h = binary_entropy(qber_z) if qber_z is not None and 0.0 < qber_z < 0.5 else 0.0
        secret = sum(r.secret_bits for r in b)
        return {
            "run_id": self.run_id,
            "status": self.status,
            "reason": self.reason,
            "blocks": len(b),
            "blocks_with_key": sum(1 for r in b if r.status == "key"),
            "pulses": pulses,
            "acquired_s": acquired_s,
            "detections": sum(r.detections for r in b),
            "sifted_bits": sum(r.sifted_bits for r in b),
            "qber_z": qber_z,
            "qber_x": test_err / test_bits if test_bits else None,
            "secret_bits": secret,
            "key_rate_per_pulse": secret / pulses if pulses else 0.0,
            "secret_key_rate_bps": secret / acquired_s if acquired_s else 0.0,
            "ec_efficiency": disclosed / (key_bits * h) if h > 0 and key_bits else None,
            "disclosed_bits": disclosed,
            "channel_uses": sum(r.channel_uses for r in b),
            "round_trips": sum(r.round_trips for r in b),
            "sync_offset_ps": self.sync_offset_ps,
            "sync_drift_ppb": self.sync_drift_ppb,
            "backlog": dict(self.backlog),
            "key_ids": [r.key_id for r in b if r.key_id is not None],
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
