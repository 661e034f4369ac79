"""Benchmark harness (not a plan): a simulated link's measured key rate against the formula.

One call acquires ``pulses`` pulses from Bob's tagger twin on a scenario station (the GYS
link of configs/scenarios/gys.yaml at any distance), then reads the same detections twice:

* **asymptotic estimate** — per-intensity gains Q and sifted error rates E measured from the
  detections and Alice's pattern, vacuum + weak (or two-) decoy bounds on Y1 and e1 from those
  measured values (Ma et al. 2005), GLLP rate with the model's f_ec. This is what the formula
  ``labctl.qkd.estimation.keyrate.model_key_rate`` predicts for the same scheme, so the two agree
  within the statistical error (delta method on binomial counts, :func:`asymptotic_estimate`).
* **finite-key run** — the block through the live nodes (sifting over the authenticated
  channel, Cascade, verification, Lim et al. finite-key length, Toeplitz PA, both key stores).
  Finite-size effects make this rate lower than the asymptotic one; it is reported apart.

Pulses per class are Alice's expected counts N p_c (her class probabilities): counting them
exactly would cost a pattern lookup per pulse; the detection count D_c ~ Binomial(N, p_c Q_c)
makes D_c / (N p_c) unbiased with the variance used below.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from experiments.keygen.acquisition import LinearClockMap, acquire_block
from labctl.interfaces.devices import TimeTagger
from labctl.interfaces.errors import ConfigError
from labctl.link.block import RawBlock
from labctl.link.nodes import AliceNode, AliceSource, BlockResult, BobNode
from labctl.link.settings import KeygenSettings
from labctl.qkd.auth.channel import memory_pair
from labctl.qkd.estimation.decoy import two_decoy_bounds, vacuum_weak_decoy_bounds
from labctl.qkd.estimation.keyrate import DecoyScheme, DecoySettings, gllp_rate, model_key_rate
from labctl.qkd.estimation.model import ChannelModel
from labctl.store.keystore import KeyStore

F_EC_FORMULA = 1.22
"""Error-correction inefficiency the GYS formula assumes (Lo, Ma, Chen 2005)."""


@dataclass(frozen=True)
class ClassCounts:
    """What Bob detected from one intensity class of Alice."""

    mu: float
    probability: float
    pulses: float
    """Expected pulses of this class, N p_c."""
    detections: int
    sifted: int
    errors: int

    @property
    def gain(self) -> float:
        """Q_c = detections / pulses."""
        return self.detections / self.pulses

    @property
    def error_rate(self) -> float:
        """E_c = sifted errors / sifted detections (0.5 when nothing was sifted)."""
        return self.errors / self.sifted if self.sifted else 0.5

    @property
    def gain_var(self) -> float:
        """Binomial variance of Q_c: D ~ Binomial(N, p_c Q_c)."""
        n_total = self.pulses / self.probability
        p = self.detections / n_total
        return n_total * p * (1.0 - p) / self.pulses**2

    @property
    def error_rate_var(self) -> float:
        """Binomial variance of E_c given the sifted count."""
        if not self.sifted:
            return 0.25
        e = self.error_rate
        return e * (1.0 - e) / self.sifted


@dataclass(frozen=True)
class RateEstimate:
    """Asymptotic GLLP rate from measured gains, error rates and decoy bounds."""

    rate: float
    """Secret bits per signal pulse (the formula's unit)."""
    stderr: float
    y1_lower: float
    e1_upper: float
    q1_lower: float


def class_counts(raw: RawBlock, source: AliceSource) -> list[ClassCounts]:
    """Per-class detections, sifted detections and sifted errors of one block."""
    det = raw.detections
    basis, bit, cls = source.choices(det.pulse_index)
    intensities = source.intensities()
    n = len(intensities)
    match = basis == det.basis
    wrong = match & (bit != det.bit)
    detections = np.bincount(cls, minlength=n)
    sifted = np.bincount(cls[match], minlength=n)
    errors = np.bincount(cls[wrong], minlength=n)
    return [
        ClassCounts(mu, p, raw.pulses * p, int(detections[k]), int(sifted[k]), int(errors[k]))
        for k, (mu, p) in enumerate(intensities)
    ]


def decoy_settings(counts: Sequence[ClassCounts]) -> tuple[DecoyScheme, DecoySettings]:
    """The decoy scheme the intensity classes configure: vacuum + weak, or two decoys."""
    mus = sorted((c.mu for c in counts), reverse=True)
    if len(mus) != 3:
        raise ValueError(f"the rate check needs three intensity classes, got {len(mus)}")
    if mus[2] == 0.0:
        return "vacuum+weak", DecoySettings(mus[0], mus[1], 0.0)
    return "two-decoy", DecoySettings(mus[0], mus[1], mus[2])


def _rate_from(
    values: Sequence[float], decoys: DecoySettings, scheme: DecoyScheme, f_ec: float
) -> tuple[float, Any]:
    """GLLP rate from (Q_mu, E_mu, Q_nu1, E_nu1, Q_nu2, E_nu2) measured values."""
    q_mu, e_mu, q_1, e_1, q_2, e_2 = (max(v, 0.0) for v in values)
    if scheme == "vacuum+weak":
        bounds = vacuum_weak_decoy_bounds(decoys.mu, decoys.nu1, q_mu, e_mu, q_1, e_1, q_2)
    else:
        bounds = two_decoy_bounds(decoys.mu, decoys.nu1, decoys.nu2, q_mu, q_1, e_1, q_2, e_2)
    e_mu, e1 = min(e_mu, 1.0), min(bounds.e1_upper, 1.0)
    return gllp_rate(q_mu, e_mu, bounds.q1_lower, e1, f_ec), bounds


def asymptotic_estimate(counts: Sequence[ClassCounts], f_ec: float = F_EC_FORMULA) -> RateEstimate:
    """GLLP rate from measured per-class values, with its delta-method standard error."""
    scheme, decoys = decoy_settings(counts)
    ordered = sorted(counts, key=lambda c: -c.mu)
    values = [v for c in ordered for v in (c.gain, c.error_rate)]
    variances = [v for c in ordered for v in (c.gain_var, c.error_rate_var)]
    rate, bounds = _rate_from(values, decoys, scheme, f_ec)
    var = 0.0
    for i, (value, v) in enumerate(zip(values, variances, strict=True)):
        if v <= 0.0:
            continue
        step = 0.1 * math.sqrt(v)  # central difference on a tenth of a standard deviation
        hi = [*values[:i], value + step, *values[i + 1 :]]
        lo = [*values[:i], max(value - step, 0.0), *values[i + 1 :]]
        slope = (
            _rate_from(hi, decoys, scheme, f_ec)[0] - _rate_from(lo, decoys, scheme, f_ec)[0]
        ) / (hi[i] - lo[i])
        var += slope * slope * v
    return RateEstimate(rate, math.sqrt(var), bounds.y1_lower, bounds.e1_upper, bounds.q1_lower)


I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


class WorldSource:
    """Ground truth for this benchmark harness: the seeded world's own pattern as Alice's.

    Only for measuring the pipeline against the world's closed-form model without a
    transmitter; plans get Alice's states from her transmitter (TransmitterSource).
    """

    def __init__(self, world: Any) -> None:
        self._world = world

    def choices(self, pulse_index: I64) -> tuple[U8, U8, U8]:
        """(basis, bit, intensity class) of each pulse."""
        pattern = self._world.alice_pattern(pulse_index)
        return pattern.basis, pattern.bit, pattern.intensity

    def intensities(self) -> list[tuple[float, float]]:
        """(mu, probability) per class; mu scaled by the laser power Alice set."""
        source = self._world.optics.source
        mus = [float(m) for m in source.mu]
        return [
            (mu, float(c.probability))
            for mu, c in zip(mus, source.settings.intensities, strict=True)
        ]

    def release(self, first_pulse: int, pulses: int) -> None:
        """Nothing is kept per block."""

    def one_shot(self, first_pulse: int, pulses: int) -> bool:
        """The seeded pattern never repeats."""
        return True


def channel_model(world_settings: Any, f_ec: float = F_EC_FORMULA) -> ChannelModel:
    """The Lo-Ma-Chen model of a world's link (its fiber, receiver and detector settings)."""
    s = world_settings
    detector = s.detectors[0]
    loss_db = s.switch.insertion_loss_db + s.receiver.optical_loss_db
    dark_p = detector.dark_rate_hz(s.source.rate_hz) / s.source.rate_hz
    return ChannelModel(
        alpha_db_per_km=s.fiber.loss_db_per_km,
        eta_bob=detector.efficiency * 10.0 ** (-loss_db / 10.0),
        y0=1.0 - (1.0 - dark_p) ** len(s.detectors),
        e_det=s.receiver.misalignment,
        f_ec=f_ec,
    )


def squashed_gain_qber(model: ChannelModel, mu: float, distance_km: float) -> tuple[float, float]:
    """Gain and sifted QBER of a passive four-detector receiver with double clicks squashed.

    The Lo-Ma-Chen model counts an n-photon arrival as one click with error e_det. A real
    receiver splits the photons: detected photons are Poisson(eta mu), thinned onto the four
    detectors (matched basis: right one (1 - e_det)/2, wrong one e_det/2; other basis 1/4
    each), plus Y0/4 dark probability per detector. Clicks in several detectors become one
    random basis and bit (acquisition's squashing map), i.e. a sifted error half the time
    they are sifted. This predicts the excess QBER of the simulation at short distances.
    """
    lam = model.eta(distance_km) * mu
    dark = 1.0 - (1.0 - model.y0) ** 0.25
    rates = (lam * (1.0 - model.e_det) / 2.0, lam * model.e_det / 2.0, lam / 4.0, lam / 4.0)
    click = [1.0 - (1.0 - dark) * math.exp(-r) for r in rates]
    silent = math.prod(1.0 - c for c in click)
    alone = [c * silent / (1.0 - c) for c in click]
    multi = 1.0 - silent - sum(alone)
    sifted = alone[0] + alone[1] + multi / 2.0
    return 1.0 - silent, (alone[1] + multi / 4.0) / sifted


def squashed_formula_rate(
    model: ChannelModel, distance_km: float, scheme: DecoyScheme, decoys: DecoySettings
) -> float:
    """The decoy-state GLLP rate with gains and QBERs of the squashed receiver model."""
    values: list[float] = []
    for mu in (decoys.mu, decoys.nu1, decoys.nu2):
        values.extend(squashed_gain_qber(model, mu, distance_km))
    return _rate_from(values, decoys, scheme, model.f_ec)[0]


@dataclass(frozen=True)
class LinkMeasurement:
    """One distance: measured gains/QBERs, asymptotic estimate, formula, finite-key result."""

    distance_km: float
    pulses: int
    scheme: str
    classes: list[ClassCounts]
    estimate: RateEstimate
    formula_rate: float
    """model_key_rate for the configured scheme, bits per signal pulse."""
    squashed_rate: float
    """The same with the squashed receiver's gains and QBERs (double clicks)."""
    signal_probability: float
    finite_key: BlockResult | None

    @property
    def z_score(self) -> float:
        """(estimate - formula) / stderr (inf when the error is 0 and they differ)."""
        diff = self.estimate.rate - self.formula_rate
        if self.estimate.stderr == 0.0:
            return 0.0 if diff == 0.0 else math.inf
        return diff / self.estimate.stderr

    def report(self) -> dict[str, Any]:
        """JSON-able figures (rates per signal pulse unless named per_pulse)."""
        fk = self.finite_key
        p_sig = self.signal_probability
        return {
            "distance_km": self.distance_km,
            "pulses": self.pulses,
            "decoy_scheme": self.scheme,
            "classes": [
                {
                    "mu": c.mu,
                    "probability": c.probability,
                    "detections": c.detections,
                    "sifted": c.sifted,
                    "errors": c.errors,
                    "gain": c.gain,
                    "gain_stderr": math.sqrt(c.gain_var),
                    "qber": c.error_rate if c.sifted else None,
                    "qber_stderr": math.sqrt(c.error_rate_var) if c.sifted else None,
                }
                for c in self.classes
            ],
            "asymptotic_estimate_per_signal_pulse": self.estimate.rate,
            "asymptotic_estimate_stderr": self.estimate.stderr,
            "formula_per_signal_pulse": self.formula_rate,
            "ratio_estimate_to_formula": (
                self.estimate.rate / self.formula_rate if self.formula_rate else None
            ),
            "z_score": self.z_score,
            "formula_with_double_click_squashing": self.squashed_rate,
            "z_score_vs_squashing_model": (
                (self.estimate.rate - self.squashed_rate) / self.estimate.stderr
                if self.estimate.stderr
                else None
            ),
            "y1_lower": self.estimate.y1_lower,
            "e1_upper": self.estimate.e1_upper,
            "asymptotic_estimate_per_pulse": p_sig * self.estimate.rate,
            "finite_key": None if fk is None else _finite_report(fk, p_sig * self.formula_rate),
        }


def _finite_report(fk: BlockResult, asymptotic_per_pulse: float) -> dict[str, Any]:
    event = fk.event()
    rate = event["key_rate_per_pulse"]
    return {
        "status": fk.status,
        "reason": fk.reason,
        "key_rate_per_pulse": rate,
        "ratio_to_asymptotic_formula_per_pulse": (
            rate / asymptotic_per_pulse if asymptotic_per_pulse else None
        ),
        "secret_bits": fk.secret_bits,
        "sifted_bits": fk.sifted_bits,
        "qber_z": fk.qber_z,
        "qber_x": fk.qber_x,
        "ec_efficiency": fk.ec_efficiency,
        "channel_uses": fk.channel_uses,
    }


def scenario_config(scenario: str | Path, distance_km: float, folder: Path) -> Path:
    """A copy of a scenario station file at ``distance_km`` whose storage lies in ``folder``."""
    from sims.scenarios import scenario_settings

    data = yaml.safe_load(Path(scenario).read_text(encoding="utf-8"))
    data["world"]["settings"] = scenario_settings(scenario, distance_km=distance_km)
    data["storage"] = {
        "runs_dir": str(folder / "runs"),
        "calibration_store": str(folder / "calibration.sqlite"),
        "key_store": str(folder / "keys.sqlite"),
    }
    path = folder / f"scenario-{distance_km:g}km.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def finite_key_block(
    raw: RawBlock, source: AliceSource, folder: Path, settings: KeygenSettings | None = None
) -> BlockResult:
    """One block through the live Alice and Bob nodes (memory channel); Bob's result."""
    settings = settings or KeygenSettings()
    alice_channel, bob_channel = memory_pair(os.urandom(32), settings.channel_timeout_s)
    with (
        KeyStore(folder / "keys-alice.sqlite") as alice_store,
        KeyStore(folder / "keys-bob.sqlite") as bob_store,
    ):
        alice = AliceNode(alice_channel, alice_store, settings, source)
        serving = asyncio.create_task(alice.serve())
        bob = BobNode(bob_channel, bob_store, settings)
        try:
            result = await bob.process(raw)
            await bob.close()
            await asyncio.wait_for(serving, settings.channel_timeout_s)
        finally:
            serving.cancel()
        if alice_store.ids() != bob_store.ids():
            raise RuntimeError("Alice's and Bob's key stores hold different key ids")
    return result


async def measure_link(
    scenario: str | Path,
    distance_km: float,
    pulses: int,
    *,
    finite_key: bool = True,
    folder: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> LinkMeasurement:
    """Acquire ``pulses`` pulses of a scenario link at ``distance_km`` and measure its rates."""
    from labctl.station import Station, load_config

    with tempfile.TemporaryDirectory(prefix="labctl-e2e-") as tmp:
        work = Path(folder) if folder is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        config = load_config(scenario_config(scenario, distance_km, work))
        station = Station.from_config(config)
        async with station:
            world = station.world
            if world is None:
                raise ConfigError("the scenario has no simulated world", file=str(scenario))
            truth = world.truth
            clock_map = LinearClockMap(
                truth.bob_offset_ps + truth.fiber_delay_ps,
                truth.period_ps,
                truth.bob_frequency_offset_ppm * 1000.0,
            )
            raw = await acquire_block(
                station.get("tagger-bob", TimeTagger),
                block=0,
                pulses=pulses,
                period_ps=int(world.period_ps),
                clock_map=clock_map,
                detector_channels=list(world.settings.bob_tagger.detector_channels),
                rng=np.random.default_rng(int(distance_km * 1000) + 1),
                now_s=0.0,
                timeout_s=60.0,
            )
            if progress is not None:
                progress(f"{distance_km:g} km: {len(raw.detections)} detections")
            source = WorldSource(world)
            counts = class_counts(raw, source)
            scheme, decoys = decoy_settings(counts)
            model = channel_model(world.settings)
            formula = model_key_rate(model, distance_km, decoys.mu, scheme, decoys)
            fk = await finite_key_block(raw, source, work) if finite_key else None
    signal = max(counts, key=lambda c: c.mu)
    return LinkMeasurement(
        distance_km=distance_km,
        pulses=pulses,
        scheme=scheme,
        classes=counts,
        estimate=asymptotic_estimate(counts, model.f_ec),
        formula_rate=formula,
        squashed_rate=squashed_formula_rate(model, distance_km, scheme, decoys),
        signal_probability=signal.probability,
        finite_key=fk,
    )
