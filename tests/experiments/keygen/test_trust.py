"""The trust gate (calibrations, alarms, per-block verdict) and the monitors' tail bounds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from experiments.keygen.guard import binomial_tail_bound, poisson_tail_bound
from experiments.keygen.trust import REQUIRED_CALIBRATIONS, TrustGate, TrustSettings
from labctl.interfaces.errors import ConfigError
from labctl.store.calibration import Calibration, CalibrationStore


class Sink:
    """Records what the gate emits, as the run's documents would."""

    def __init__(self) -> None:
        self.docs: list[tuple[str, dict[str, Any]]] = []

    def emit(self, stream: str, data: dict[str, Any]) -> None:
        self.docs.append((stream, data))


def _store(tmp_path: Path, valid_s: float = 100.0, skip: str = "") -> CalibrationStore:
    store = CalibrationStore(tmp_path / "calibration.json")
    for kind in REQUIRED_CALIBRATIONS:
        if kind != skip:
            store.save(Calibration("inst", kind, {}, 1.0, 1.0 + valid_s))
    return store


def test_every_calibration_valid_opens_the_gate(tmp_path: Path) -> None:
    sink = Sink()
    gate = TrustGate(sink)
    gate.check_calibrations(_store(tmp_path), now_s=50.0)
    assert gate.standing() == [] and sink.docs == []


@pytest.mark.parametrize(
    ("skip", "now_s", "text"),
    [("switch", 50.0, "switch never passed"), ("", 150.0, "delays expired at 101 s")],
)
def test_missing_or_expired_calibration_raises_the_alarm(
    tmp_path: Path, skip: str, now_s: float, text: str
) -> None:
    sink = Sink()
    gate = TrustGate(sink)
    gate.check_calibrations(_store(tmp_path, skip=skip), now_s=now_s)
    (alarm,) = gate.standing()
    assert alarm.source == "calibration" and text in alarm.message
    stream, data = sink.docs[0]
    assert stream == "alarm" and data["action"] == "raised" and data["key_output"] == "stopped"


def test_failure_in_this_run_holds_until_a_later_pass(tmp_path: Path) -> None:
    store = _store(tmp_path)
    sink = Sink()
    gate = TrustGate(sink)
    gate.calibration_failed("mean_photon_number", "mu 0.7 off by 40 %", 5.0)
    gate.check_calibrations(store, now_s=6.0)
    assert "mean_photon_number failed: mu 0.7 off by 40 %" in gate.standing()[0].message
    store.save(Calibration("laser", "mean_photon_number", {}, 7.0, 100.0))
    gate.check_calibrations(store, now_s=8.0)
    assert gate.standing() == []
    assert [d["action"] for _, d in sink.docs] == ["raised", "cleared"]
    assert gate.alarms[0].raised_s == 6.0 and gate.alarms[0].cleared_s == 8.0


def test_verdict_holds_blocks_that_overlap_an_alarm_or_lack_a_check() -> None:
    gate = TrustGate(Sink())
    for block, (start, checked) in enumerate([(0.0, 0.1), (1.0, 1.1), (2.0, 2.1), (3.0, 3.1)]):
        gate.block_started(block, start)
        gate.block_checked(block, checked)
    gate.block_started(4, 4.0)  # never checked
    gate.set("dark-counts", "too many", now_s=1.1)
    gate.set("dark-counts", None, now_s=2.1)
    assert gate.verdict(0) is None
    assert gate.verdict(1) == "dark-counts: too many"  # raised at its check
    assert gate.verdict(2) == "dark-counts: too many"  # cleared only at its check
    assert gate.verdict(3) is None
    assert gate.verdict(4) == "no monitor check after the block"
    gate.set("qber-high", "25 %", now_s=3.5)
    assert gate.verdict(3) == "qber-high: 25 %"  # a standing alarm holds every block
    gate.set("qber-high", None, now_s=3.6)
    assert gate.verdict(3) is None  # a per-block alarm cleared on the block's own QBER
    assert gate.verdict(2, frozenset({"dark-counts"})) is None
    summary = gate.summary()
    assert summary["key_output"] == "open" and summary["held_blocks"] == 3
    assert summary["alarms"][0] == {
        "source": "dark-counts",
        "message": "too many",
        "raised_s": 1.1,
        "cleared_s": 2.1,
    }


def test_an_alarm_is_raised_once_per_episode() -> None:
    sink = Sink()
    gate = TrustGate(sink)
    for t in (1.0, 2.0, 3.0):
        gate.set("detector-current", "light", t)
    assert len(sink.docs) == 1 and len(gate.alarms) == 1


def test_chernoff_bounds_hold_against_exact_tails() -> None:
    n, q = 400, 0.05
    for k in (30, 40, 60):  # upper tail: P(E >= k)
        exact = sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(k, n + 1))
        assert exact <= binomial_tail_bound(k, n, q)
    for k in (0, 5, 10):  # lower tail: P(E <= k)
        exact = sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(k + 1))
        assert exact <= binomial_tail_bound(k, n, q)
    lam = 20.0
    for k in (0, 3, 8):
        exact = sum(math.exp(-lam) * lam**i / math.factorial(i) for i in range(k + 1))
        assert exact <= poisson_tail_bound(k, lam)
    for k in (35, 50):
        exact = 1.0 - sum(math.exp(-lam) * lam**i / math.factorial(i) for i in range(k))
        assert exact <= poisson_tail_bound(k, lam)
    assert poisson_tail_bound(0, lam) == pytest.approx(math.exp(-lam))  # exact at zero


@pytest.mark.parametrize(
    ("section", "text"),
    [
        ({"alpha": 0}, "trust.alpha"),
        ({"check_probability": 1.5}, "trust.check_probability"),
        ({"require": "detectors"}, "trust.require"),
        ({"dark_integration": 1}, "unknown key"),
        ({"click_rate_factor": 0.5}, "trust.click_rate_factor"),
    ],
)
def test_bad_trust_settings_name_the_key(section: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        TrustSettings.from_section(section, file="station.yaml")
