"""The World: one simulated optical lab shared by every twin of a station.

Time is one line of sim time. Tags are generated lazily, a slice at a time, when a twin
reads; generating a slice advances the virtual clock to its end, and a slice never crosses
a pending clock timer, so scheduled faults take effect at their sim time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.pattern import PulsePattern as StatePattern
from labctl.interfaces.tags import TagBatch
from sims.clock import VirtualClock
from sims.world import kernels
from sims.world.allocator import keep_freed_memory
from sims.world.blinding import BlindingState, blinding_state, trigger_clicks
from sims.world.detectors import I64, DetectorBank
from sims.world.events import F64, ClickTable, PhotonSampler
from sims.world.optics import OpticalPath
from sims.world.program import PatternProgram
from sims.world.settings import DETECTOR_NAMES, WorldSettings, parse_world_settings
from sims.world.source import PulsePattern
from sims.world.tagger import TaggerModel
from sims.world.truth import WorldTruth, snapshot_of
from sims.world.validate import Where

SIDES = ("alice", "bob")
_PS_PER_S = 1_000_000_000_000


class World:
    """Source, fiber, switch, controller, receiver, detectors and two taggers on one clock."""

    def __init__(self, settings: WorldSettings, clock: VirtualClock | None = None) -> None:
        self.settings = settings
        if settings.tune_allocator:
            keep_freed_memory()
        self.clock = clock if clock is not None else VirtualClock()
        # Compiled loops when numba is there (and allowed): same physics, several times faster.
        jit = kernels.load() if settings.compiled_kernels else None
        self.compiled = jit is not None
        self.optics = OpticalPath(settings)
        self.detectors = DetectorBank(settings.detectors, settings.source.rate_hz, jit)
        self._sampler = PhotonSampler(self.optics.source, settings.seed, jit)
        self.taggers = {
            "alice": TaggerModel(settings.alice_tagger, "alice", jit),
            "bob": TaggerModel(settings.bob_tagger, "bob", jit),
        }
        # SFC64 is the fastest numpy bit generator; the seed sequence keeps it reproducible.
        self._rng = np.random.Generator(
            np.random.SFC64(np.random.SeedSequence([settings.seed, 0xE7E47]))
        )
        self.period_ps = settings.source.period_ps
        self._cursor_ps = self._align_up(round(self.clock.now_s() * _PS_PER_S))
        self._generating = False
        self._detector_counts = np.zeros(len(DETECTOR_NAMES), dtype=np.int64)
        self._sync_counts = 0
        self._table_cache: tuple[F64, F64, ClickTable] | None = None

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | None = None, *, clock: VirtualClock | None = None
    ) -> World:
        """Build from a plain settings mapping (ConfigError on bad input)."""
        return cls(parse_world_settings(settings), clock)

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> World:
        """Build from the station's ``world:`` section."""
        where = Where("world.settings", spec.source.file, spec.source.line)
        clock = context.clock if isinstance(context.clock, VirtualClock) else None
        return cls(parse_world_settings(spec.settings, where), clock)

    # ----------------------------------------------------------------- reading
    def warm_up(self) -> None:
        """Compile the event kernels now, on a scratch copy of this world (state untouched).

        numba compiles on first use: seconds on a cold cache, during which a server built on
        this world would not answer. Calling this before serving keeps the first instrument
        call within its timeout. A no-op on the pure-numpy path.
        """
        if not self.compiled:
            return
        scratch = World(self.settings)
        for side in ("alice", "bob"):
            scratch.start_stream(side)
            scratch.read_batch(side)
            scratch.stop_stream(side)
        scratch.detector_count_rates_hz(1e-4)

    def alice_pattern(self, indices: Sequence[int] | I64) -> PulsePattern:
        """Alice's basis, bit and intensity class of any pulses (her own record)."""
        return self.optics.source.pattern(np.asarray(indices, dtype=np.int64))

    # -- Alice's transmitter ---------------------------------------------------------------

    def attach_transmitter(self) -> None:
        """A transmitter twin drives the source from now on (no light until it starts)."""
        self._catch_up()
        self.optics.source.attach_program()

    def _program(self) -> PatternProgram:
        program = self.optics.source.program
        if program is None:
            raise RuntimeError("no transmitter is attached to this world")
        return program

    def _now_pulse(self) -> int:
        """The first pulse not yet emitted: everything before it is already generated."""
        self._catch_up()
        now_ps = round(self.clock.now_s() * _PS_PER_S)
        return max(self._cursor_ps, self._align_up(now_ps)) // self.period_ps

    def transmitter_load(self, pattern: StatePattern, repeat: bool) -> None:
        """Stop playing and stage ``pattern`` (cycled when ``repeat``) for the next start."""
        n_classes = len(self.settings.source.intensities)
        if len(pattern) and int(pattern.intensity.max()) >= n_classes:
            raise ValueError(f"intensity class codes must be below {n_classes}")
        self._program().load(pattern, repeat, self._now_pulse())

    def transmitter_append(self, pattern: StatePattern) -> None:
        """Queue a chunk right after the last one."""
        n_classes = len(self.settings.source.intensities)
        if len(pattern) and int(pattern.intensity.max()) >= n_classes:
            raise ValueError(f"intensity class codes must be below {n_classes}")
        self._program().append(pattern, self._now_pulse())

    def transmitter_start(self) -> int:
        """Start playing at the next pulse; returns that pulse's index."""
        return self._program().start(self._now_pulse())

    def transmitter_stop(self) -> None:
        """No light from the next pulse on."""
        self._program().stop(self._now_pulse())

    def transmitter_running(self) -> bool:
        """True while a pattern plays."""
        return self._program().is_running(self._now_pulse())

    def start_stream(self, side: str) -> None:
        """Start the tagger of ``side`` ("alice" or "bob") streaming from now."""
        tagger = self._tagger(side)
        self._catch_up()
        tagger.start(self._cursor_ps + self._side_delay_ps(side), self._guard_ps())

    def stop_stream(self, side: str) -> None:
        """Stop that tagger's stream; unread batches are dropped."""
        self._tagger(side).stop()

    def is_streaming(self, side: str) -> bool:
        """True while that tagger streams."""
        return self._tagger(side).streaming

    def read_batch(self, side: str) -> TagBatch:
        """The next batch of that tagger, generating (and advancing the clock) when needed."""
        tagger = self._tagger(side)
        if not tagger.streaming:
            raise RuntimeError(f"read_batch: the {side} tagger is not streaming")
        # The backlog since the last read is generated a slice at a time as it is read, not
        # all at once: after a pause it is up to a tagger buffer (buffer_s) of tags, tens of
        # millions at a blinded detector's rate. Mutators catch up before they change the
        # world, so lazily generated data still shows the world as it was at its time.
        self._drop_unbuffered()
        while not tagger.has_batch():
            self._generate_slice(self._next_slice_end())
        return tagger.pop()

    def detector_count_rates_hz(self, integration_s: float) -> list[float]:
        """Output click rate of Z0, Z1, X0, X1 over the next ``integration_s`` of sim time."""
        counts, duration_s = self._count(integration_s)
        return [float(c) / duration_s for c in counts[0]]

    def tagger_count_rates_hz(self, side: str, integration_s: float) -> list[float]:
        """Input rate of every channel of that tagger over the next ``integration_s``."""
        tagger = self._tagger(side)
        (detector_counts, sync_counts), duration_s = self._count(integration_s)
        rates = [0.0] * tagger.settings.n_channels
        if side == "alice":
            rates[tagger.settings.sync_channel] = sync_counts / duration_s
        else:
            for det, channel in enumerate(tagger.settings.detector_channels):
                rates[channel] = float(detector_counts[det]) / duration_s
        return rates

    # ---------------------------------------------------------------- mutators
    def set_laser_enabled(self, enabled: bool) -> None:
        """Laser output on or off."""
        self._catch_up()
        self.optics.source.enabled = bool(enabled)

    def set_laser_power_mw(self, power_mw: float) -> None:
        """Laser power; every mean photon number scales with it."""
        self._catch_up()
        self.optics.set_laser_power_mw(power_mw)

    def set_wavelength_nm(self, wavelength_nm: float) -> None:
        """Laser wavelength (recorded in snapshots)."""
        self._catch_up()
        self.optics.set_wavelength_nm(wavelength_nm)

    def set_switch_port(self, port: int) -> None:
        """Route the switch to ``port`` (1..n_ports)."""
        self._catch_up()
        self.optics.switch.set_port(port)

    def switch_port(self) -> int:
        """The port the switch routes to."""
        return self.optics.switch.port

    def set_pc_voltages_mv(self, voltages_mv: Sequence[float]) -> None:
        """Bob's four squeezer voltages in millivolts."""
        self._catch_up()
        self.optics.set_pc_voltages_mv(voltages_mv)

    def pc_voltages_mv(self) -> list[float]:
        """Bob's four squeezer voltages in millivolts."""
        return list(self.optics.controller.voltages_mv)

    def set_detector_enabled(self, detector: int, enabled: bool) -> None:
        """Arm or disarm one detector (0..3 = Z0, Z1, X0, X1)."""
        self._catch_up()
        self.detectors.states[self._detector(detector)].enabled = bool(enabled)

    def set_detector_efficiency(self, detector: int, efficiency: float) -> None:
        """Detection efficiency of one detector, in [0, 1]."""
        if not 0.0 <= efficiency <= 1.0:
            raise ValueError(
                f"set_detector_efficiency: efficiency must be in [0, 1], got {efficiency}"
            )
        self._catch_up()
        self.detectors.states[self._detector(detector)].efficiency = float(efficiency)

    def set_dark_count_rate_hz(self, detector: int, rate_hz: float) -> None:
        """Dark count rate of one detector."""
        if not 0.0 <= rate_hz < math.inf:
            raise ValueError(f"set_dark_count_rate_hz: rate_hz must be finite, >= 0, got {rate_hz}")
        self._catch_up()
        self.detectors.states[self._detector(detector)].dark_rate_hz = float(rate_hz)

    def latch_detector(self, detector: int) -> None:
        """Latch a detector: it outputs nothing until ``reset_latch``."""
        self._catch_up()
        self.detectors.states[self._detector(detector)].latched = True

    def reset_latch(self, detector: int) -> None:
        """Cycle the bias of a latched detector so it counts again."""
        self._catch_up()
        self.detectors.states[self._detector(detector)].latched = False

    def is_latched(self, detector: int) -> bool:
        """True when that detector is latched."""
        return self.detectors.states[self._detector(detector)].latched

    def set_blinding(self, enabled: bool) -> None:
        """Blinding attack on or off."""
        self._catch_up()
        self.optics.blinding = bool(enabled)

    def jump_polarization(self, angle_rad: float, axis: Sequence[float] | None = None) -> None:
        """Rotate the fiber's polarization by ``angle_rad`` on the Poincaré sphere."""
        if not math.isfinite(angle_rad):
            raise ValueError(f"jump_polarization: angle_rad must be finite, got {angle_rad}")
        self._catch_up()
        self.optics.fiber.jump(angle_rad, axis)

    def set_eve_fraction(self, fraction: float) -> None:
        """Intercept-resend on a fraction of pulses (attack window on/off)."""
        self._catch_up()
        self.optics.set_eve_fraction(fraction)

    def set_tagger_channel_delay_ps(self, side: str, channel: int, delay_ps: int) -> None:
        """Delay added by a tagger to one of its channels."""
        tagger = self._tagger(side)
        self._tagger_channel(tagger, channel)
        if isinstance(delay_ps, bool) or not isinstance(delay_ps, int | np.integer):
            raise ValueError(
                f"set_tagger_channel_delay_ps: delay_ps must be an int, got {delay_ps!r}"
            )
        self._catch_up()
        tagger.channel_delays_ps[channel] = int(delay_ps)

    def tagger_channel_delay_ps(self, side: str, channel: int) -> int:
        """Delay a tagger adds to one of its channels."""
        tagger = self._tagger(side)
        return tagger.channel_delays_ps[self._tagger_channel(tagger, channel)]

    def set_tagger_max_rate_hz(self, side: str, rate_hz: float) -> None:
        """Lower (or raise) the rate above which a tagger drops tags."""
        if not 0.0 < rate_hz < math.inf:
            raise ValueError(
                f"set_tagger_max_rate_hz: rate_hz must be finite and > 0, got {rate_hz}"
            )
        self._catch_up()
        self._tagger(side).max_rate_hz = float(rate_hz)

    def force_tagger_overflow(self, side: str, duration_s: float) -> None:
        """Make a tagger drop every tag for the next ``duration_s`` of sim time (flagged)."""
        if not 0.0 <= duration_s < math.inf:
            raise ValueError(
                f"force_tagger_overflow: duration_s must be finite, >= 0, got {duration_s}"
            )
        self._catch_up()
        until = self._cursor_ps + self._side_delay_ps(side) + round(duration_s * _PS_PER_S)
        self._tagger(side).overflow_until_ps = until

    # ------------------------------------------------------------ ground truth
    @property
    def truth(self) -> WorldTruth:
        """What calibrations should find (tests only; plans must not read it)."""
        return WorldTruth.of(self)

    def snapshot(self) -> dict[str, Any]:
        """All current settings and state as JSON-able values."""
        return snapshot_of(self)

    # -------------------------------------------------------------- generation
    def _tagger(self, side: str) -> TaggerModel:
        if side not in self.taggers:
            raise ValueError(f"unknown tagger side {side!r}; expected one of {SIDES}")
        return self.taggers[side]

    @staticmethod
    def _tagger_channel(tagger: TaggerModel, channel: int) -> int:
        if not 0 <= channel < tagger.settings.n_channels:
            top = tagger.settings.n_channels - 1
            raise ValueError(f"{tagger.side} tagger channel {channel} outside 0..{top}")
        return channel

    @staticmethod
    def _detector(detector: int) -> int:
        if isinstance(detector, bool) or not 0 <= detector < len(DETECTOR_NAMES):
            raise ValueError(f"detector index {detector!r} outside 0..3 (Z0, Z1, X0, X1)")
        return detector

    def _side_delay_ps(self, side: str) -> int:
        return self.optics.fiber_delay_ps if side == "bob" else 0

    def _guard_ps(self) -> int:
        return self.detectors.guard_ps()

    def _align_up(self, t_ps: int) -> int:
        return -(-t_ps // self.period_ps) * self.period_ps

    def _expected_rate_hz(self) -> float:
        mean = self.optics.mean_photons_at_bob()
        peak = (
            float(-np.expm1(-mean.max() * self.detectors.efficiencies().max()))
            if mean.size
            else 0.0
        )
        self._blinding()
        darks = sum(s.background_hz for s in self.detectors.states)
        return self.settings.source.rate_hz * peak + darks + 1.0

    def _next_slice_end(self) -> int:
        settings = self.settings
        length_s = min(
            settings.slice_max_s, settings.slice_target_events / self._expected_rate_hz()
        )
        end = self._cursor_ps + max(self.period_ps, round(length_s * _PS_PER_S))
        timer = self.clock.next_timer_s()
        if timer is not None:
            timer_ps = (round(timer * _PS_PER_S) // self.period_ps) * self.period_ps
            if self._cursor_ps < timer_ps < end:
                end = timer_ps
        return self._align_up(end)

    def _catch_up(self) -> None:
        """Generate (for streaming taggers) up to the clock, so changes start from now."""
        if self._generating:
            return
        now_ps = round(self.clock.now_s() * _PS_PER_S)
        streaming = [t for t in self.taggers.values() if t.streaming]
        if not streaming:
            self._cursor_ps = max(self._cursor_ps, self._align_up(now_ps))
            self.optics.fiber.advance_to(self._cursor_ps / _PS_PER_S)
            return
        self._drop_unbuffered()
        while self._cursor_ps < now_ps:
            self._generate_slice(min(self._next_slice_end(), self._align_up(now_ps)))

    def _drop_unbuffered(self) -> None:
        """Skip what nobody read for longer than the streaming taggers can buffer (lost)."""
        streaming = [t for t in self.taggers.values() if t.streaming]
        if not streaming or self._generating:
            return
        now_ps = round(self.clock.now_s() * _PS_PER_S)
        backlog_ps = round(max(t.settings.buffer_s for t in streaming) * _PS_PER_S)
        if now_ps - self._cursor_ps > backlog_ps:
            self._cursor_ps = self._align_up(now_ps - backlog_ps)
            for side, tagger in self.taggers.items():
                tagger.note_skipped(self._cursor_ps + self._side_delay_ps(side), self._guard_ps())

    def _count(self, integration_s: float) -> tuple[tuple[I64, int], float]:
        if not 0.0 < integration_s < math.inf:
            raise ValueError(f"integration_s must be finite and > 0, got {integration_s}")
        self._catch_up()
        start = self._cursor_ps
        end = self._align_up(start + round(integration_s * _PS_PER_S))
        det_before, sync_before = self._detector_counts.copy(), self._sync_counts
        while self._cursor_ps < end:
            self._generate_slice(min(self._next_slice_end(), end))
        duration_s = (self._cursor_ps - start) / _PS_PER_S
        return (self._detector_counts - det_before, self._sync_counts - sync_before), duration_s

    def _generate_slice(self, end_ps: int) -> None:
        """Generate pulses emitted in [cursor, end_ps) and everything they cause."""
        self._generating = True
        try:
            self._generate(self._cursor_ps, end_ps)
        finally:
            self._generating = False
        self._cursor_ps = end_ps
        end_s = end_ps / _PS_PER_S
        if end_s > self.clock.now_s():
            self.clock.advance_to(end_s)

    def _blinding(self) -> BlindingState:
        """Eve's blinding light on the detectors now; sets their CW-light click rates."""
        state = blinding_state(self.settings, self.optics, self.detectors.efficiencies())
        for detector, rate_hz in zip(self.detectors.states, state.cw_click_rate_hz, strict=True):
            detector.light_rate_hz = float(rate_hz)
        return state

    def detector_light_power_w(self) -> list[float]:
        """Optical CW power on each detector (Eve's blinding light; 0 without it)."""
        return [float(p) for p in self._blinding().cw_power_w]

    def _click_table(self) -> ClickTable:
        """The click-pattern table for the current optics, rebuilt only when they change."""
        mean = self.optics.mean_photons_at_bob()
        weights = self.optics.weights(self.detectors.efficiencies())
        cached = self._table_cache
        if cached is None or not (
            np.array_equal(cached[0], mean) and np.array_equal(cached[1], weights)
        ):
            cached = (mean, weights, ClickTable.build(mean, weights))
            self._table_cache = cached
        return cached[2]

    def _generate(self, t0_ps: int, t1_ps: int) -> None:
        optics, period = self.optics, self.period_ps
        optics.fiber.advance_to(t0_ps / _PS_PER_S)
        n0, n1 = t0_ps // period, t1_ps // period
        delay = optics.fiber_delay_ps
        blind = self._blinding()
        if optics.blinding:
            index, state = self._sampler.blinding_triggers(
                self._rng, n0, n1, self.settings.eve.blinding_detection_efficiency
            )
            # Eve took every pulse: Bob gets her triggers only (clicks when blinded).
            index, detector = trigger_clicks(index, state, blind.fires)
            arrival_ps = index * period + delay
        else:
            table = self._click_table()
            program = optics.source.program
            # A transmitter lights only the pulses of its patterns: skip the dark stretches.
            spans = [(n0, n1)] if program is None else program.covered(n0, n1)
            parts = [
                self._sampler.signal_clicks(
                    self._rng, lo, hi, table, optics.eve_fraction, (period, delay)
                )
                for lo, hi in spans
            ]
            if len(parts) == 1:
                arrival_ps, detector = parts[0]
            elif parts:
                arrival_ps = np.concatenate([p[0] for p in parts])
                detector = np.concatenate([p[1] for p in parts])
            else:
                arrival_ps = np.zeros(0, dtype=np.int64)
                detector = np.zeros(0, dtype=np.uint8)
        time_ps, detector = self.detectors.process(
            self._rng,
            arrival_ps,
            detector,
            t0_ps + delay,
            t1_ps + delay,
            blinded=blind.blinded,
        )
        self._detector_counts += self.detectors.output_counts
        guard = self._guard_ps()
        bob = self.taggers["bob"]
        if bob.streaming:
            time_ps = self.detectors.add_jitter(self._rng, time_ps, detector)
            wiring = bob.settings.detector_channels
            channel = detector if wiring == (0, 1, 2, 3) else np.asarray(wiring, np.uint8)[detector]
            batch = bob.record(channel, time_ps, t1_ps + delay, guard)
            if batch is not None:
                bob.enqueue(batch)
        alice = self.taggers["alice"]
        divider = alice.settings.sync_divider
        first_sync = -(-n0 // divider) * divider
        self._sync_counts += max(0, -(-(n1 - first_sync) // divider))
        program = optics.source.program
        if alice.streaming:
            sync_times = np.arange(first_sync, n1, divider, dtype=np.int64) * period
            sync_channel = np.full(sync_times.size, alice.settings.sync_channel, dtype=np.uint8)
            if program is not None:
                frames = program.frame_starts(n0, n1) * period
                if frames.size:
                    sync_times = np.concatenate([sync_times, frames])
                    sync_channel = np.concatenate(
                        [sync_channel, np.full(frames.size, alice.settings.frame_channel, np.uint8)]
                    )
                    order = np.argsort(sync_times, kind="stable")
                    sync_times, sync_channel = sync_times[order], sync_channel[order]
            batch = alice.record(sync_channel, sync_times, t1_ps, guard)
            if batch is not None:
                alice.enqueue(batch)
        if program is not None:
            program.forget_before(n0)
