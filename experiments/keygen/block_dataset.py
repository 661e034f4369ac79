"""The per-block qcodes dataset of key generation: one row per key block, no key material.

Each row holds the block's figures as the ``qkd`` event has them (pulses, detections, sifted
and disclosed bits, QBERs, error-correction efficiency, secret bits, rates), with units; a
value a block did not reach (the QBER of a failed block) is NaN.
"""

from __future__ import annotations

import math
from typing import Any

from labctl.runner.plan_context import PlanContext
from labctl.store.datasets import Column, RunDataset

DATASET = "key_blocks"
SETPOINT = Column("block", label="key block (in acquisition order)")
COLUMNS = (
    Column("key_stored", label="key stored (1) or not (0)"),
    Column("pulses", unit="pulse", label="pulses sent"),
    Column("detections", label="detections"),
    Column("sifted_bits", label="sifted bits"),
    Column("key_basis_bits", label="sifted bits in the key (Z) basis"),
    Column("test_basis_bits", label="sifted bits in the test (X) basis"),
    Column("qber_z", label="QBER, Z basis"),
    Column("qber_x", label="QBER, X basis"),
    Column("disclosed_bits", label="bits disclosed by error correction"),
    Column("ec_efficiency", unit="1", label="error-correction efficiency f"),
    Column("round_trips", unit="count", label="error-correction round trips"),
    Column("channel_uses", unit="count", label="classical channel messages"),
    Column("secret_bits", label="secret key bits stored"),
    Column("acquired_s", label="acquisition time"),
    Column("key_rate_per_pulse", unit="bit/pulse", label="secret key per pulse"),
    Column("secret_key_rate_bps", label="secret key rate while acquiring"),
)
"""The columns besides ``block``; units from the name suffix unless given."""


def block_dataset(run: PlanContext) -> RunDataset:
    """The run's ``key_blocks`` dataset (reattached on resume)."""
    return run.dataset(DATASET, setpoints=[SETPOINT], measured=COLUMNS)


def block_row(event: dict[str, Any]) -> dict[str, Any]:
    """A row of ``key_blocks`` from a block's ``qkd`` event (``BlockResult.event()``)."""
    row: dict[str, Any] = {
        "block": int(event["block"]),
        "key_stored": int(event["status"] == "key"),
    }
    for column in COLUMNS[1:]:
        value = event.get(column.name)
        row[column.name] = math.nan if value is None else float(value)
    return row
