"""The tagger twin's health reports each channel's count rate over the tags it streamed."""

from __future__ import annotations

import numpy as np

from sims.twins import SimDetector, SimLaser, SimTimeTagger
from tests.sims.twins.twin_helpers import build, quiet_world


async def test_health_rates_are_the_streamed_tags_over_their_span() -> None:
    world = quiet_world()
    laser = build(SimLaser, "laser", world)
    detector = build(SimDetector, "det", world)
    tagger = build(SimTimeTagger, "tagger-bob", world)
    async with laser, detector, tagger:
        await laser.set_output(True)
        for ch in range(detector.n_channels):
            await detector.set_enabled(ch, True)
        idle = (await tagger.health()).readings
        assert not any(k.endswith("_count_rate_hz") for k in idle)  # nothing streamed yet
        await tagger.start_stream()
        batches = [await tagger.read_batch(5.0) for _ in range(3)]
        readings = (await tagger.health()).readings
        again = (await tagger.health()).readings
        await tagger.stop_stream()
    counts = np.bincount(np.concatenate([b.channel for b in batches]), minlength=8)
    span_s = sum(b.stop_ps - b.start_ps for b in batches) * 1e-12
    for ch in range(tagger.n_channels):
        assert readings[f"ch{ch}_count_rate_hz"] == counts[ch] / span_s
    assert max(readings[f"ch{ch}_count_rate_hz"] for ch in range(4)) > 1e4  # light arrives
    # Each reading covers the tags since the one before: none streamed since, none given.
    assert not any(k.endswith("_count_rate_hz") for k in again)
