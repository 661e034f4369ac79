"""Polarization drift tracking while key is generated, and recalibration when key stops.

The fiber's birefringence drifts (a random walk on the Poincaré sphere), so the alignment
the polarization calibration found wears off within minutes: QBER creeps up until the
finite-key bound leaves no key. The tracker keeps the alignment from the QBER the blocks
themselves report, i.e. from what Alice and Bob learn in the public error estimation (the
errors Cascade corrected in the key basis, the disclosed test basis); it never looks at the
optics, and it moves Bob's controller only through the ``PolarizationController`` interface.

Why a dither: near the optimum the QBER of each basis is quadratic in the misalignment, so
one reading says how far off the alignment is but not which way. The blocks of a pair are
acquired with one actuator offset by ``+delta`` and ``-delta`` retardance from its
setpoint; the difference of their cost C = (Q_Z + Q_X) / 2 is ``2 delta dC/dd``. With all
other actuators fixed, C is ``A + B cos(d - d*)`` in that actuator's retardance ``d`` (the
law the calibration's Rotosolve uses), and for a rotation by ``phi`` about a unit Stokes
axis ``n`` from the optimum ``C - C_min = (1 - 2 e)(1 + n_3^2)(1 - cos phi) / 4``, so the
curvature is ``(1 - 2 e)(1 + n_3^2) / 4``, between 1/4 and 1/2 for any axis (``e`` the
intrinsic misalignment). A Newton step with the middle value 3/8 is between 2/3 and 4/3 of
the exact step along that actuator: it always converges (a gradient step converges below 2).
Pairs take the actuators in turn (coordinate descent: four squeezers for three rotation
angles, so a simultaneous update of all of them could overshoot along shared directions).

The dither costs ``curvature * delta^2 / 2`` of QBER on its blocks: 0.07 pp at 0.06 rad.
A pair measures one actuator, so three to four pairs correct every direction: the loop holds
the floor when a pair spans little drift (sim.yaml's 0.01 rad/sqrt(s) needs a block every
few seconds: tests/experiments/keygen/test_drift.py).

When blocks stop yielding key anyway (a drift jump faster than tracking, a detector that
came back with another efficiency), :class:`StallWatch` trips a suspender whose remedy is
the polarization calibration: ``no_key_blocks`` blocks in a row without key, or the mean
cost of the last blocks above the floor measured right after the last calibration by
``margin_qber``.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from experiments.calibration.common import Session
from experiments.calibration.polarization import wrap_voltage
from labctl.interfaces.devices import PolarizationController
from labctl.link.node_base import BlockResult
from labctl.runner.plan_context import PlanContext
from labctl.runner.suspenders import Plan, Suspender

CURVATURE = 3.0 / 8.0
"""Assumed d^2 C / d d^2 at the optimum (C the mean QBER of both bases): see the module doc."""


@dataclass(frozen=True)
class TrackingSettings:
    """How the tracker dithers and steps, and when key generation recalibrates."""

    v_pi_mv: float = 2000.0
    """Voltage of pi retardance (``calibration.polarization.v_pi_mv``)."""
    dither_rad: float = 0.06
    """Retardance offset of each block of a pair."""
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
        for name in ("v_pi_mv", "dither_rad", "max_step_rad", "curvature", "margin_qber"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"TrackingSettings.{name}: must be finite and > 0, got {value!r}")
        for name in ("no_key_blocks", "window_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrackingSettings.{name}: must be >= 1")


def block_cost(result: BlockResult) -> float | None:
    """Mean QBER of both bases of a block (None when a basis had no estimate)."""
    if result.qber_z is None or result.qber_x is None:
        return None
    return 0.5 * (result.qber_z + result.qber_x)


@dataclass
class _Probe:
    """The setting one block was acquired with."""

    version: int
    axis: int
    sign: int


@dataclass
class _Pair:
    """Costs seen at +delta and -delta on one axis around one setpoint."""

    plus: list[float] = field(default_factory=list)
    minus: list[float] = field(default_factory=list)


class DriftTracker:
    """Dither-and-step tracking of Bob's polarization controller from block QBERs.

    ``before_block(b)`` sets the controller for block ``b`` (setpoint plus the dither of
    its turn), ``observe(result)`` takes a post-processed block's QBER; once both halves
    of the current pair are in, the setpoint of that actuator moves and the next pair
    dithers the next actuator. A block acquired under an older setpoint never counts.
    """

    def __init__(
        self,
        pc: PolarizationController,
        settings: TrackingSettings,
        *,
        wait_results: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.pc = pc
        self.settings = settings
        self._wait_results = wait_results
        self.setpoint_mv: list[float] | None = None
        self.version = 0
        self._turn = 0  # blocks acquired under the current setpoint
        self._axis = 0
        self._probes: dict[int, _Probe] = {}
        self._pair = _Pair()
        self.steps = 0
        self.skipped = 0
        """Blocks acquired without a dither (the controller did not answer)."""
        self.last_error: str | None = None

    @property
    def delta_mv(self) -> float:
        """The dither in millivolts."""
        return self.settings.dither_rad * self.settings.v_pi_mv / math.pi

    def rebase(self, voltages_mv: Sequence[float]) -> None:
        """A calibration set the controller: track from its voltages; older blocks do not count."""
        self.setpoint_mv = [float(v) for v in voltages_mv]
        self._new_version()
        self._axis = 0

    def _new_version(self) -> None:
        self.version += 1
        self._turn = 0
        self._pair = _Pair()

    def _voltage(self, value_mv: float) -> float:
        low, high = self.pc.voltage_range_mv
        return wrap_voltage(value_mv, self.settings.v_pi_mv, low, high)

    async def before_block(self, block: int) -> None:
        """Drive the controller to block ``block``'s setting (setpoint + its dither)."""
        self._probes.pop(block, None)
        if self._turn >= 2 and self._wait_results is not None and not self._pair_complete():
            # Both halves acquired, results still in post-processing: wait for them rather
            # than dither on under a setpoint that is about to move.
            await self._wait_results()
        try:
            if self.setpoint_mv is None:
                self.rebase(await self.pc.get_voltages_mv())
            assert self.setpoint_mv is not None
            sign = 1 if self._turn % 2 == 0 else -1
            voltages = list(self.setpoint_mv)
            voltages[self._axis] = self._voltage(voltages[self._axis] + sign * self.delta_mv)
            await self.pc.set_voltages_mv(voltages)
        except Exception as exc:  # a controller link fault must not stop key generation
            self.skipped += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        self._probes[block] = _Probe(self.version, self._axis, sign)
        self._turn += 1

    def _pair_complete(self) -> bool:
        return bool(self._pair.plus) and bool(self._pair.minus)

    def observe(self, result: BlockResult) -> float | None:
        """Take block ``result``; the setpoint step (mV) when this completed a pair."""
        probe = self._probes.pop(result.block, None)
        cost = block_cost(result)
        if probe is None or cost is None or probe.version != self.version:
            return None
        if probe.axis != self._axis:
            return None
        (self._pair.plus if probe.sign > 0 else self._pair.minus).append(cost)
        if not self._pair_complete() or self.setpoint_mv is None:
            return None
        plus = sum(self._pair.plus) / len(self._pair.plus)
        minus = sum(self._pair.minus) / len(self._pair.minus)
        slope = (plus - minus) / (2.0 * self.settings.dither_rad)  # dC / d retardance
        limit = self.settings.max_step_rad
        step_rad = max(-limit, min(limit, -slope / self.settings.curvature))
        step_mv = step_rad * self.settings.v_pi_mv / math.pi
        axis = self._axis
        self.setpoint_mv[axis] = self._voltage(self.setpoint_mv[axis] + step_mv)
        self.steps += 1
        self._axis = (axis + 1) % len(self.setpoint_mv)
        self._new_version()
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
    """The tracker and the stall watch of one key generation run."""

    tracker: DriftTracker
    stall: StallWatch
    run: PlanContext

    async def before_block(self, block: int) -> None:
        """Set the controller for block ``block``; say so once when it does not answer."""
        skipped = self.tracker.skipped
        await self.tracker.before_block(block)
        if self.tracker.skipped > skipped:
            self.run.log.warning(
                "polarization tracking skipped block %d: %s", block, self.tracker.last_error
            )

    def acquired(self, block: int) -> None:
        """Block ``block`` went to post-processing."""
        self.stall.acquired(block)

    def observe(self, result: BlockResult) -> None:
        """A post-processed block: its QBER steers the controller and feeds the stall watch."""
        self.stall.observe(result)
        step_mv = self.tracker.observe(result)
        if step_mv is not None:
            self.run.emit(
                "drift",
                {
                    "block": result.block,
                    "step_mv": step_mv,
                    "setpoint_mv": list(self.tracker.setpoint_mv or []),
                    "floor_qber": self.stall.floor,
                },
            )

    async def recalibrated(self) -> None:
        """The calibration moved the controller: restart tracking from its voltages."""
        self.stall.restart()
        try:
            self.tracker.rebase(await self.tracker.pc.get_voltages_mv())
        except Exception as exc:  # read again before the next block
            self.tracker.setpoint_mv = None
            self.run.log.warning("polarization controller not read after calibration: %s", exc)


def tracking_settings(
    run: PlanContext,
    *,
    dither_rad: float = TrackingSettings.dither_rad,
    no_key_blocks: int = TrackingSettings.no_key_blocks,
    margin_qber: float = TrackingSettings.margin_qber,
) -> TrackingSettings:
    """Settings with ``v_pi_mv`` from the station's ``calibration.polarization`` section."""
    session = Session.of(run)
    v_pi = float(session.settings.section("polarization")["v_pi_mv"])
    return TrackingSettings(
        v_pi_mv=v_pi, dither_rad=dither_rad, no_key_blocks=no_key_blocks, margin_qber=margin_qber
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
    wait_results: Callable[[], Awaitable[None]] | None = None,
    settle_s: float = 1.0,
) -> Tracking:
    """Track drift with Bob's controller ``pc``; add the ``key-stall`` suspender.

    ``remedy`` recalibrates polarization (the QBER suspender's); the caller restarts
    tracking (``Tracking.recalibrated``) after every calibration, whoever asked for it.
    ``wait_results`` waits until acquired blocks are post-processed;
    given on a virtual clock only (there post-processing takes no simulated time, while on
    the wall clock a block's results are in long before the next block starts).
    """
    chosen = settings or tracking_settings(run)
    tracker = DriftTracker(pc, chosen, wait_results=wait_results)
    tracking = Tracking(tracker, StallWatch(chosen), run)
    run.add_suspender(Suspender("key-stall", tracking.stall.reason, remedy, settle_s=settle_s))
    return tracking


async def wait_at_most(wait: Callable[[], Awaitable[None]], timeout_s: float) -> None:
    """``wait()`` bounded by ``timeout_s`` of wall time (a stuck pipeline never stalls a block)."""
    try:
        await asyncio.wait_for(wait(), timeout_s)
    except TimeoutError:
        pass
