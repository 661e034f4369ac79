"""The world's settings: one frozen dataclass per section, units in every name.

Defaults describe a 1550 nm link over 25 km of SMF-28 with SNSPD-class detectors. See
sims/world/API.md for the YAML layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sims.world.validate import Where, as_mapping, bounds, check_keys, parse_section

DETECTOR_NAMES: tuple[str, ...] = ("Z0", "Z1", "X0", "X1")
"""Bob's four detectors in index order: basis Z bit 0/1, basis X bit 0/1."""


@dataclass(frozen=True, slots=True)
class IntensityClass:
    """One intensity class of Alice's source: mean photon number and how often it is sent."""

    name: str
    mu: float
    probability: float


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """Alice's pulsed source and laser."""

    rate_hz: float = field(default=1.0e9, metadata=bounds(0.0, 1.0e12, lo_open=True))
    nominal_power_mw: float = field(default=1.0, metadata=bounds(0.0, lo_open=True))
    wavelength_nm: float = field(default=1550.0, metadata=bounds(0.0, lo_open=True))
    basis_z_probability: float = field(default=0.5, metadata=bounds(0.0, 1.0))
    intensities: tuple[IntensityClass, ...] = (
        IntensityClass("signal", 0.5, 0.8),
        IntensityClass("decoy", 0.1, 0.1),
        IntensityClass("vacuum", 0.0, 0.1),
    )

    @property
    def period_ps(self) -> int:
        """Pulse period in whole picoseconds."""
        return round(1.0e12 / self.rate_hz)


@dataclass(frozen=True, slots=True)
class FiberSettings:
    """The quantum channel between Alice and Bob."""

    length_km: float = field(default=25.0, metadata=bounds(0.0, 1000.0))
    loss_db_per_km: float = field(default=0.2, metadata=bounds(0.0, 10.0))
    group_index: float = field(default=1.4682, metadata=bounds(1.0, 2.0))
    drift_rad_per_sqrt_s: float = field(default=0.0, metadata=bounds(0.0))
    drift_step_s: float = field(default=0.001, metadata=bounds(1.0e-6, 10.0))
    initial_rotation_rad: tuple[float, ...] = field(
        default=(0.0, 0.0, 0.0), metadata=bounds(length=3)
    )


@dataclass(frozen=True, slots=True)
class EveSettings:
    """The eavesdropper: intercept-resend on a fraction of pulses, detector blinding."""

    intercept_resend_fraction: float = field(default=0.0, metadata=bounds(0.0, 1.0))
    blinding: bool = False
    blinding_detection_efficiency: float = field(default=1.0, metadata=bounds(0.0, 1.0))
    blinding_power_uw: float = field(default=1.0, metadata=bounds(0.0, 1.0e6))
    """Eve's CW blinding light entering Bob's switch (sims/world/blinding.py)."""
    blinding_trigger_margin: float = field(default=1.5, metadata=bounds(0.0, 100.0, lo_open=True))
    """Trigger energy at the matched detector over its threshold, through Bob's nominal path."""


@dataclass(frozen=True, slots=True)
class SwitchSettings:
    """The 1xN optical switch in front of Bob's receiver."""

    n_ports: int = field(default=4, metadata=bounds(1, 64))
    bob_port: int = field(default=1, metadata=bounds(1, 64))
    parking_port: int = field(default=4, metadata=bounds(1, 64))
    initial_port: int = field(default=1, metadata=bounds(1, 64))
    insertion_loss_db: float = field(default=0.7, metadata=bounds(0.0, 60.0))
    crosstalk_db: float = field(default=-50.0, metadata=bounds(-200.0, 0.0))


@dataclass(frozen=True, slots=True)
class PolarizationControllerSettings:
    """Bob's EPC-400 style controller: four squeezers, axes alternating 0 and 45 degrees."""

    v_pi_mv: float = field(default=2000.0, metadata=bounds(0.0, lo_open=True))
    voltage_range_mv: tuple[float, ...] = field(
        default=(-5000.0, 5000.0), metadata=bounds(length=2)
    )
    offset_rad: tuple[float, ...] = field(default=(0.0, 0.0, 0.0, 0.0), metadata=bounds(length=4))
    initial_voltages_mv: tuple[float, ...] = field(
        default=(0.0, 0.0, 0.0, 0.0), metadata=bounds(length=4)
    )


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    """Bob's passive basis choice, polarizing beam splitters and optics loss."""

    basis_z_probability: float = field(default=0.5, metadata=bounds(0.0, 1.0))
    misalignment: float = field(default=0.01, metadata=bounds(0.0, 0.5))
    optical_loss_db: float = field(default=1.0, metadata=bounds(0.0, 60.0))


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """One single-photon detector (SNSPD-class defaults)."""

    efficiency: float = field(default=0.8, metadata=bounds(0.0, 1.0))
    dark_count_rate_hz: float = field(default=100.0, metadata=bounds(0.0))
    dark_count_probability_per_pulse: float | None = field(
        default=None, metadata=bounds(0.0, 1.0, hi_open=True)
    )
    dead_time_ns: float = field(default=50.0, metadata=bounds(0.0, 1.0e6))
    afterpulse_probability: float = field(default=0.0, metadata=bounds(0.0, 1.0, hi_open=True))
    afterpulse_decay_ns: float = field(default=100.0, metadata=bounds(0.0, 1.0e9, lo_open=True))
    jitter_fwhm_ps: float = field(default=30.0, metadata=bounds(0.0, 1.0e6))
    delay_ps: int = field(default=0, metadata=bounds(0, 1_000_000_000))
    blinding_threshold_nw: float = field(default=10.0, metadata=bounds(0.0, 1.0e9, lo_open=True))
    """CW power above which the detector stops counting photons (linear mode)."""
    photocurrent_a_per_w: float = field(default=1.0, metadata=bounds(0.0, 100.0))
    """Bias-line current per watt of light on the detector (the current reading)."""

    def dark_rate_hz(self, pulse_rate_hz: float) -> float:
        """Free-running dark count rate, from whichever of the two settings was given."""
        if self.dark_count_probability_per_pulse is not None:
            return self.dark_count_probability_per_pulse * pulse_rate_hz
        return self.dark_count_rate_hz


@dataclass(frozen=True, slots=True)
class TaggerSettings:
    """One time tagger: its clock relative to true time, resolution, delays, limits."""

    offset_ps: int = field(default=0, metadata=bounds(-(2**50), 2**50))
    frequency_offset_ppm: float = field(default=0.0, metadata=bounds(-1000.0, 1000.0))
    wander_amplitude_ps: float = field(default=0.0, metadata=bounds(0.0, 1.0e9))
    wander_period_s: float = field(default=60.0, metadata=bounds(0.0, lo_open=True))
    resolution_ps: int = field(default=1, metadata=bounds(1, 1_000_000))
    n_channels: int = field(default=4, metadata=bounds(1, 64))
    channel_delays_ps: tuple[int, ...] = ()
    max_rate_hz: float = field(default=1.0e8, metadata=bounds(0.0, lo_open=True))
    buffer_s: float = field(default=1.0, metadata=bounds(0.0, lo_open=True))
    sync_channel: int = field(default=0, metadata=bounds(0, 63))
    sync_divider: int = field(default=1000, metadata=bounds(1))
    frame_channel: int = field(default=1, metadata=bounds(0, 63))
    """Alice's tagger input of the transmitter's frame marker (first pulse of a pattern)."""
    detector_channels: tuple[int, ...] = field(default=(0, 1, 2, 3), metadata=bounds(length=4))


@dataclass(frozen=True, slots=True)
class WorldSettings:
    """Everything the world needs, validated."""

    seed: int = field(default=1, metadata=bounds(0, 2**63 - 1))
    slice_max_s: float = field(default=0.1, metadata=bounds(1.0e-6, 1.0))
    slice_target_events: int = field(default=200_000, metadata=bounds(100, 100_000_000))
    tune_allocator: bool = True
    compiled_kernels: bool = True  # numba loops when installed; same physics either way
    source: SourceSettings = SourceSettings()
    fiber: FiberSettings = FiberSettings()
    eve: EveSettings = EveSettings()
    switch: SwitchSettings = SwitchSettings()
    polarization_controller: PolarizationControllerSettings = PolarizationControllerSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    detectors: tuple[DetectorSettings, ...] = (DetectorSettings(),) * 4
    alice_tagger: TaggerSettings = TaggerSettings()
    bob_tagger: TaggerSettings = TaggerSettings()


def _parse_intensities(raw: Any, where: Where) -> tuple[IntensityClass, ...]:
    mapping = as_mapping(raw, where)
    if not mapping:
        raise where.error("at least one intensity class is needed")
    classes = []
    for name, entry in mapping.items():
        here = where.child(str(name))
        item = as_mapping(entry, here)
        check_keys(item, ["mu", "probability"], here)
        for key in ("mu", "probability"):
            if key not in item:
                raise here.child(key).error("missing")
        mu, prob = item["mu"], item["probability"]
        for key, value in (("mu", mu), ("probability", prob)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise here.child(key).error(f"expected a number >= 0, got {value!r}")
        classes.append(IntensityClass(str(name), float(mu), float(prob)))
    total = sum(c.probability for c in classes)
    if abs(total - 1.0) > 1e-9:
        raise where.error(f"probabilities must sum to 1, got {total}")
    if len(classes) > 255:
        raise where.error("at most 255 intensity classes")
    return tuple(classes)


def _parse_source(raw: Any, where: Where) -> SourceSettings:
    mapping = dict(as_mapping(raw, where))
    intensities = SourceSettings().intensities
    if "intensities" in mapping:
        intensities = _parse_intensities(mapping.pop("intensities"), where.child("intensities"))
    source = parse_section(SourceSettings, mapping, where, intensities=intensities)
    exact_period_ps = 1.0e12 / source.rate_hz
    if abs(exact_period_ps - round(exact_period_ps)) > 1e-6 * exact_period_ps:
        raise where.child("rate_hz").error(
            f"the pulse period 1e12/rate_hz = {exact_period_ps} ps must be a whole number of ps"
        )
    return source


def _parse_detectors(raw: Any, where: Where) -> tuple[DetectorSettings, ...]:
    mapping = dict(as_mapping(raw, where))
    overrides = as_mapping(mapping.pop("overrides", None), where.child("overrides"))
    check_keys(overrides, list(DETECTOR_NAMES), where.child("overrides"))
    base = parse_section(DetectorSettings, mapping, where)
    result = []
    for name in DETECTOR_NAMES:
        here = where.child("overrides").child(name)
        changes = parse_section(DetectorSettings, overrides.get(name), here)
        given = as_mapping(overrides.get(name), here)
        result.append(dataclasses.replace(base, **{k: getattr(changes, k) for k in given}))
    return tuple(result)


def _parse_tagger(raw: Any, where: Where, side: str) -> TaggerSettings:
    mapping = dict(as_mapping(raw, where))
    side_only = ("detector_channels",) if side == "alice" else ("sync_divider", "frame_channel")
    for key in side_only:
        if key in mapping:
            raise where.child(key).error(f"not a setting of {side}'s tagger")
    tagger = parse_section(TaggerSettings, mapping, where)
    delays = tagger.channel_delays_ps or (0,) * tagger.n_channels
    if len(delays) != tagger.n_channels:
        raise where.child("channel_delays_ps").error(
            f"expected {tagger.n_channels} values (n_channels), got {len(delays)}"
        )
    used = (
        (tagger.sync_channel, tagger.frame_channel) if side == "alice" else tagger.detector_channels
    )
    if side == "alice" and tagger.sync_channel == tagger.frame_channel:
        raise where.child("frame_channel").error("the sync and frame markers share a channel")
    for channel in used:
        if not 0 <= channel < tagger.n_channels:
            raise where.error(f"channel {channel} outside 0..{tagger.n_channels - 1}")
    if side == "bob" and len(set(used)) != len(used):
        raise where.child("detector_channels").error("two detectors wired to one channel")
    return dataclasses.replace(tagger, channel_delays_ps=delays)


def _parse_taggers(raw: Any, where: Where) -> tuple[TaggerSettings, TaggerSettings]:
    mapping = as_mapping(raw, where)
    check_keys(mapping, ["alice", "bob"], where)
    return (
        _parse_tagger(mapping.get("alice"), where.child("alice"), "alice"),
        _parse_tagger(mapping.get("bob"), where.child("bob"), "bob"),
    )


def parse_world_settings(
    raw: Mapping[str, Any] | None, where: Where | None = None
) -> WorldSettings:
    """Validate the ``world: settings:`` mapping; ConfigError names the offending key."""
    where = where or Where()
    mapping = dict(as_mapping(raw, where))
    check_keys(
        mapping,
        [
            "seed",
            "slice_max_s",
            "slice_target_events",
            "tune_allocator",
            "compiled_kernels",
            "source",
            "fiber",
            "eve",
            "switch",
            "polarization_controller",
            "receiver",
            "detectors",
            "taggers",
        ],
        where,
    )
    alice, bob = _parse_taggers(mapping.pop("taggers", None), where.child("taggers"))
    parsed: dict[str, Any] = {
        "source": _parse_source(mapping.pop("source", None), where.child("source")),
        "detectors": _parse_detectors(mapping.pop("detectors", None), where.child("detectors")),
        "alice_tagger": alice,
        "bob_tagger": bob,
    }
    sections: dict[str, type] = {
        "fiber": FiberSettings,
        "eve": EveSettings,
        "switch": SwitchSettings,
        "polarization_controller": PolarizationControllerSettings,
        "receiver": ReceiverSettings,
    }
    for key, cls in sections.items():
        parsed[key] = parse_section(cls, mapping.pop(key, None), where.child(key))
    settings = parse_section(WorldSettings, mapping, where, **parsed)
    _check_switch(settings.switch, where.child("switch"))
    low, high = settings.polarization_controller.voltage_range_mv
    if not low < high:
        raise where.child("polarization_controller.voltage_range_mv").error(
            f"expected [low, high] with low < high, got {[low, high]}"
        )
    return settings


def _check_switch(switch: SwitchSettings, where: Where) -> None:
    for key in ("bob_port", "parking_port", "initial_port"):
        port = getattr(switch, key)
        if port > switch.n_ports:
            raise where.child(key).error(f"port {port} > n_ports {switch.n_ports}")
