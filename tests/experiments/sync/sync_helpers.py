"""A simulated link for sync tests: a world, Alice's laser, transmitter and tagger, Bob's tagger."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from experiments.sync.alice import SourceDesign, TransmitterAlice
from sims.twins import SimLaser, SimTimeTagger, SimTransmitter
from sims.world import World


async def link(settings: dict[str, Any]) -> tuple[World, SimLaser, SimTimeTagger]:
    """A world from ``settings`` with the laser on and Bob's tagger connected."""
    world = World.from_settings(settings)
    laser = SimLaser("laser", world)
    tagger = SimTimeTagger("tagger-bob", world, side="bob")
    await laser.connect()
    await tagger.connect()
    await laser.set_output(True)
    await world_alice(world)
    return world, laser, tagger


def true_bob_time_ps(world: World, index: np.ndarray) -> np.ndarray:
    """Bob-clock arrival of Alice's pulses without jitter (tests only: reads world.truth)."""
    truth = world.truth
    true_ps = index * truth.period_ps + truth.fiber_delay_ps
    stretch = np.rint(true_ps * truth.bob_frequency_offset_ppm * 1e-6)
    tagger = world.settings.bob_tagger
    wander = tagger.wander_amplitude_ps * np.sin(
        2.0 * np.pi * true_ps * 1e-12 / tagger.wander_period_s
    )
    return (true_ps + truth.bob_offset_ps + stretch + np.rint(wander)).astype(np.float64)


_ALICE: weakref.WeakKeyDictionary[World, TransmitterAlice] = weakref.WeakKeyDictionary()


def design_of(world: World) -> SourceDesign:
    """Alice's design as the world's source is built (the station's ``alice:`` section)."""
    source = world.settings.source
    return SourceDesign(
        period_ps=int(world.period_ps),
        intensity_names=tuple(c.name for c in source.intensities),
        intensity_mu=tuple(float(c.mu) for c in source.intensities),
        intensity_probability=tuple(float(c.probability) for c in source.intensities),
        basis_z_probability=float(source.basis_z_probability),
        nominal_power_mw=float(source.nominal_power_mw),
        frame_channel=int(world.settings.alice_tagger.frame_channel),
    )


async def world_alice(world: World) -> TransmitterAlice:
    """Alice's node on a transmitter twin and her tagger twin (one per world), light on."""
    found = _ALICE.get(world)
    if found is not None:
        return found
    transmitter = SimTransmitter("transmitter", world)
    alice_tagger = SimTimeTagger("tagger-alice", world, side="alice")
    await transmitter.connect()
    await alice_tagger.connect()
    alice = TransmitterAlice(design_of(world), transmitter, alice_tagger)
    await alice.ensure_light()
    _ALICE[world] = alice
    return alice
