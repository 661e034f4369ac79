"""What every calibration routine shares: its verdict, its instruments, light and tags.

A routine gets a ``Session``: the run, validated settings, Alice's node and Bob's station
instruments (checked present and healthy before anything moves), and ``capture(s)``, which
returns fresh tags already mapped onto Alice's pulses by a tracked synchronization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from experiments.calibration.settings import CalibrationSettings
from experiments.sync.acquire import acquire_sync
from experiments.sync.alice import DETECTOR_STATES, AliceSide, alice_of
from experiments.sync.model import SyncError, SyncResult
from experiments.sync.plan import sync_settings
from experiments.sync.settings import SyncSettings
from experiments.sync.tracker import SyncTracker, relock
from labctl.interfaces.devices import (
    Laser,
    OpticalSwitch,
    PolarizationController,
    SinglePhotonDetector,
    TimeTagger,
)
from labctl.interfaces.units import ps_to_seconds
from labctl.runner.plan_context import PlanContext

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

ROLES: dict[str, tuple[type[Any], str]] = {
    "laser": (Laser, "Alice's laser"),
    "pc": (PolarizationController, "Bob's polarization controller"),
    "detectors": (SinglePhotonDetector, "Bob's detectors"),
    "tagger": (TimeTagger, "Bob's time tagger"),
    "switch": (OpticalSwitch, "the optical switch"),
}


class CalibrationFailed(Exception):
    """A routine cannot pass; the message is the reason shown to the technician."""


@dataclass(slots=True)
class RoutineResult:
    """The verdict of one calibration routine."""

    name: str
    instrument: str
    passed: bool
    reason: str
    values: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None


@dataclass(frozen=True, slots=True)
class Capture:
    """Fresh tags of Bob's detectors mapped onto Alice's pulses."""

    time_ps: I64
    channel: U8
    pulse_index: I64
    residual_ps: F64
    span_s: float

    def __len__(self) -> int:
        return int(self.time_ps.size)


class Session:
    """One calibration session on a run: settings, instruments, sync, captures."""

    def __init__(self, run: PlanContext, settings: CalibrationSettings, sync: SyncSettings) -> None:
        self.run = run
        self.settings = settings
        self.sync_settings = sync
        self.clock = run.clock
        self._alice: AliceSide | None = None
        self.tracker: SyncTracker | None = None
        self.dark_rates_hz: dict[str, float] = {}
        self.dead_time_ps: dict[str, float] = {}

    @classmethod
    def of(cls, run: PlanContext) -> Session:
        """A session with the station's ``calibration:`` and ``sync:`` sections validated."""
        config = getattr(run.station, "config", None)
        raw = config.raw_section("calibration") if config is not None else None
        settings = CalibrationSettings.from_section(raw, getattr(config, "file", None))
        return cls(run, settings, sync_settings(run.station))

    @property
    def alice(self) -> AliceSide:
        """Alice's node (her design, transmitter and pattern record)."""
        if self._alice is None:
            try:
                self._alice = alice_of(self.run.station)
            except LookupError as exc:
                raise CalibrationFailed(str(exc)) from None
        return self._alice

    def name_of(self, role: str) -> str:
        """Station name of the instrument playing ``role``."""
        return str(self.settings.section("instruments")[role])

    def get(self, role: str) -> Any:
        """The instrument playing ``role`` (CalibrationFailed when missing or wrong kind)."""
        kind, what = ROLES[role]
        name = self.name_of(role)
        found = self.run.station.instruments.get(name)
        if found is None:
            known = ", ".join(sorted(self.run.station.instruments)) or "none"
            raise CalibrationFailed(
                f"refused: {what} {name!r} is not in the station (instruments: {known}; "
                f"set calibration.instruments.{role})"
            )
        if not isinstance(found, kind):
            raise CalibrationFailed(f"refused: {name!r} is not a {kind.__name__} ({what})")
        return found

    async def require(self, *roles: str) -> None:
        """Refuse to start unless every instrument of ``roles`` is present and healthy."""
        problems = []
        for role in roles:
            inst = self.get(role)
            try:
                health = await inst.health()
            except Exception as exc:
                problems.append(f"{self.name_of(role)}: {type(exc).__name__}: {exc}")
                continue
            if not health.ok:
                problems.append(f"{self.name_of(role)}: {health.detail}")
        if problems:
            raise CalibrationFailed("refused: unhealthy instrument(s): " + "; ".join(problems))

    def detector_names(self) -> list[str]:
        """Detector name (Z0, Z1, X0, X1) of every channel of the detector instrument."""
        det = self.get("detectors")
        names = getattr(det, "detectors", None)
        if isinstance(names, list) and len(names) == det.n_channels:
            return [str(n) for n in names]
        return list(DETECTOR_STATES)[: det.n_channels]

    def tagger_channel_of(self) -> dict[str, int]:
        """Tagger channel of every detector name."""
        return {name: ch for ch, name in self.sync_settings.channels.items()}

    def bob_port(self) -> int:
        """The switch port wired to Bob's receiver."""
        port = self.settings.section("link")["bob_port"]
        if port is None:
            port = getattr(self.get("switch"), "bob_port", None)
        if port is None:
            self.settings.require("link", "bob_port")
        return int(port)

    async def light_on(self, power_mw: float | None = None) -> None:
        """Laser on at ``power_mw`` (Alice's nominal power by default), detectors armed."""
        laser = self.get("laser")
        await laser.set_power_mw(self.alice.nominal_power_mw if power_mw is None else power_mw)
        await laser.set_output(True)
        det = self.get("detectors")
        for channel in range(det.n_channels):
            await det.set_enabled(channel, True)
        await self.get("switch").set_port(self.bob_port())
        await self.alice.ensure_light()

    async def synchronize(self) -> SyncResult:
        """Acquire synchronization (once per session) and start tracking it."""
        if self.tracker is None:
            try:
                result = await acquire_sync(
                    self.get("tagger"),
                    self.alice,
                    self.clock,
                    self.sync_settings,
                )
            except SyncError as exc:
                raise CalibrationFailed(f"no synchronization: {exc}") from None
            self.run.emit("sync", result.summary())
            self.tracker = SyncTracker(result)
        return self.tracker.result

    async def raw_tags(self, seconds: float) -> tuple[I64, U8, float]:
        """``seconds`` of fresh tags (Bob's clock) without synchronization."""
        tagger = self.get("tagger")
        await tagger.stop_stream()
        await tagger.start_stream()
        times, channels = [], []
        start: int | None = None
        stop = 0
        while start is None or ps_to_seconds(stop - start) < seconds:
            batch = await tagger.read_batch(self.sync_settings.batch_timeout_s)
            start = batch.start_ps if start is None else start
            stop = batch.stop_ps
            times.append(batch.time_ps)
            channels.append(batch.channel)
        return np.concatenate(times), np.concatenate(channels), ps_to_seconds(stop - (start or 0))

    async def capture(self, seconds: float) -> Capture:
        """``seconds`` of fresh tags (Bob's clock), each mapped to Alice's pulse index."""
        await self.synchronize()
        assert self.tracker is not None
        await self.alice.ensure_light()
        tagger = self.get("tagger")
        # relock restarts the stream (dropping tags recorded before the last change) and
        # brings the phase up to date after a pause: without it the first batch after a long
        # dark-count integration lands ~100 ps off and broadens every residual statistic.
        try:
            await relock(self.tracker, tagger, timeout_s=self.sync_settings.batch_timeout_s)
        except SyncError as exc:
            raise CalibrationFailed(f"synchronization lost before capture: {exc}") from None
        timeout = self.sync_settings.batch_timeout_s
        parts: list[tuple[I64, U8, I64, F64]] = []
        start: int | None = None
        stop = 0
        while start is None or ps_to_seconds(stop - start) < seconds:
            batch = await tagger.read_batch(timeout)
            start = batch.start_ps if start is None else start
            stop = batch.stop_ps
            tracked = self.tracker.update(batch)
            parts.append((batch.time_ps, batch.channel, tracked.pulse_index, tracked.residual_ps))
        return Capture(
            time_ps=np.concatenate([p[0] for p in parts]),
            channel=np.concatenate([p[1] for p in parts]),
            pulse_index=np.concatenate([p[2] for p in parts]),
            residual_ps=np.concatenate([p[3] for p in parts]),
            span_s=ps_to_seconds(stop - (start or 0)),
        )
