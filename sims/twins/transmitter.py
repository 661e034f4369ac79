"""SimTransmitter: Alice's state preparation as a twin on the world.

The world's source plays exactly the patterns this twin is given (over the wire when a
wire twin serves it), so a plan that wants key must prepare every pulse's state itself.
The twin models a deep-memory streaming transmitter: chunks of up to ``memory_pulses``
play back to back, none repeated, so key from it may be stored.
"""

from __future__ import annotations

from typing import Any, ClassVar

from labctl.interfaces.instrument import Health
from labctl.interfaces.pattern import PatternMode, PulsePattern
from sims.twins.base import SettingCheck, SimTwin, check_int
from sims.twins.world_api import TransmitterWorld

MEMORY_PULSES = 1 << 28  # a deep-memory AWG class device: 256 Mi states per chunk
UPLOAD_PULSES = 1 << 22  # a one-shot fill comes in pieces this long (12 MB as a pattern)
MARKER_DIVIDER_RANGE = (1, 1 << 30)


class SimTransmitter(SimTwin[TransmitterWorld]):
    """Twin of Alice's transmitter; attaching it makes the world dark until it starts."""

    model: ClassVar[str] = "labctl SimTransmitter"
    settings_checks: ClassVar[dict[str, SettingCheck]] = {
        "period_ps": check_int(1, 1_000_000_000),
        "marker_divider": check_int(*MARKER_DIVIDER_RANGE),
    }

    def __init__(
        self,
        name: str,
        world: TransmitterWorld,
        *,
        timeout_s: float = 2.0,
        period_ps: int | None = None,
        marker_divider: int | None = None,
    ) -> None:
        super().__init__(name, world, timeout_s=timeout_s)
        self._period_ps = int(world.period_ps)
        if period_ps is not None and int(period_ps) != self._period_ps:
            raise ValueError(
                f"period_ps {period_ps} differs from the simulated source's {self._period_ps} ps"
            )
        divider = int(world.settings.alice_tagger.sync_divider)
        if marker_divider is not None and int(marker_divider) != divider:
            raise ValueError(
                f"marker_divider {marker_divider} differs from the simulated tagger's {divider}"
            )
        self._divider = divider
        self._loaded = 0
        self._repeat = False
        world.attach_transmitter()

    @property
    def memory_pulses(self) -> int:
        """The most pulses one chunk may hold."""
        return MEMORY_PULSES

    @property
    def upload_pulses(self) -> int:
        """Pieces of a memory fill: chunks appended before ``start()`` play back to back."""
        return UPLOAD_PULSES

    @property
    def pattern_mode(self) -> PatternMode:
        """Chunks stream back to back: key may be stored."""
        return PatternMode.STREAMED

    async def set_period_ps(self, period_ps: int) -> None:
        """Only the simulated source's period is accepted (the world's clock is fixed)."""
        await self._link("set_period_ps")
        if isinstance(period_ps, bool) or not isinstance(period_ps, int):
            raise self._refuse("set_period_ps", f"period_ps must be an integer, got {period_ps!r}")
        if period_ps != self._period_ps:
            raise self._refuse(
                "set_period_ps",
                f"{period_ps} ps: the simulated source runs at {self._period_ps} ps",
            )

    async def get_period_ps(self) -> int:
        """The pulse period in picoseconds."""
        await self._link("get_period_ps")
        return self._period_ps

    async def set_marker_divider(self, divider: int) -> None:
        """Only the simulated tagger's sync divider is accepted."""
        await self._link("set_marker_divider")
        if isinstance(divider, bool) or not isinstance(divider, int) or divider < 1:
            raise self._refuse("set_marker_divider", f"divider must be >= 1, got {divider!r}")
        if divider != self._divider:
            raise self._refuse(
                "set_marker_divider",
                f"{divider}: the simulated clock marker comes every {self._divider} pulses",
            )

    async def get_marker_divider(self) -> int:
        """Pulses between two clock markers."""
        await self._link("get_marker_divider")
        return self._divider

    def _check_chunk(self, command: str, pattern: PulsePattern) -> None:
        if not isinstance(pattern, PulsePattern):
            raise self._refuse(command, f"expected a PulsePattern, got {type(pattern).__name__}")
        if len(pattern) == 0:
            raise self._refuse(command, "the pattern holds no pulse")
        if len(pattern) > MEMORY_PULSES:
            raise self._refuse(
                command, f"{len(pattern)} pulses exceed the memory of {MEMORY_PULSES}"
            )

    async def load_pattern(self, pattern: PulsePattern, *, repeat: bool) -> None:
        """Stop and stage ``pattern`` (cycled when ``repeat``) for the next start."""
        await self._link("load_pattern")
        self._check_chunk("load_pattern", pattern)
        try:
            self.world.transmitter_load(pattern, bool(repeat))
        except ValueError as exc:
            raise self._refuse("load_pattern", str(exc)) from None
        self._loaded, self._repeat = len(pattern), bool(repeat)

    async def append_pattern(self, pattern: PulsePattern) -> None:
        """Queue a chunk that follows the last one without a gap."""
        await self._link("append_pattern")
        self._check_chunk("append_pattern", pattern)
        if self._repeat:
            raise self._refuse("append_pattern", "the loaded pattern cycles: nothing follows it")
        try:
            self.world.transmitter_append(pattern)
        except ValueError as exc:
            raise self._refuse("append_pattern", str(exc)) from None
        self._loaded += len(pattern)

    async def start(self) -> None:
        """Play from the next pulse (frame marker on its first)."""
        await self._link("start")
        try:
            self.world.transmitter_start()
        except RuntimeError as exc:
            raise self._refuse("start", str(exc)) from None

    async def stop(self) -> None:
        """No light from the next pulse on."""
        await self._link("stop")
        self.world.transmitter_stop()

    async def is_running(self) -> bool:
        """True while a pattern plays."""
        await self._link("is_running")
        return bool(self.world.transmitter_running())

    async def snapshot(self) -> dict[str, Any]:
        """Identity and settings (never the pattern)."""
        await self._link("snapshot")
        return {
            **self._identity(),
            "period_ps": self._period_ps,
            "marker_divider": self._divider,
            "memory_pulses": MEMORY_PULSES,
            "upload_pulses": UPLOAD_PULSES,
            "pattern_mode": str(PatternMode.STREAMED),
            "loaded_pulses": self._loaded,
            "repeat": self._repeat,
        }

    async def safe_state(self) -> None:
        """Stop playing: every pulse dark."""
        await self.stop()

    async def health(self) -> Health:
        """Healthy when it answers."""
        await self._link("health")
        running = bool(self.world.transmitter_running())
        return Health(
            ok=True,
            detail="ok",
            readings={"running": running, "period_ps": self._period_ps},
        )
