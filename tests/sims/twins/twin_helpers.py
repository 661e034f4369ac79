"""Helpers for the twin tests: a quiet, unsaturated world and QBER from Bob's tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.tags import TagBatch
from sims.world import World

# 25 km, no dead time, no tagger clock errors, no drift: count rates stay far below every
# saturation (tagger max rate, dead time) so closed forms hold without corrections.
QUIET_WORLD: dict[str, Any] = {
    "seed": 5,
    "detectors": {"dead_time_ns": 0.0, "afterpulse_probability": 0.0},
    "taggers": {"bob": {"max_rate_hz": 1.0e9}, "alice": {"max_rate_hz": 1.0e9}},
}


def quiet_world(**overrides: Any) -> World:
    """A world with the quiet settings, top-level sections replaced by ``overrides``."""
    return World.from_settings({**QUIET_WORLD, **overrides})


def build(cls: type, name: str, world: Any, **settings: Any) -> Any:
    """Build a twin through from_config, as the station does."""
    spec = InstrumentSpec(name=name, class_path=f"sims.twins:{cls.__name__}", settings=settings)
    context = BuildContext(lab="test", node="twins", clock=world.clock, world=world)
    return cls.from_config(spec, context)


def sifted_errors(world: World, batches: Sequence[TagBatch]) -> tuple[int, int]:
    """(errors, sifted) of Bob's tags against Alice's pattern, using the world's truth.

    Bob's tagger inputs 0..3 are Z0, Z1, X0, X1 and its clock equals true time here, so the
    pulse index of a tag is (t - fiber delay - detector delay) / period, rounded.
    """
    channel = np.concatenate([b.channel for b in batches]).astype(np.int64)
    time_ps = np.concatenate([b.time_ps for b in batches])
    truth = world.truth
    delay = np.asarray(truth.detector_delay_ps, dtype=np.int64)[channel]
    index = np.rint((time_ps - truth.fiber_delay_ps - delay) / truth.period_ps).astype(np.int64)
    pattern = world.alice_pattern(index)
    sift = pattern.basis == channel // 2
    errors = int(np.count_nonzero(pattern.bit[sift] != (channel % 2)[sift]))
    return errors, int(np.count_nonzero(sift))


def binomial_band(p: float, n: int, sigmas: float = 5.0) -> float:
    """Half-width of a ``sigmas`` band on an observed fraction with expectation p over n trials."""
    return sigmas * float(np.sqrt(max(p * (1.0 - p), 1e-12) / n))
