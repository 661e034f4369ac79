"""Polarization drift tracking while key is generated, and recalibration when key stops.

The fiber's birefringence drifts (a random walk on the Poincaré sphere), so the alignment
the polarization calibration found wears off within minutes: QBER creeps up until the
finite-key bound leaves no key. Between key blocks Alice's public calibration frame plays
(its states are known to both), so Bob measures the QBER on it, as the calibration does,
and keeps the alignment with small steps of his controller through the
``PolarizationController`` interface; key blocks are then acquired at the setpoint itself,
without a dither of their own.

Why a dither: near the optimum the QBER of each basis is quadratic in the misalignment, so
one reading says how far off the alignment is but not which way. A probe pair reads the
cost C = (Q_Z + Q_X) / 2 with one actuator offset by ``+delta`` and ``-delta`` retardance
from its setpoint; their difference is ``2 delta dC/dd``. With all other actuators fixed, C
is ``A + B cos(d - d*)`` in that actuator's retardance ``d`` (the law the calibration's
Rotosolve uses), and for a rotation by ``phi`` about a unit Stokes axis ``n`` from the
optimum ``C - C_min = (1 - 2 e)(1 + n_3^2)(1 - cos phi) / 4``, so the curvature is
``(1 - 2 e)(1 + n_3^2) / 4``, between 1/4 and 1/2 for any axis (``e`` the intrinsic
misalignment). A Newton step with the middle value 3/8 is between 2/3 and 4/3 of the exact
step along that actuator: it always converges (a gradient step converges below 2). Pairs
take the actuators in turn (coordinate descent: four squeezers for three rotation angles,
so a simultaneous update of all of them could overshoot along shared directions).

Each probe is a short capture (``evaluation_s``, the calibration's 2 ms: ~2e4 sifted bits a
basis, a QBER to ~0.1 pp), so ``reference_pairs`` pairs before every block cost a few
percent of a block's pulses. With sim.yaml's 0.01 rad/sqrt(s) and a block every 10 s, two
pairs a block hold the key blocks within 0.05 pp of the floor
(tests/experiments/keygen/test_drift.py); dithering the key blocks themselves (a pair of
blocks per actuator, four pairs for all directions) let them drift 0.35 pp above it on
average and a fifth of them gave no key.

When blocks stop yielding key anyway (a drift jump faster than tracking, a detector that
came back with another efficiency), :class:`StallWatch` trips a suspender whose remedy is
the polarization calibration: ``no_key_blocks`` blocks in a row without key, or the mean
cost of the last blocks above the floor measured right after the last calibration by
``margin_qber``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from experiments.calibration.common import Session
from experiments.calibration.polarization import wrap_voltage
from experiments.calibration.qber import measure_qber
from labctl.interfaces.devices import PolarizationController
from labctl.link.node_base import BlockResult
from labctl.runner.plan_context import PlanContext
from labctl.runner.suspenders import Plan, Suspender

CURVATURE = 3.0 / 8.0
"""Assumed d^2 C / d d^2 at the optimum (C the mean QBER of both bases): see the module doc."""

Measure = Callable[[], Awaitable[float]]
"""The cost (mean QBER of both bases) of a short capture of the calibration frame, now."""


@dataclass(frozen=True)
class TrackingSettings:
    """How the tracker probes and steps, and when key generation recalibrates."""

    v_pi_mv: float = 2000.0
    """Voltage of pi retardance (``calibration.polarization.v_pi_mv``)."""
    dither_rad: float = 0.06
    """Retardance offset of each probe of a pair."""
    reference_pairs: int = 2
    """Probe pairs on the calibration frame before every key block."""
    evaluation_s: float = 0.002
    """Capture time of one probe (``calibration.polarization.evaluation_s``)."""
    max_step_rad: float = 0.3
    """Largest setpoint move per pair (a wild reading cannot throw the alignment away)."""
    curvature: float = CURVATURE
    no_key_blocks: int = 3
    """Blocks in a row without key that ask for a recalibration."""
    margin_qber: float = 0.01
    """Mean cost above the floor that asks for a recalibration."""
    window_blocks: int = 3
    """Blocks averaged for the floor (after a calibration) and for the margin check."""

    def __post_init__(self) -> None:
        for name in (
            "v_pi_mv",
            "dither_rad",
            "evaluation_s",
            "max_step_rad",
            "curvature",
            "margin_qber",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"TrackingSettings.{name}: must be finite and > 0, got {value!r}")
        for name in ("reference_pairs", "no_key_blocks", "window_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrackingSettings.{name}: must be >= 1")


def block_cost(result: BlockResult) -> float | None:
    """Mean QBER of both bases of a block (None when a basis had no estimate)."""
    if result.qber_z is None or result.qber_x is None:
        return None
    return 0.5 * (result.qber_z + result.qber_x)


class DriftTracker:
    """Dither-and-step tracking of Bob's polarization controller on the calibration frame.

    ``before_block(b)`` runs ``reference_pairs`` probe pairs (each: the actuator of its turn
    at ``+delta``, a capture, at ``-delta``, a capture, a bounded Newton step of its
    setpoint) and leaves the controller at the setpoint for the block.
    """

    def __init__(self, pc: PolarizationController, settings: TrackingSettings, measure: Measure):
        self.pc = pc
        self.settings = settings
        self.measure = measure
        self.setpoint_mv: list[float] | None = None
        self._axis = 0
        self.steps = 0
        self.skipped = 0
        """Blocks before which tracking failed (the controller or a capture did not answer)."""
        self.last_error: str | None = None

    @property
    def delta_mv(self) -> float:
        """The dither in millivolts."""
        return self.settings.dither_rad * self.settings.v_pi_mv / math.pi

    def rebase(self, voltages_mv: Sequence[float]) -> None:
        """A calibration set the controller: track from its voltages."""
        self.setpoint_mv = [float(v) for v in voltages_mv]
        self._axis = 0

    def _voltage(self, value_mv: float) -> float:
        low, high = self.pc.voltage_range_mv
        return wrap_voltage(value_mv, self.settings.v_pi_mv, low, high)

    async def before_block(self, block: int) -> list[float]:
        """Probe and step; the setpoint steps taken (mV), one per pair, for block ``block``."""
        steps: list[float] = []
        try:
            if self.setpoint_mv is None:
                self.rebase(await self.pc.get_voltages_mv())
            assert self.setpoint_mv is not None
            for _ in range(self.settings.reference_pairs):
                steps.append(await self._pair(self.setpoint_mv))
            await self.pc.set_voltages_mv(self.setpoint_mv)
        except Exception as exc:  # a controller or capture fault must not stop key generation
            self.skipped += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
        return steps

    async def _pair(self, setpoint_mv: list[float]) -> float:
        """One probe pair on the actuator of its turn; moves its setpoint, the step in mV."""
        axis = self._axis
        costs = []
        for sign in (1, -1):
            voltages = list(setpoint_mv)
            voltages[axis] = self._voltage(voltages[axis] + sign * self.delta_mv)
            await self.pc.set_voltages_mv(voltages)
            costs.append(await self.measure())
        slope = (costs[0] - costs[1]) / (2.0 * self.settings.dither_rad)  # dC / d retardance
        limit = self.settings.max_step_rad
        step_rad = max(-limit, min(limit, -slope / self.settings.curvature))
        step_mv = step_rad * self.settings.v_pi_mv / math.pi
        setpoint_mv[axis] = self._voltage(setpoint_mv[axis] + step_mv)
        self.steps += 1
        self._axis = (axis + 1) % len(setpoint_mv)
        return step_mv


class StallWatch:
    """Asks for a recalibration when blocks stop yielding key or QBER leaves the floor."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.next_block = 0
        self._first_counted = 0
        self.floor: float | None = None
        self._floor_costs: list[float] = []
        self._recent: deque[float] = deque(maxlen=settings.window_blocks)
        self._no_key = 0

    def acquired(self, block: int) -> None:
        """Acquisition handed block ``block`` to post-processing."""
        self.next_block = block + 1

    def restart(self) -> None:
        """A calibration ran: blocks acquired before it no longer count; a new floor."""
        self._first_counted = self.next_block
        self.floor = None
        self._floor_costs.clear()
        self._recent.clear()
        self._no_key = 0

    def observe(self, result: BlockResult) -> None:
        """Take a post-processed block (ignored if acquired before the last calibration)."""
        if result.block < self._first_counted:
            return
        self._no_key = 0 if result.status == "key" else self._no_key + 1
        cost = block_cost(result)
        if cost is None:
            return
        if self.floor is None:
            self._floor_costs.append(cost)
            if len(self._floor_costs) >= self.settings.window_blocks:
                self.floor = sum(self._floor_costs) / len(self._floor_costs)
            return
        self._recent.append(cost)

    async def reason(self) -> str | None:
        """Why key generation should recalibrate now, or None."""
        if self._no_key >= self.settings.no_key_blocks:
            return f"{self._no_key} blocks in a row gave no key"
        full = len(self._recent) == self._recent.maxlen
        if self.floor is not None and full:
            mean = sum(self._recent) / len(self._recent)
            if mean > self.floor + self.settings.margin_qber:
                return (
                    f"mean QBER {mean:.3%} of the last {len(self._recent)} blocks is more than "
                    f"{self.settings.margin_qber:.2%} above the floor {self.floor:.3%}"
                )
        return None


@dataclass
class Tracking:
    """The tracker (None: drift is not tracked) and the stall watch of one key generation run."""

    tracker: DriftTracker | None
    stall: StallWatch
    run: PlanContext

    async def before_block(self, block: int) -> None:
        """Probe and step before block ``block``; say so when the controller did not answer."""
        if self.tracker is None:
            return
        skipped = self.tracker.skipped
        steps = await self.tracker.before_block(block)
        if self.tracker.skipped > skipped:
            self.run.log.warning(
                "polarization tracking skipped block %d: %s", block, self.tracker.last_error
            )
        if steps:
            self.run.emit(
                "drift",
                {
                    "block": block,
                    "step_mv": steps,
                    "setpoint_mv": list(self.tracker.setpoint_mv or []),
                    "floor_qber": self.stall.floor,
                },
            )

    def acquired(self, block: int) -> None:
        """Block ``block`` went to post-processing."""
        self.stall.acquired(block)

    def observe(self, result: BlockResult) -> None:
        """A post-processed block: its QBER feeds the stall watch."""
        self.stall.observe(result)

    async def recalibrated(self) -> None:
        """The calibration moved the controller: restart tracking from its voltages."""
        self.stall.restart()
        if self.tracker is None:
            return
        try:
            self.tracker.rebase(await self.tracker.pc.get_voltages_mv())
        except Exception as exc:  # read again before the next block
            self.tracker.setpoint_mv = None
            self.run.log.warning("polarization controller not read after calibration: %s", exc)


def tracking_settings(
    run: PlanContext,
    *,
    dither_rad: float = TrackingSettings.dither_rad,
    reference_pairs: int = TrackingSettings.reference_pairs,
    no_key_blocks: int = TrackingSettings.no_key_blocks,
    margin_qber: float = TrackingSettings.margin_qber,
) -> TrackingSettings:
    """Settings with ``v_pi_mv`` and ``evaluation_s`` from the station's
    ``calibration.polarization`` section."""
    section = Session.of(run).settings.section("polarization")
    return TrackingSettings(
        v_pi_mv=float(section["v_pi_mv"]),
        dither_rad=dither_rad,
        reference_pairs=reference_pairs,
        evaluation_s=float(section["evaluation_s"]),
        no_key_blocks=no_key_blocks,
        margin_qber=margin_qber,
    )


def controller(run: PlanContext) -> PolarizationController:
    """Bob's polarization controller (the calibration's ``pc`` role); CalibrationFailed if none."""
    pc: PolarizationController = Session.of(run).get("pc")
    return pc


def install(
    run: PlanContext,
    pc: PolarizationController,
    remedy: Plan,
    *,
    settings: TrackingSettings | None = None,
    measure: Measure | None = None,
    settle_s: float = 1.0,
    track: bool = True,
) -> Tracking:
    """Track drift with Bob's controller ``pc`` (unless ``track`` is False); add the
    ``key-stall`` suspender.

    ``remedy`` recalibrates polarization (the QBER suspender's); the caller restarts
    tracking (``Tracking.recalibrated``) after every calibration, whoever asked for it.
    ``measure`` reads the calibration frame's cost (default: a capture of
    ``settings.evaluation_s`` through the calibration session, as the calibration does).
    """
    chosen = settings or tracking_settings(run)
    if measure is None:
        session = Session.of(run)

        async def measure() -> float:
            return (await measure_qber(session, chosen.evaluation_s)).qber

    tracker = DriftTracker(pc, chosen, measure) if track else None
    tracking = Tracking(tracker, StallWatch(chosen), run)
    run.add_suspender(Suspender("key-stall", tracking.stall.reason, remedy, settle_s=settle_s))
    return tracking
