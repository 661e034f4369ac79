"""TimeTagger conformance: delays, streaming semantics, TagBatch dtypes and order, rates."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from labctl.interfaces import TagBatch
from tests.conformance.conformance_checks import contains_number, expect_refusal

MAX_BATCHES = 50  # enough for some tags at any sane rate; bounds the test


async def _read_some(tagger: Any, n_tags: int) -> list[TagBatch]:
    """Read batches until at least ``n_tags`` tags arrived (bounded by MAX_BATCHES)."""
    batches: list[TagBatch] = []
    total = 0
    for _ in range(MAX_BATCHES):
        batch = await tagger.read_batch(timeout_s=5.0)
        batches.append(batch)
        total += len(batch)
        if total >= n_tags:
            break
    assert total >= n_tags, f"only {total} tags in {len(batches)} batches"
    return batches


async def test_channel_delay_round_trip_in_ps(time_tagger: Any) -> None:
    assert time_tagger.n_channels >= 1
    assert time_tagger.resolution_ps >= 1
    last = time_tagger.n_channels - 1
    await time_tagger.set_channel_delay_ps(last, 12_000)
    assert await time_tagger.get_channel_delay_ps(last) == 12_000
    assert contains_number(await time_tagger.snapshot(), 12_000, 0)
    await time_tagger.set_channel_delay_ps(last, 0)
    assert await time_tagger.get_channel_delay_ps(last) == 0


async def test_bad_channel_is_refused(time_tagger: Any) -> None:
    await expect_refusal(time_tagger, time_tagger.set_channel_delay_ps(time_tagger.n_channels, 0))
    await expect_refusal(time_tagger, time_tagger.get_channel_delay_ps(-1))


async def test_batches_are_typed_sorted_and_contiguous(time_tagger: Any) -> None:
    await time_tagger.start_stream()
    batches = await _read_some(time_tagger, 100)
    await time_tagger.stop_stream()
    for batch in batches:
        assert isinstance(batch, TagBatch)
        assert batch.channel.dtype == np.uint8 and batch.time_ps.dtype == np.int64
        assert np.all(np.diff(batch.time_ps) >= 0), "tags must be sorted"
        assert np.all(batch.channel < time_tagger.n_channels)
        if len(batch):
            assert batch.start_ps <= batch.time_ps[0] and batch.time_ps[-1] < batch.stop_ps
    for before, after in itertools.pairwise(batches):
        if not after.overflow:
            assert after.start_ps == before.stop_ps, "batches must tile time without gaps"
        else:
            assert after.start_ps >= before.stop_ps


async def test_restart_does_not_replay_old_tags(time_tagger: Any) -> None:
    await time_tagger.start_stream()
    first = await _read_some(time_tagger, 1)
    await time_tagger.stop_stream()
    await time_tagger.start_stream()
    second = await time_tagger.read_batch(timeout_s=5.0)
    await time_tagger.stop_stream()
    assert second.start_ps >= first[-1].stop_ps


async def test_count_rates_per_channel(time_tagger: Any) -> None:
    rates = await time_tagger.get_count_rates_hz(0.01)
    assert len(rates) == time_tagger.n_channels
    assert all(isinstance(r, float) and r >= 0.0 and math.isfinite(r) for r in rates)
    assert sum(rates) > 0.0, "a tagger that sees light counts something"
    await expect_refusal(time_tagger, time_tagger.get_count_rates_hz(-1.0))
