"""summary.json: the key rate over run time and over acquisition time, and ``degraded``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from experiments.keygen.summary import KeySummary
from labctl.link.node_base import BlockResult


def _block(i: int, keyed: bool) -> BlockResult:
    return BlockResult(
        block=i, status="key" if keyed else "no-key", reason="stored" if keyed else "bounds",
        pulses=100_000_000, detections=1000, sifted_bits=500, key_basis_bits=250,
        test_basis_bits=250, qber_z=0.02, qber_x=0.02, disclosed_bits=40, ec_efficiency=1.1,
        round_trips=10, channel_uses=20, secret_bits=4000 if keyed else 0,
        key_id=f"{i:08d}-0000-0000-0000-000000000000" if keyed else None, acquired_s=0.1,
    )  # fmt: skip


def _summary(keyed: int, unkeyed: int, **kw: object) -> KeySummary:
    summary = KeySummary("run-1", 1e9, **kw)  # type: ignore[arg-type]
    for i in range(keyed + unkeyed):
        summary.add(_block(i, i < keyed))
    return summary


def test_rate_over_run_time_and_over_acquisition_are_named_apart() -> None:
    # 20 blocks of 0.1 s acquisition, one every 10 s: 200 s of run, 2 s acquiring.
    totals = _summary(20, 0, run_time_s=200.0, clock="simulated").totals()
    assert totals["secret_bits"] == 80_000
    assert totals["secret_key_rate_bps"] == pytest.approx(80_000 / 200.0)  # 400 bit/s
    assert totals["secret_key_rate_acquisition_bps"] == pytest.approx(80_000 / 2.0)
    assert totals["run_time_s"] == 200.0 and totals["clock"] == "simulated"
    assert totals["status"] == "ok" and totals["key_block_share"] == 1.0


def test_too_few_blocks_with_key_is_degraded_with_the_reason() -> None:
    summary = _summary(17, 3)  # 85 % < 90 %
    totals = summary.totals()
    assert totals["status"] == "degraded"
    assert "17 of 20 blocks (85.0 %)" in totals["reason"] and "90 %" in totals["reason"]
    # The plan's own status stays ok: only the verdict (and summary.json) says degraded.
    assert summary.status == "ok"
    assert "key generation degraded: 17/20 blocks" in summary.text()
    assert _summary(18, 2).totals()["status"] == "ok"  # exactly 90 %
    assert _summary(17, 3, min_key_share=0.8).totals()["status"] == "ok"


def test_an_aborted_run_stays_aborted() -> None:
    summary = replace(_summary(1, 9), status="aborted", reason="operator")
    assert summary.totals()["status"] == "aborted" and summary.totals()["reason"] == "operator"


def test_min_key_share_is_checked() -> None:
    with pytest.raises(ValueError, match="min_key_share"):
        KeySummary("run-1", 1e9, min_key_share=1.5)


def test_write_reads_run_time_from_the_run_folder(tmp_path: Path) -> None:
    events = [
        {"kind": "start", "run_id": "r", "seq": 0, "ts": 100.0, "stream": "primary",
         "data": {"clock": {"virtual": True, "start_s": 100.0}}},
        {"kind": "event", "run_id": "r", "seq": 1, "ts": 160.0, "stream": "qkd", "data": {}},
        {"kind": "event", "run_id": "r", "seq": 2, "ts": 300.0, "stream": "qkd", "data": {}},
    ]  # fmt: skip
    lines = "".join(json.dumps(e) + "\n" for e in events)
    (tmp_path / "events.jsonl").write_text(lines + '{"kind": "ev')  # torn last line
    summary = _summary(20, 0)
    written = json.loads(summary.write(tmp_path).read_text())
    assert written["run_time_s"] == 200.0 and written["clock"] == "simulated"
    assert written["secret_key_rate_bps"] == pytest.approx(400.0)
