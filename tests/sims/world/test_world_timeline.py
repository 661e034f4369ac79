"""Reproducibility, the pulse pattern, the shared clock and scheduled changes."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable

import numpy as np

from labctl.interfaces import BuildContext, InstrumentSpec
from sims.clock import VirtualClock
from sims.world import World
from sims.world.polarization import FiberPolarization
from sims.world.settings import FiberSettings
from tests.sims.world.world_helpers import QUIET, collect, merged, quiet_world

NOISY = {"detectors": {"dark_count_rate_hz": 1e5, "jitter_fwhm_ps": 40.0, "dead_time_ns": 30.0}}


def _tags(seed: int) -> tuple[np.ndarray, np.ndarray]:
    world = quiet_world(seed=seed, **NOISY)
    channel, time_ps, _, _ = collect(world, "bob", 0.003)
    return channel, time_ps


def test_same_seed_gives_identical_tags_and_another_seed_does_not() -> None:
    a, b, c = _tags(5), _tags(5), _tags(6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1].size != c[1].size or not np.array_equal(a[1], c[1])


def test_any_pulse_pattern_is_recomputable() -> None:
    world = quiet_world(seed=9)
    other = quiet_world(seed=9)
    block = world.alice_pattern(np.arange(1_000_000, 1_000_500))
    picked = np.array([1_000_007, 1_000_499, 1_000_123])
    again = other.alice_pattern(picked)
    np.testing.assert_array_equal(again.basis, block.basis[picked - 1_000_000])
    np.testing.assert_array_equal(again.bit, block.bit[picked - 1_000_000])
    far = 3_600 * 10**9  # a pulse one hour into a 1 GHz run costs nothing to recompute
    assert world.alice_pattern([far]).basis.shape == (1,)


def test_pattern_statistics_match_the_configured_probabilities() -> None:
    world = World.from_settings(
        {
            "source": {
                "basis_z_probability": 0.9,
                "intensities": {
                    "signal": {"mu": 0.5, "probability": 0.7},
                    "decoy": {"mu": 0.1, "probability": 0.2},
                    "vacuum": {"mu": 0.0, "probability": 0.1},
                },
            }
        }
    )
    n = 1_000_000
    pattern = world.alice_pattern(np.arange(n))
    for observed, p in (
        (np.mean(pattern.basis == 0), 0.9),
        (np.mean(pattern.bit == 1), 0.5),
        (np.mean(pattern.intensity == 0), 0.7),
        (np.mean(pattern.intensity == 1), 0.2),
        (np.mean(pattern.intensity == 2), 0.1),
    ):
        assert abs(observed - p) <= 5.0 * math.sqrt(p * (1 - p) / n)
    # Basis and bit are independent of the class.
    signal = pattern.intensity == 0
    assert abs(np.mean(pattern.basis[signal] == 0) - 0.9) < 0.003


def test_reading_tags_advances_the_clock_and_wakes_sleepers_in_order() -> None:
    async def scenario() -> list[tuple[str, float]]:
        world = quiet_world()
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, duration_s: float) -> None:
            await world.clock.sleep(duration_s)
            woke.append((name, world.clock.now_s()))

        tasks = [asyncio.create_task(sleeper(n, d)) for n, d in (("late", 0.03), ("early", 0.01))]
        await asyncio.sleep(0)
        world.start_stream("bob")
        while world.clock.now_s() < 0.05:
            world.read_batch("bob")
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return woke

    woke = asyncio.run(scenario())
    assert [name for name, _ in woke] == ["early", "late"]
    assert woke[0][1] >= 0.01 and woke[1][1] >= 0.03


def test_a_timer_takes_effect_at_its_sim_time() -> None:
    world = quiet_world()
    latch_at_s = 0.0123
    world.clock.call_at(latch_at_s, lambda: world.latch_detector(0))
    channel, time_ps, _, _ = collect(world, "bob", 0.03)
    latch_ps = latch_at_s * 1e12
    z0 = time_ps[channel == 0]
    assert z0.max() < latch_ps + world.period_ps  # nothing after the latch
    assert z0.max() > latch_ps - 10 * world.period_ps * 100  # and it clicked right up to it
    assert np.count_nonzero((channel == 1) & (time_ps > latch_ps)) > 0


def test_polarization_drift_is_a_diffusion_on_the_sphere() -> None:
    # For rotational diffusion with per-component variance D^2 dt: E[s(t).s(0)] = exp(-D^2 t).
    drift, t_s, walkers = 1.0, 0.7, 300
    dots = []
    for seed in range(walkers):
        fiber = FiberPolarization(
            FiberSettings(drift_rad_per_sqrt_s=drift, drift_step_s=0.01), seed
        )
        fiber.advance_to(t_s)
        dots.append(fiber.matrix[0, 0])  # s1 . R s1
    mean = float(np.mean(dots))
    expected = math.exp(-(drift**2) * t_s)
    assert abs(mean - expected) <= 5.0 * np.std(dots) / math.sqrt(walkers)


def test_world_from_config_uses_the_station_clock_and_names_the_file() -> None:
    clock = VirtualClock()
    spec = InstrumentSpec(name="world", class_path="sims.world:World", settings=dict(QUIET))
    world = World.from_config(spec, BuildContext(lab="lab", node="alice", clock=clock))
    assert world.clock is clock
    bad = InstrumentSpec(
        name="world",
        class_path="sims.world:World",
        settings=merged(QUIET, {"fiber": {"lenght_km": 3}}),
    )
    from labctl.interfaces import ConfigError
    from labctl.interfaces.build import Source

    bad_with_source = InstrumentSpec(
        name=bad.name,
        class_path=bad.class_path,
        settings=bad.settings,
        source=Source(file="sim.yaml", line=12),
    )
    try:
        World.from_config(bad_with_source, BuildContext(lab="lab", node="alice"))
    except ConfigError as error:
        text = str(error)
        assert "sim.yaml:12" in text and "world.settings.fiber.lenght_km" in text
        assert "length_km" in text
    else:
        raise AssertionError("a misspelt key was accepted")


def test_snapshot_is_json_and_truth_is_separate() -> None:
    world = quiet_world()
    world.set_pc_voltages_mv([100.0, -200.0, 0.0, 50.0])
    snapshot = world.snapshot()
    json.dumps(snapshot)
    assert snapshot["pc_voltages_mv"] == [100.0, -200.0, 0.0, 50.0]
    assert "fiber_delay_ps" not in json.dumps(snapshot)
    truth = world.truth
    assert truth.fiber_delay_ps == 0 and truth.period_ps == 10_000


def test_bad_mutator_arguments_name_the_argument() -> None:
    world = quiet_world()
    checks: list[tuple[Callable[[], object], str]] = [
        (lambda: world.set_switch_port(9), "port 9"),
        (lambda: world.set_pc_voltages_mv([0.0, 0.0, 0.0]), "expected 4 voltages"),
        (lambda: world.set_pc_voltages_mv([9000.0, 0.0, 0.0, 0.0]), "9000.0 mV on axis 0"),
        (lambda: world.latch_detector(4), "detector index 4"),
        (lambda: world.set_eve_fraction(1.5), "fraction"),
        (lambda: world.read_batch("bob"), "not streaming"),
        (lambda: world.start_stream("eve"), "unknown tagger side"),
        (lambda: world.set_tagger_channel_delay_ps("bob", 7, 0), "channel 7"),
        (lambda: world.detector_count_rates_hz(-1.0), "integration_s"),
    ]
    for call, words in checks:
        try:
            call()
        except (ValueError, RuntimeError) as error:
            assert words in str(error), (words, str(error))
        else:
            raise AssertionError(f"no error for {words}")


def test_event_codes_agree_with_the_published_pattern() -> None:
    world = quiet_world(
        seed=3,
        source={
            "basis_z_probability": 0.7,
            "intensities": {
                "signal": {"mu": 0.5, "probability": 0.6},
                "decoy": {"mu": 0.1, "probability": 0.25},
                "vacuum": {"mu": 0.0, "probability": 0.15},
            },
        },
    )
    index = np.arange(5_000_000, 5_200_000, dtype=np.int64)
    pattern = world.alice_pattern(index)
    code = world.optics.source.codes(index)
    np.testing.assert_array_equal(code >> 2, pattern.intensity)
    np.testing.assert_array_equal((code >> 1) & 1, pattern.basis)
    np.testing.assert_array_equal(code & 1, pattern.bit)


def test_a_long_sleeper_does_not_overtake_a_task_reading_tags() -> None:
    async def scenario() -> tuple[bool, float, float]:
        world = quiet_world(taggers={"bob": {"buffer_s": 0.005}}, slice_max_s=0.001)
        woke_at: list[float] = []

        async def heartbeat() -> None:
            await world.clock.sleep(0.05)  # would jump the clock 50 ms if nobody drove it
            woke_at.append(world.clock.now_s())

        task = asyncio.create_task(heartbeat())
        world.start_stream("bob")
        overflow = False
        while world.clock.now_s() < 0.08:
            batch = world.read_batch("bob")
            overflow |= batch.overflow
            await asyncio.sleep(0)
        await task
        return overflow, woke_at[0], world.clock.now_s()

    overflow, woke_s, end_s = asyncio.run(scenario())
    assert not overflow  # the reader kept up: no data lost to a clock jump
    assert 0.05 <= woke_s <= 0.052  # the sleeper woke as reading carried time past 50 ms
    assert end_s >= 0.08
