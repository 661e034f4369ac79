"""Attack monitors: detector blinding and intercept-resend, with the instruments a lab has.

After every block (before it goes to post-processing) and on every block result:

* ``detector-current``: each detector's measured bias-line current (``health()`` readings
  ``ch{i}_current_ua`` and ``ch{i}_bias_ua``) above its bias by more than
  ``trust.current_tolerance_ua``: light on the detector, as under blinding CW light
  (photocurrent monitoring: Yuan, Dynes, Shields, Nat. Photonics 4, 800 (2010));
* ``click-rate``: a block's clicks per pulse above ``trust.click_rate_factor`` times what
  the calibrated mean photon numbers give through the calibrated link, a rate no
  passive channel can raise (bright light, as from blinding; the block's detections are
  let go during acquisition, so a blinded block costs no memory);
* ``dark-counts``: at random times (``trust.check_probability`` per block, every block while
  the alarm stands) the switch turns to its parking port for ``trust.dark_integration_s``;
  the detectors must then count their calibrated dark counts plus the calibrated
  crosstalk leak. Blinded detectors count nothing (no darks) or, released from blinding by
  the attenuation, count the CW light far above it: both fail a Poisson test. This is the
  random-attenuation check of Lim et al., IEEE JSTQE 21, 6601305 (2015): a photon counter
  follows a known attenuation, a blinded detector does not;
* ``qber-high``: the block's QBER (test basis, and key basis after Cascade) significantly
  above the calibrated QBER plus ``trust.qber_margin``: intercept-resend (QBER p/4);
* ``qber-low``: the QBER significantly below ``trust.qber_floor_fraction`` of the calibrated
  QBER, which the receiver's misalignment does not allow: faked states (blinding);
* ``decoy-gains``: the decoy statistics. Through a passive lossy channel an intensity class
  of mean photon number mu is detected with probability Q(mu) = 1 - (1 - Y0) exp(-eta mu)
  (Hwang, PRL 91, 057901 (2003); Lo, Ma, Chen, PRL 94, 230504 (2005)). The two extreme
  classes fix Y0 and eta; every other class must then be detected as predicted, within
  ``trust.decoy_gain_margin``. An attack that treats pulses by photon number (photon-number
  splitting) or resends after its own detection (blinding: Q ~ 1 - exp(-mu eta_E)) bends
  Q(mu) off that curve. Only the design's ratios of mu enter: the laser power scales all
  classes alike and is absorbed in eta.

Significance: Chernoff bounds, exact tail bounds needing no distribution tables —
binomial P(E >= k) <= exp(-n D(k/n || q)) for k/n > q (and the mirror for k/n < q),
Poisson P(N >= k) <= e^-lam (e lam / k)^k for k > lam (mirror for k < lam, and e^-lam at
k = 0); an alarm needs the bound below ``trust.alpha``.

Each alarm goes through the :class:`~experiments.keygen.trust.TrustGate`: raised, it stops
key output; its condition gone (the next check passes), it clears.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.calibration.settings import DEFAULTS as CALIBRATION_DEFAULTS
from experiments.keygen.trust import TrustGate, TrustSettings
from experiments.sync.alice import AlicePublic, alice_of
from labctl.interfaces.devices import OpticalSwitch, SinglePhotonDetector
from labctl.link.block import RawBlock
from labctl.link.node_base import BlockResult
from labctl.runner.plan_context import PlanContext
from labctl.store.calibration import Calibration, CalibrationStore

QBER_SOURCES = frozenset({"qber-high", "qber-low", "decoy-gains"})
"""Alarms judged on each block's own statistics: a block is held by them on its own
QBER and decoy gains."""


def kl_bernoulli(p: float, q: float) -> float:
    """Kullback-Leibler divergence D(p || q) of two Bernoulli distributions (nats)."""
    total = 0.0
    if p > 0.0:
        total += p * math.log(p / q)
    if p < 1.0:
        total += (1.0 - p) * math.log((1.0 - p) / (1.0 - q))
    return total


def binomial_tail_bound(errors: float, n: float, q: float) -> float:
    """Chernoff bound on P(E >= errors) when errors/n > q, P(E <= errors) when below; 1 else."""
    if n <= 0 or not 0.0 < q < 1.0:
        return 1.0
    p = min(max(errors / n, 0.0), 1.0)
    if p == q:
        return 1.0
    return math.exp(-n * kl_bernoulli(p, q))


def poisson_tail_bound(count: float, lam: float) -> float:
    """Chernoff bound on P(N >= count) for count > lam, P(N <= count) for count < lam."""
    if lam <= 0.0:
        return 1.0 if count <= 0 else 0.0
    if count <= 0:
        return math.exp(-lam)
    if count == lam:
        return 1.0
    return math.exp(-lam + count - count * math.log(count / lam))


def decoy_gain_problem(
    detections: Sequence[int],
    pulses: int,
    mu: Sequence[float],
    probability: Sequence[float],
    margin: float,
    alpha: float,
) -> str | None:
    """Why the detections per intensity class do not fit a passive lossy channel, or None.

    ``detections[k]`` of about ``pulses * probability[k]`` pulses of class k (mean photon
    number ``mu[k]``, the design's: only their ratios matter). The classes of largest and
    smallest mu give Y0 and eta; each other class's count must lie within ``margin`` of the
    prediction, or deviate from it with a Chernoff bound below ``alpha``.
    """
    n = len(mu)
    if n < 3 or len(probability) != n or pulses <= 0:
        return None
    counts = [int(detections[k]) if k < len(detections) else 0 for k in range(n)]
    sent = [pulses * p for p in probability]
    hi = max(range(n), key=lambda k: mu[k])
    lo = min(range(n), key=lambda k: mu[k])
    if mu[hi] <= mu[lo] or sent[hi] <= 0 or sent[lo] <= 0:
        return None
    q_hi, q_lo = counts[hi] / sent[hi], counts[lo] / sent[lo]
    if not 0.0 <= q_lo <= q_hi < 1.0 or counts[hi] == 0:
        return None  # no fit (saturated or empty): the QBER and dark checks judge this block
    eta = -math.log((1.0 - q_hi) / (1.0 - q_lo)) / (mu[hi] - mu[lo])
    survive = (1.0 - q_lo) * math.exp(eta * mu[lo])  # 1 - Y0
    problems = []
    for k in range(n):
        if k in (hi, lo) or sent[k] < 1.0:
            continue
        predicted = 1.0 - survive * math.exp(-eta * mu[k])
        low_q, high_q = predicted * (1.0 - margin), min(predicted * (1.0 + margin), 1.0)
        trials, seen = round(sent[k]), counts[k]
        if seen > trials * high_q and binomial_tail_bound(seen, trials, high_q) < alpha:
            side = "more"
        elif seen < trials * low_q and binomial_tail_bound(seen, trials, low_q) < alpha:
            side = "fewer"
        else:
            continue
        problems.append(
            f"class {k} (mu {mu[k]:g}) detected {seen / sent[k]:.4g} per pulse, significantly "
            f"{side} than the {predicted:.4g} a lossy channel through mu {mu[lo]:g} and "
            f"{mu[hi]:g} gives"
        )
    if not problems:
        return None
    return "decoy statistics off a passive channel (photon-number attack?): " + "; ".join(problems)


def _latest(store: CalibrationStore | None, kind: str) -> Calibration | None:
    if store is None:
        return None
    found = [c for c in store.all() if c.kind == kind]
    return max(found, key=lambda c: c.time_s) if found else None


class LinkMonitor:
    """Runs the checks and feeds their verdicts to the trust gate."""

    def __init__(
        self,
        run: PlanContext,
        gate: TrustGate,
        *,
        detectors: SinglePhotonDetector | None,
        switch: OpticalSwitch | None,
        store: CalibrationStore | None,
        source: AlicePublic | None = None,
        seed: int | None = None,
    ) -> None:
        self.run = run
        self.gate = gate
        self.settings: TrustSettings = gate.settings
        self.detectors = detectors
        self.switch = switch
        self.store = store
        self.source = source
        """Alice's design (intensity classes) for the decoy check; None: no check."""
        self.rng = np.random.default_rng(seed)
        self.dark_checks = 0

    # -- calibrated references -----------------------------------------------------------
    def _dark_hz(self) -> float | None:
        """Sum of the calibrated dark count rates (None: no detector calibration)."""
        entry = _latest(self.store, "detectors")
        if entry is None:
            return None
        rates = [
            float(v["dark_count_rate_hz"])
            for v in entry.values.values()
            if isinstance(v, Mapping) and isinstance(v.get("dark_count_rate_hz"), int | float)
        ]
        return sum(rates) if rates else None

    def _leak_fraction(self, port: int) -> float:
        """Calibrated crosstalk of ``port`` as a power ratio (darks-level when unseen)."""
        entry = _latest(self.store, "switch")
        table = {} if entry is None else entry.values.get("crosstalk_db") or {}
        value = table.get(str(port)) if isinstance(table, Mapping) else None
        return 10.0 ** (float(value) / 10.0) if isinstance(value, int | float) else 0.0

    def click_ceiling(self) -> float | None:
        """Most clicks per pulse the calibrated light allows: ``trust.click_rate_factor``
        times the expected sum over intensity classes of p_k (1 - exp(-T eta mu_k)) plus
        the calibrated darks per pulse (None: no photon-number calibration to judge by)."""
        entry = _latest(self.store, "mean_photon_number")
        if entry is None or self.source is None:
            return None
        values = entry.values
        mu = values.get("mu")
        t, eta = values.get("transmittance"), values.get("detector_efficiency")
        if not isinstance(mu, Mapping) or not isinstance(t, int | float):
            return None
        if not isinstance(eta, int | float):
            return None
        expected = 0.0
        for name, p in zip(
            self.source.intensity_names, self.source.intensity_probability, strict=True
        ):
            mu_k = mu.get(name)
            if not isinstance(mu_k, int | float):
                return None
            expected += p * -math.expm1(-float(t) * float(eta) * float(mu_k))
        dark_per_pulse = (self._dark_hz() or 0.0) * self.source.period_ps * 1e-12
        return self.settings.click_rate_factor * (expected + dark_per_pulse)

    def _qber_ref(self) -> float | None:
        entry = _latest(self.store, "polarization")
        value = None if entry is None else entry.values.get("qber")
        return float(value) if isinstance(value, int | float) else None

    # -- checks --------------------------------------------------------------------------
    async def after_block(self, block: int, raw: RawBlock) -> None:
        """Every check that runs between blocks; then the block counts as checked."""
        now = self.run.clock.now_s
        self.gate.check_calibrations(self.store, now())
        self.check_clicks(raw)
        await self.check_current()
        due = bool(self.gate.standing("dark-counts"))
        if due or self.rng.random() < self.settings.check_probability:
            rate_hz = raw.tags / raw.acquired_s if raw.acquired_s > 0 else 0.0
            await self.check_dark(rate_hz)
        self.gate.block_checked(block, now())

    def check_clicks(self, raw: RawBlock) -> None:
        """``click-rate``: the block's clicks passed the ceiling the calibrated light allows
        (its acquisition let its detections go)."""
        message = None
        if raw.flooded is not None:
            clicks, pulses = raw.flooded
            ceiling = self.click_ceiling()
            message = (
                f"{clicks} clicks in {pulses} pulses of block {raw.block} "
                f"({clicks / max(pulses, 1):.4g} per pulse), above the "
                + ("" if ceiling is None else f"{ceiling:.4g} ")
                + "the calibrated light allows: bright light on the detectors (blinding?)"
            )
        self.gate.set("click-rate", message, self.run.clock.now_s())

    async def check_current(self) -> None:
        """``detector-current``: measured current above bias by more than the tolerance."""
        if self.detectors is None:
            return
        try:
            health = await self.detectors.health()
        except Exception as exc:  # an unreadable monitor is no evidence of safety
            message: str | None = f"detector health unreadable: {type(exc).__name__}"
            self.gate.set("detector-current", message, self.run.clock.now_s())
            return
        readings = health.readings
        problems = []
        for i in range(self.detectors.n_channels):
            current, bias = readings.get(f"ch{i}_current_ua"), readings.get(f"ch{i}_bias_ua")
            if not isinstance(current, int | float) or not isinstance(bias, int | float):
                continue  # this detector reports no current: the check cannot run
            excess = float(current) - float(bias)
            if excess > self.settings.current_tolerance_ua:
                problems.append(f"channel {i} draws {excess:.3f} uA above its bias")
        message = None
        if problems:
            message = "light on the detectors (blinding?): " + "; ".join(problems)
        self.gate.set("detector-current", message, self.run.clock.now_s())

    async def check_dark(self, bob_rate_hz: float) -> None:
        """``dark-counts``: the switch's parking port must show darks plus the leak only."""
        dark_hz = self._dark_hz()
        if self.detectors is None or self.switch is None or dark_hz is None:
            return
        t_s = self.settings.dark_integration_s
        port = await self.switch.get_port()
        parking = self.switch.parking_port
        await self.switch.set_port(parking)
        try:
            rates = await self.detectors.get_count_rates_hz(t_s)
        finally:
            await self.switch.set_port(port)
        self.dark_checks += 1
        counts = sum(rates) * t_s
        leak_hz = bob_rate_hz * self._leak_fraction(parking) * self.settings.crosstalk_margin
        low, high = dark_hz * t_s, (dark_hz + max(leak_hz, dark_hz)) * t_s
        alpha = self.settings.alpha
        message = None
        if counts < low and poisson_tail_bound(counts, low) < alpha:
            message = (
                f"{counts:.0f} counts in {t_s:g} s with the switch parked, calibrated darks "
                f"give {low:.0f}: detectors not counting photons (blinded?)"
            )
        elif counts > high and poisson_tail_bound(counts, high) < alpha:
            message = (
                f"{counts:.0f} counts in {t_s:g} s with the switch parked, at most {high:.0f} "
                "expected from darks and crosstalk: light bypasses the switch (blinding?)"
            )
        self.gate.set("dark-counts", message, self.run.clock.now_s())

    def qber_problems(self, result: BlockResult) -> dict[str, str | None]:
        """The verdicts on one block's own statistics: {'qber-high': why or None, ...}."""
        errors = 0.0
        bits = 0
        if result.qber_x is not None and result.test_basis_bits:
            errors += result.qber_x * result.test_basis_bits
            bits += result.test_basis_bits
        if result.qber_z is not None and result.key_basis_bits:
            errors += result.qber_z * result.key_basis_bits
            bits += result.key_basis_bits
        out: dict[str, str | None] = {}
        if self.source is not None and result.detections_by_class:
            out["decoy-gains"] = decoy_gain_problem(
                result.detections_by_class,
                result.pulses,
                self.source.intensity_mu,
                self.source.intensity_probability,
                self.settings.decoy_gain_margin,
                self.settings.alpha,
            )
        if bits == 0:
            return out
        qber = errors / bits
        ref = self._qber_ref()
        alpha = self.settings.alpha
        high_q = (ref or 0.0) + self.settings.qber_margin
        out.update({"qber-high": None, "qber-low": None})
        if qber > high_q and binomial_tail_bound(errors, bits, high_q) < alpha:
            out["qber-high"] = (
                f"QBER {100 * qber:.2f} % over {bits} bits, significantly above "
                f"{100 * high_q:.2f} % (calibrated + margin): intercept-resend or misalignment"
            )
        if ref is not None:
            low_q = ref * self.settings.qber_floor_fraction
            if qber < low_q and binomial_tail_bound(errors, bits, low_q) < alpha:
                out["qber-low"] = (
                    f"QBER {100 * qber:.3f} % over {bits} bits, significantly below "
                    f"{100 * low_q:.3f} % ({self.settings.qber_floor_fraction:g} x calibrated "
                    f"{100 * ref:.2f} %): faked states (blinding?)"
                )
        return out

    def verdict(self, result: BlockResult) -> str | None:
        """The key gate: judge the block's own QBER first (raising or clearing the QBER
        alarms), then ask the trust gate."""
        now = self.run.clock.now_s()
        for source, message in self.qber_problems(result).items():
            self.gate.set(source, message, now)
        return self.gate.verdict(result.block, QBER_SOURCES)

    def observe(self, result: BlockResult) -> float | None:
        """A block's result: raise or clear the QBER alarms; the block's start (run clock)."""
        now = self.run.clock.now_s()
        span = self.gate.spans.pop(result.block, None)
        for source, message in self.qber_problems(result).items():
            self.gate.set(source, message, now)
        return None if span is None else span.start_s


def _roles(config: Any) -> dict[str, str]:
    roles = dict(CALIBRATION_DEFAULTS["instruments"])
    section = (config.raw_section("calibration") or {}).get("instruments") or {}
    roles.update({str(k): str(v) for k, v in section.items()})
    return roles


def install(
    run: PlanContext, config: Any, calibration: Mapping[str, Any] | None = None
) -> LinkMonitor:
    """The run's trust gate and link monitor, from the station's ``trust:`` section.

    ``calibration`` is this run's calibration summary (``steps.calibrate``): a routine that
    failed in it stops key output until a later pass of the same routine.
    """
    settings = TrustSettings.from_section(config.raw_section("trust"), file=config.file)
    gate = TrustGate(run, settings)
    now_s = run.clock.now_s()
    for name, entry in ((calibration or {}).get("routines") or {}).items():
        if isinstance(entry, Mapping) and not entry.get("passed", False):
            gate.calibration_failed(str(name), str(entry.get("reason", "")), now_s)
    storage = getattr(config, "storage", None)
    path = getattr(storage, "calibration_store", None)
    store = None if path is None else CalibrationStore(Path(path))
    roles = _roles(config)
    instruments = run.station.instruments
    detectors = instruments.get(roles["detectors"])
    switch = instruments.get(roles["switch"])
    try:
        source: AlicePublic | None = alice_of(run.station)
    except LookupError:
        source = None  # no Alice design to check the decoy statistics against
    monitor = LinkMonitor(
        run,
        gate,
        detectors=detectors if isinstance(detectors, SinglePhotonDetector) else None,
        switch=switch if isinstance(switch, OpticalSwitch) else None,
        store=store,
        source=source,
    )
    gate.check_calibrations(store, now_s)
    return monitor
