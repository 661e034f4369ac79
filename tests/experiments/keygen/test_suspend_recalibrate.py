"""The QBER suspender on the twins: a polarization drift jump raises the QBER during key
generation -> the QBER suspender suspends the run -> polarization calibration as remedy ->
resume, and key generation continues with the QBER back under the limit."""

from __future__ import annotations

import json
from pathlib import Path

from labctl.store.events import read_events
from tests.experiments.keygen.keygen_helpers import run_keygen, store_rows, write_config

LIMIT = 0.05


async def test_drift_jump_suspends_recalibrates_and_resumes(tmp_path: Path) -> None:
    # A 0.6 rad jump about the circular axis rotates both bases: QBER ~ sin^2(0.3) = 8.7 %.
    jump = [{"kind": "drift_jump", "at_s": 1.5, "angle_rad": 0.6, "axis": [0.0, 0.0, 1.0]}]
    config = write_config(
        tmp_path,
        qkd={"suspend_qber": LIMIT, "suspend_settle_s": 0.5},
        faults=jump,
    )
    result = await run_keygen(config, duration_s=7.5)
    # The blocks between the jump and the remedy give no key: too many for an ok run.
    assert result.status == "degraded", result.reason
    assert "gave key, below min_key_share 90 %" in result.reason
    events = read_events(result.path / "events.jsonl")
    runner = [e["data"] for e in events if e.get("stream") == "runner"]
    actions = [d["action"] for d in runner]
    assert "suspended" in actions and "unsuspended" in actions, actions
    suspended = actions.index("suspended")
    assert runner[suspended]["suspender"] == "qber" and "QBER" in runner[suspended]["reason"]
    assert actions.index("remedy-done") < actions.index("unsuspended")
    # The remedy is the polarization calibration; the runner retries it (within the
    # suspender's failure budget) until one passes, and only then resumes.
    cal = [e["data"] for e in events if e.get("stream") == "calibration"]
    assert {c["routine"] for c in cal} == {"polarization"} and cal[-1]["passed"]
    assert actions.count("remedy-failed") == sum(not c["passed"] for c in cal) < 3
    # Blocks: good before the jump, above the limit after it, good again after the remedy.
    order = [(e["seq"], e["data"]) for e in events if e.get("stream") == "qkd"]
    unsuspended_seq = next(
        e["seq"] for e in events if e.get("data", {}).get("action") == "unsuspended"
    )
    qber = [(seq, max(d["qber_z"], d["qber_x"]), d) for seq, d in order]
    assert qber[0][1] < 0.03
    assert any(q > LIMIT for _, q, _ in qber), [q for _, q, _ in qber]
    after = [(q, d) for seq, q, d in qber if seq > unsuspended_seq and d["block"] > 2]
    late = [(q, d) for q, d in after if d["block"] >= max(dd["block"] for _, dd in after) - 1]
    assert late and all(q < 0.03 and d["status"] == "key" for q, d in late), after
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["status"] == "degraded" and summary["secret_bits"] > 0
    alice = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    assert alice == store_rows(tmp_path / "runs" / "keys-bob.sqlite") and alice
