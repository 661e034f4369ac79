"""The run summary: totals over blocks, written as summary.json and printed at the end.

Two key rates, named apart: ``secret_key_rate_bps`` is secret bits per second of *run*
time (the run's clock: simulated seconds on a virtual clock, wall seconds in the lab), the
figure an operator can hold a link to; ``secret_key_rate_acquisition_bps`` divides by the
time spent acquiring blocks only (block length x blocks, a small share of the run at a
low duty cycle). Run time comes from ``run_time_s`` when the plan sets it, else from the
run folder's events (first document's clock start to the latest document's ``ts``).

Status: a run that ended ``ok`` but in which fewer than ``min_key_share`` (default 90 %)
of its blocks gave key, or that post-processed no block at all, is written ``degraded``
with the reason; the runner then ends the run ``degraded`` (never ``ok``). The
``status`` attribute itself keeps what the plan set (ok, aborted, failed): the degraded
verdict is derived in :meth:`KeySummary.verdict`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.link.nodes import BlockResult
from labctl.qkd.estimation.entropy import binary_entropy
from labctl.store.atomic import write_bytes_atomic
from labctl.store.events import first_and_last_events


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
    auth_key_bits: int = 0
    """Generated key moved to the Wegman-Carter pool (not stored as key)."""

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
        self.auth_key_bits += r.auth_key_bits


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
    min_key_share: float = 0.9
    """Share of blocks that must give key for an ``ok`` run; below it the run is degraded."""
    run_time_s: float | None = None
    """Run-clock seconds the run has lasted (None: read from the run folder on write)."""
    clock: str | None = None
    """``simulated`` or ``wall``: which clock ``run_time_s`` counts."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_key_share <= 1.0:
            raise ValueError(f"min_key_share must be in [0, 1], got {self.min_key_share}")

    def verdict(self) -> tuple[str, str]:
        """(status, reason) of the run: the plan's, or ``degraded`` when too few blocks gave
        key."""
        if self.status != "ok":
            return self.status, self.reason
        t = self.sums
        if t.blocks == 0:
            return "degraded", "no block was post-processed"
        share = t.blocks_with_key / t.blocks
        if share < self.min_key_share:
            return "degraded", (
                f"only {t.blocks_with_key} of {t.blocks} blocks ({100 * share:.1f} %) gave key, "
                f"below min_key_share {100 * self.min_key_share:.0f} %"
            )
        return self.status, self.reason

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
        status, reason = self.verdict()
        run_s = self.run_time_s
        return {
            "run_id": self.run_id,
            "status": status,
            "reason": reason,
            "blocks": t.blocks,
            "blocks_with_key": t.blocks_with_key,
            "key_block_share": t.blocks_with_key / t.blocks if t.blocks else None,
            "min_key_share": self.min_key_share,
            "pulses": t.pulses,
            "acquired_s": t.acquired_s,
            "detections": t.detections,
            "sifted_bits": t.sifted_bits,
            "qber_z": qber_z,
            "qber_x": t.test_errors / t.test_bits if t.test_bits else None,
            "secret_bits": t.secret_bits,
            "auth_key_bits": t.auth_key_bits,
            "net_key_bits": t.secret_bits - t.auth_key_bits,
            "key_rate_per_pulse": t.secret_bits / t.pulses if t.pulses else 0.0,
            "run_time_s": run_s,
            "clock": self.clock,
            "secret_key_rate_bps": t.secret_bits / run_s if run_s else None,
            "secret_key_rate_acquisition_bps": (
                t.secret_bits / t.acquired_s if t.acquired_s else 0.0
            ),
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
        if self.run_time_s is None:
            self.run_time_s, self.clock = _run_time_s(Path(folder))
        write_bytes_atomic(path, (json.dumps(_finite(self.totals()), indent=2) + "\n").encode())
        return path

    def text(self) -> str:
        """A short human-readable summary."""
        t = self.totals()

        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f} %"

        eff = t["ec_efficiency"]
        run_rate = t["secret_key_rate_bps"]
        run_s = t["run_time_s"]
        lines = [
            f"key generation {t['status']}: {t['blocks_with_key']}/{t['blocks']} blocks gave key"
            + (f" ({t['reason']})" if t["reason"] else ""),
            f"  pulses {t['pulses']:.3e}  detections {t['detections']}  sifted {t['sifted_bits']}",
            f"  QBER Z {pct(t['qber_z'])}  QBER X {pct(t['qber_x'])}  "
            f"EC efficiency {'n/a' if eff is None else f'{eff:.3f}'}",
            f"  secret bits {t['secret_bits']}  rate {t['key_rate_per_pulse']:.3e} /pulse  "
            + (
                "n/a bit/s over the run"
                if run_rate is None
                else f"{run_rate:.1f} bit/s over {run_s:.0f} s of {t['clock'] or 'run'} time"
            )
            + f"  ({t['secret_key_rate_acquisition_bps']:.0f} bit/s while acquiring)",
            f"  classical channel: {t['channel_uses']} messages, "
            f"{t['round_trips']} Cascade round trips",
        ]
        return "\n".join(lines)


def _run_time_s(folder: Path) -> tuple[float | None, str | None]:
    """(seconds from the run's start to its latest document, clock kind) from events.jsonl."""
    first, last = first_and_last_events(folder / "events.jsonl")
    if first is None or last is None:
        return None, None
    clock = first.get("data", {}).get("clock", {})
    start_s = clock.get("start_s", first.get("ts"))
    if not isinstance(start_s, int | float):
        return None, None
    kind = "simulated" if clock.get("virtual") else "wall"
    return max(float(last["ts"]) - float(start_s), 0.0), kind


def _finite(obj: Any) -> Any:
    """JSON cannot hold inf/nan: they become None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
