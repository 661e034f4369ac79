"""What Alice's node knows and may reveal: her pulse clock, her pattern, her marker timing.

Synchronization, calibration and key generation need Alice's side of the link: her pulse
period, her design (intensity classes, basis probability), and the states of the pulses she
reveals (public calibration frames, sifting answers). All of it comes from her own
instruments: her transmitter plays patterns she draws, and her tagger's frame markers tell
her which pulse carried which state. Nothing here reads a simulation.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from experiments.sync.record import Played, PlayRecord
from labctl.interfaces.devices import TimeTagger, Transmitter
from labctl.interfaces.errors import ConfigError
from labctl.interfaces.pattern import (
    NOT_SENT,
    PackedCodes,
    PatternMode,
    PulsePattern,
    secret_chunks,
    secret_pattern,
    seeded_pattern,
)
from labctl.interfaces.units import PS_PER_S

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

DETECTOR_STATES = {"Z0": (0, 0), "Z1": (0, 1), "X0": (1, 0), "X1": (1, 1)}
"""Bob's detector name -> (basis 0=Z/1=X, bit) it reports."""


@dataclass(frozen=True, slots=True)
class AlicePattern:
    """Alice's choices for some pulses: basis (0=Z, 1=X), bit and intensity class code.

    ``intensity`` is 255 for a pulse she prepared no state for (no light).
    """

    basis: U8
    bit: U8
    intensity: U8


class AlicePublic(Protocol):
    """Alice's node as the sync and calibration plans see it."""

    @property
    def period_ps(self) -> int:
        """Her pulse period in picoseconds."""
        ...

    @property
    def intensity_names(self) -> tuple[str, ...]:
        """Intensity classes in code order (0, 1, 2...)."""
        ...

    @property
    def intensity_mu(self) -> tuple[float, ...]:
        """Design mean photon number of every class at her nominal power."""
        ...

    @property
    def nominal_power_mw(self) -> float:
        """The laser power at which ``intensity_mu`` hold."""
        ...

    @property
    def intensity_probability(self) -> tuple[float, ...]:
        """Probability of every intensity class (her design)."""
        ...

    @property
    def basis_z_probability(self) -> float:
        """Probability that she prepares a pulse in the Z basis."""
        ...

    def pattern(self, indices: I64) -> AlicePattern:
        """Her basis, bit and intensity class of the given pulses."""
        ...


class AliceSide(AlicePublic, Protocol):
    """Alice's node as Bob's plans drive it: here (her instruments) or over the link."""

    async def ensure_light(self) -> None:
        """Make sure the public calibration frame is playing."""
        ...

    async def play_marker_frame(
        self, frame: PulsePattern, gaps: int, gap_pulses: int, seed: int
    ) -> int:
        """Play the public marker frame (``marker_frame(..., seed)``) once; its first pulse."""
        ...

    async def play_key_block(self, n_pulses: int) -> tuple[int, int]:
        """Play ``n_pulses`` fresh states once; (her index of the first, span to read)."""
        ...

    def reserve(self, block_pulses: int, blocks: int) -> None:
        """Keep the states of up to ``blocks`` blocks in flight."""
        ...


@dataclass(frozen=True, slots=True)
class SourceDesign:
    """Alice's design from the station's ``alice:`` section."""

    period_ps: int
    intensity_names: tuple[str, ...]
    intensity_mu: tuple[float, ...]
    intensity_probability: tuple[float, ...]
    basis_z_probability: float
    nominal_power_mw: float
    transmitter: str = "transmitter"
    tagger: str = "tagger-alice"
    frame_channel: int = 1
    calibration_frame_pulses: int = 1 << 20
    marker_timeout_s: float = 5.0

    @classmethod
    def from_section(cls, section: Any, file: str | None = None) -> SourceDesign:
        """Parse ``alice:``; ConfigError naming the field."""
        if not isinstance(section, Mapping) or not section:
            raise ConfigError(
                "the station has no `alice:` section (Alice's pulse rate and decoy design)",
                file=file,
                field="alice",
            )
        known = {
            "rate_hz",
            "intensities",
            "basis_z_probability",
            "nominal_power_mw",
            "transmitter",
            "tagger",
            "frame_channel",
            "calibration_frame_pulses",
            "marker_timeout_s",
        }
        for key in section:
            if key not in known:
                raise ConfigError(
                    f"unknown key (known: {', '.join(sorted(known))})",
                    file=file,
                    field=f"alice.{key}",
                )

        def number(key: str, low: float, high: float, default: float | None = None) -> float:
            value = section.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(
                    f"must be a number, got {value!r}", file=file, field=f"alice.{key}"
                )
            if not low <= float(value) <= high:
                raise ConfigError(
                    f"{value!r} outside {low}..{high}", file=file, field=f"alice.{key}"
                )
            return float(value)

        rate_hz = number("rate_hz", 1.0, 1e12)
        period_ps = round(PS_PER_S / rate_hz)
        if abs(period_ps * rate_hz - PS_PER_S) > 1e-6 * PS_PER_S:
            raise ConfigError(
                f"1 s / {rate_hz} Hz is not a whole number of picoseconds",
                file=file,
                field="alice.rate_hz",
            )
        classes = section.get("intensities")
        if not isinstance(classes, Mapping) or not classes:
            raise ConfigError(
                "must map class names to {mu, probability}", file=file, field="alice.intensities"
            )
        names, mus, probs = [], [], []
        for name, spec in classes.items():
            where = f"alice.intensities.{name}"
            if not isinstance(spec, Mapping) or set(spec) != {"mu", "probability"}:
                raise ConfigError("must be {mu: M, probability: P}", file=file, field=where)
            mu, prob = spec["mu"], spec["probability"]
            if isinstance(mu, bool) or not isinstance(mu, int | float) or not 0 <= mu <= 100:
                raise ConfigError(f"mu must be in 0..100, got {mu!r}", file=file, field=where)
            if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0 < prob <= 1:
                raise ConfigError(
                    f"probability must be in (0, 1], got {prob!r}", file=file, field=where
                )
            names.append(str(name))
            mus.append(float(mu))
            probs.append(float(prob))
        if abs(sum(probs) - 1.0) > 1e-9:
            raise ConfigError(
                f"probabilities sum to {sum(probs)}, not 1", file=file, field="alice.intensities"
            )
        names_ok = {"transmitter", "tagger"}
        strings = {}
        for key in names_ok:
            value = section.get(key, getattr(cls, key))
            if not isinstance(value, str) or not value:
                raise ConfigError(
                    f"must be an instrument name, got {value!r}", file=file, field=f"alice.{key}"
                )
            strings[key] = value
        return cls(
            period_ps=period_ps,
            intensity_names=tuple(names),
            intensity_mu=tuple(mus),
            intensity_probability=tuple(probs),
            basis_z_probability=number("basis_z_probability", 0.0, 1.0, 0.5),
            nominal_power_mw=number("nominal_power_mw", 1e-6, 1e3, 1.0),
            transmitter=strings["transmitter"],
            tagger=strings["tagger"],
            frame_channel=int(number("frame_channel", 0, 255, 1)),
            calibration_frame_pulses=int(number("calibration_frame_pulses", 1, 1 << 28, 1 << 20)),
            marker_timeout_s=number("marker_timeout_s", 1e-3, 600.0, 5.0),
        )


CALIBRATION_SEED = 0x5EED
"""Seed of the public calibration frame (its states are public: anyone may recompute them)."""


class NoFrameMarker(RuntimeError):
    """Alice's tagger did not see the frame marker of a pattern she started."""


class TransmitterAlice:
    """Alice's node on her own instruments: the transmitter she drives and her tagger.

    It plays public calibration frames (cycling, for calibrations and clock tracking),
    one-shot synchronization frames with dark marker gaps, and fresh key blocks drawn
    from a cryptographic source, and remembers every state by her pulse index.
    """

    def __init__(self, design: SourceDesign, transmitter: Transmitter, tagger: TimeTagger) -> None:
        self.design = design
        self.transmitter = transmitter
        self.tagger = tagger
        self.record = PlayRecord()
        self._lock = asyncio.Lock()
        self._configured = False
        self.calibration_anchor: int | None = None
        self._calibration: PulsePattern | None = None

    @property
    def calibration_frame(self) -> PulsePattern:
        """The public calibration frame: seeded, at most the transmitter's memory long."""
        if self._calibration is None:
            self._calibration = seeded_pattern(
                min(self.design.calibration_frame_pulses, self.transmitter.memory_pulses),
                self.design.intensity_probability,
                self.design.basis_z_probability,
                seed=CALIBRATION_SEED,
            )
        return self._calibration

    # -- AlicePublic ------------------------------------------------------------------------

    @property
    def period_ps(self) -> int:
        """Her pulse period in picoseconds."""
        return self.design.period_ps

    @property
    def intensity_names(self) -> tuple[str, ...]:
        """Intensity classes in code order."""
        return self.design.intensity_names

    @property
    def intensity_mu(self) -> tuple[float, ...]:
        """Design mean photon numbers at nominal power."""
        return self.design.intensity_mu

    @property
    def nominal_power_mw(self) -> float:
        """Power at which the design mean photon numbers hold."""
        return self.design.nominal_power_mw

    @property
    def intensity_probability(self) -> tuple[float, ...]:
        """Probability of every intensity class."""
        return self.design.intensity_probability

    @property
    def basis_z_probability(self) -> float:
        """Probability of the Z basis."""
        return self.design.basis_z_probability

    def pattern(self, indices: I64) -> AlicePattern:
        """Her recorded states of ``indices`` (intensity 255 where she sent no state)."""
        code = self.record.codes(np.asarray(indices, dtype=np.int64))
        sent = code != NOT_SENT
        intensity = np.where(sent, code >> np.uint8(2), np.uint8(NOT_SENT)).astype(np.uint8)
        return AlicePattern(
            basis=((code >> np.uint8(1)) & np.uint8(1)).astype(np.uint8),
            bit=(code & np.uint8(1)).astype(np.uint8),
            intensity=intensity,
        )

    # -- playing ----------------------------------------------------------------------------

    @property
    def may_store_key(self) -> bool:
        """False when her transmitter repeats patterns (a demonstration)."""
        return self.transmitter.pattern_mode is PatternMode.STREAMED

    async def _configure(self) -> None:
        if self._configured:
            return
        period = await self.transmitter.get_period_ps()
        if period != self.design.period_ps:
            await self.transmitter.set_period_ps(self.design.period_ps)
        self._configured = True

    async def _play(
        self, chunks: Iterable[PulsePattern], count: int, repeat: bool, preload: int = 1
    ) -> tuple[list[int], list[PackedCodes]]:
        """Load and start ``count`` chunks back to back; the first pulse index and the state
        codes of each.

        The first ``preload`` chunks are handed over before ``start()`` (pieces of one
        memory fill); the rest are appended while it plays. Loading stops what played
        before, so her tagger's stream, restarted after it, holds only this pattern's frame
        markers. They are read while later chunks are appended: a tagger buffers only so
        long. Chunks are taken from ``chunks`` one at a time (the next one drawn in a thread
        while one uploads) and let go once handed over, so a key block drawn chunk by chunk
        never exists whole: Alice keeps its codes, half a byte a pulse.
        """
        await self._configure()
        source = iter(chunks)
        head = next(source)
        codes = [PackedCodes.of(head)]
        await self.transmitter.load_pattern(head, repeat=repeat)
        del head  # the transmitter has it; the codes are all Alice keeps
        upcoming: asyncio.Future[PulsePattern] | None = None
        for _ in range(1, min(preload, count)):
            # Drawn here, not in a thread: the fill is one step, as a single draw would be
            # (a simulated tagger read meanwhile would run the clock on in the dark).
            chunk = next(source)
            codes.append(PackedCodes.of(chunk))
            await self.transmitter.append_pattern(chunk)
            del chunk
        await self.tagger.stop_stream()
        await self.tagger.start_stream()
        reader = asyncio.create_task(self._frame_markers(count))
        try:
            await self.transmitter.start()
            for i in range(len(codes), count):
                if upcoming is None:
                    upcoming = asyncio.ensure_future(asyncio.to_thread(next, source))
                chunk = await upcoming
                upcoming = None
                if i + 1 < count:
                    upcoming = asyncio.ensure_future(asyncio.to_thread(next, source))
                codes.append(PackedCodes.of(chunk))
                await self.transmitter.append_pattern(chunk)
                del chunk
            starts = await reader
        finally:
            if upcoming is not None:
                await asyncio.gather(upcoming, return_exceptions=True)
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            await self.tagger.stop_stream()
        last = self.record.last_first
        if last is not None and starts[0] < last:
            # Her tagger's clock went back (it restarted): her pulse numbering starts
            # anew, and every state recorded before is void.
            self.record.clear()
            self.calibration_anchor = None
        return starts, codes

    async def _frame_markers(self, count: int) -> list[int]:
        """Pulse indices of the next ``count`` frame markers on her tagger."""
        found: list[int] = []
        channel = self.design.frame_channel
        period = self.design.period_ps
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.design.marker_timeout_s * max(1, count)
        while len(found) < count:
            if loop.time() > deadline:
                raise NoFrameMarker(
                    f"{self.tagger.name} saw {len(found)} of {count} frame markers on channel "
                    f"{channel} within {self.design.marker_timeout_s:g} s per pattern "
                    "(is the transmitter's frame marker wired to Alice's tagger?)"
                )
            batch = await self.tagger.read_batch(self.design.marker_timeout_s)
            times = batch.time_ps[batch.channel == channel]
            found.extend((int(t) + period // 2) // period for t in times)
        return found[:count]

    async def play_calibration_frame(self) -> int:
        """Cycle the public calibration frame; the index of its first pulse."""
        async with self._lock:
            frame = self.calibration_frame
            (first,), (codes,) = await self._play([frame], 1, repeat=True)
            self.record.add(Played(first, codes, repeat=True))
            self.calibration_anchor = first
            return first

    async def ensure_light(self) -> None:
        """Make sure the public calibration frame is playing (it is after any one-shot)."""
        if self.calibration_anchor is None or not await self.transmitter.is_running():
            await self.play_calibration_frame()

    def _chunks(self, pattern: PulsePattern) -> list[PulsePattern]:
        size = self.transmitter.memory_pulses
        return [pattern.slice(i, i + size) for i in range(0, len(pattern), size)]

    async def play_once(self, pattern: PulsePattern) -> int:
        """Play ``pattern`` once (dark after it); the index of its first pulse."""
        chunks = self._chunks(pattern)
        first, _ = await self._play_chunks(chunks, [len(c) for c in chunks])
        return first

    async def _play_chunks(
        self, chunks: Iterable[PulsePattern], sizes: Sequence[int], preload: int = 1
    ) -> tuple[int, int]:
        """Play chunks of the given sizes (each at most the transmitter's upload) once, back
        to back, the first ``preload`` of them handed over before it starts; (first pulse,
        span).

        The span runs to the end of the last chunk: a chunk that reached the transmitter
        late follows a dark gap (an underrun), which Alice sees in her frame markers. On a
        REPEATING device a pattern longer than its memory cannot be played once.
        """
        if len(sizes) > 1 and not self.may_store_key:
            raise ValueError(
                f"{sum(sizes)} pulses exceed {self.transmitter.name}'s memory of "
                f"{self.transmitter.memory_pulses} and it cannot stream chunks back to back"
            )
        async with self._lock:
            starts, codes = await self._play(chunks, len(sizes), repeat=False, preload=preload)
            self.calibration_anchor = None
            for start, chunk_codes in zip(starts, codes, strict=True):
                self.record.add(Played(start, chunk_codes, repeat=False))
            return starts[0], starts[-1] + sizes[-1] - starts[0]

    async def play_marker_frame(
        self, frame: PulsePattern, gaps: int, gap_pulses: int, seed: int
    ) -> int:
        """Play a public marker frame once; the index of its first pulse."""
        return await self.play_once(frame)

    def reserve(self, block_pulses: int, blocks: int) -> None:
        """Keep the states of up to ``blocks`` blocks (each released once served)."""
        self.record.max_pulses = max(self.record.max_pulses, blocks * block_pulses)

    async def play_key_block(self, n_pulses: int) -> tuple[int, int]:
        """Draw ``n_pulses`` states from a cryptographic source and play them once.

        Returns (first pulse, span of pulses to read: the block, plus any underrun gaps,
        whose pulses carry no state). On a REPEATING device whose memory is shorter than
        the block, the frame cycles: the caller must treat the block as a demonstration.
        """
        memory = self.transmitter.memory_pulses
        if n_pulses > memory and not self.may_store_key:
            frame = secret_pattern(
                memory, self.design.intensity_probability, self.design.basis_z_probability
            )
            async with self._lock:
                (first,), (codes,) = await self._play([frame], 1, repeat=True)
                self.record.add(Played(first, codes, repeat=True))
                self.calibration_anchor = None
            return first, n_pulses
        # Drawn piece by piece as the transmitter takes them: a 1e8-pulse block is 300 MB
        # as one pattern, against the 50 MB of codes Alice keeps of it. Pieces that fit
        # the memory together are all handed over before it starts (no underrun possible);
        # a longer block streams the rest while it plays.
        piece = max(1, min(memory, self.transmitter.upload_pulses))
        sizes = [min(piece, n_pulses - i) for i in range(0, n_pulses, piece)]
        preload = max(1, min(len(sizes), memory // piece))
        chunks = secret_chunks(
            n_pulses, piece, self.design.intensity_probability, self.design.basis_z_probability
        )
        return await self._play_chunks(chunks, sizes, preload)


_NODES: weakref.WeakKeyDictionary[Any, AliceSide] = weakref.WeakKeyDictionary()


def _underlying(station: Any) -> Any:
    """The station itself, when a plan sees it through a wrapper (the runner's guard)."""
    return getattr(station, "unguarded", station)


def attach_alice(station: Any, alice: AliceSide) -> None:
    """Make ``alice`` the station's Alice (e.g. her node across the classical link)."""
    _NODES[_underlying(station)] = alice


def alice_of(station: Any) -> AliceSide:
    """Alice's node of a station (one per station), or a clear LookupError."""
    key = _underlying(station)  # the guarded view and the station share one Alice
    found = _NODES.get(key)
    if found is not None:
        return found
    config = getattr(station, "config", None)
    if config is None:
        raise LookupError("no Alice node: the station was not built from a config")
    try:
        design = SourceDesign.from_section(config.raw_section("alice"), config.file)
    except ConfigError as exc:
        raise LookupError(f"no Alice node: {exc}") from None
    instruments = getattr(station, "instruments", {})
    transmitter = instruments.get(design.transmitter)
    tagger = instruments.get(design.tagger)
    if not isinstance(transmitter, Transmitter):
        raise LookupError(
            f"no Alice node: alice.transmitter names {design.transmitter!r}, which is not a "
            "Transmitter instrument of this station"
        )
    if not isinstance(tagger, TimeTagger):
        raise LookupError(
            f"no Alice node: alice.tagger names {design.tagger!r}, which is not a TimeTagger "
            "instrument of this station"
        )
    node = TransmitterAlice(design, transmitter, tagger)
    _NODES[key] = node
    return node
