"""The watch dashboard fills its detector and calibration panels from ``tele/`` alone."""

from __future__ import annotations

import json

from labctl.stream.dashboard import DashboardModel
from labctl.stream.topics import Topics


def test_per_channel_rates_and_calibration_ages_fill_their_panels() -> None:
    topics = Topics("lab", "bob")
    model = DashboardModel(topics)

    def tele(instrument: str, quantity: str, value: float) -> None:
        payload = json.dumps({quantity: value}).encode()
        model.apply(f"{topics.base}/tele/{instrument}/{quantity}", payload, now_s=1000.0)

    tele("tagger-bob", "ch1_count_rate_hz", 2.5e5)
    tele("tagger-bob", "ch3_count_rate_hz", 7.0)
    tele("pc-bob", "calibration_age_s", 90.0)
    tele("tagger-bob", "missed_events", 3)
    assert model.detectors == {"tagger-bob ch1": 2.5e5, "tagger-bob ch3": 7.0}
    assert model.calibrated_ts == {"pc-bob": 910.0}
    assert model.bad_messages == 0
