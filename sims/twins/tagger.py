"""SimTimeTagger: Alice's or Bob's time tagger as a twin on the world."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from labctl.interfaces.errors import InstrumentTimeout
from labctl.interfaces.instrument import Health
from labctl.interfaces.tags import TagBatch
from labctl.interfaces.units import ps_to_seconds
from sims.twins.base import SettingCheck, SimTwin
from sims.twins.world_api import TaggerWorld

DELAY_RANGE_PS = (-1_000_000_000, 1_000_000_000)  # +-1 ms of programmable delay
MAX_INTEGRATION_S = 3600.0
SIDES = ("alice", "bob")


def _check_side(setting: str, value: Any) -> str:
    """Settings check: which of the world's taggers this twin is."""
    if value not in SIDES:
        raise ValueError(f"{setting}: expected 'alice' or 'bob', got {value!r}")
    return str(value)


class SimTimeTagger(SimTwin[TaggerWorld]):
    """Twin of a time tagger: each read_batch takes the next slice of sim time from the world."""

    model: ClassVar[str] = "labctl SimTimeTagger"
    settings_checks: ClassVar[dict[str, SettingCheck]] = {"side": _check_side}

    def __init__(
        self, name: str, world: TaggerWorld, *, timeout_s: float = 2.0, side: str = "bob"
    ) -> None:
        super().__init__(name, world, timeout_s=timeout_s)
        if side not in SIDES:
            raise ValueError(f"side must be 'alice' or 'bob', got {side!r}")
        self._side = side
        tagger = world.settings.alice_tagger if side == "alice" else world.settings.bob_tagger
        self._n_channels = int(tagger.n_channels)
        self._resolution_ps = int(tagger.resolution_ps)
        self._streaming = False
        self._batches = 0
        self._missed_events = 0
        # Tags per channel and the tagger time they span, since the last health reading:
        # the input count rates a real tagger's counters report.
        self._tags = np.zeros(self._n_channels, dtype=np.int64)
        self._span_ps = 0

    @property
    def side(self) -> str:
        """'alice' or 'bob': which of the world's taggers this is."""
        return self._side

    @property
    def n_channels(self) -> int:
        """How many input channels."""
        return self._n_channels

    @property
    def resolution_ps(self) -> int:
        """Timestamp bin width in picoseconds."""
        return self._resolution_ps

    @property
    def is_streaming(self) -> bool:
        """True between start_stream() and stop_stream()."""
        return self._streaming

    async def set_channel_delay_ps(self, channel: int, delay_ps: int) -> None:
        """Add ``delay_ps`` to every tag of ``channel``."""
        await self._link("set_channel_delay_ps")
        self._check_index("set_channel_delay_ps", "channel", channel, self._n_channels)
        if isinstance(delay_ps, bool) or not isinstance(delay_ps, int):
            raise self._refuse(
                "set_channel_delay_ps", f"delay_ps must be an integer, got {delay_ps!r}"
            )
        self._check_range("set_channel_delay_ps", "delay_ps", delay_ps, *DELAY_RANGE_PS)
        self.world.set_tagger_channel_delay_ps(self._side, channel, delay_ps)

    async def get_channel_delay_ps(self, channel: int) -> int:
        """The delay added to ``channel``, picoseconds."""
        await self._link("get_channel_delay_ps")
        self._check_index("get_channel_delay_ps", "channel", channel, self._n_channels)
        return int(self.world.tagger_channel_delay_ps(self._side, channel))

    async def start_stream(self) -> None:
        """Start streaming: every slice the world generates from now on is queued for us."""
        await self._link("start_stream")
        if not self._streaming:
            self.world.start_stream(self._side)
            self._streaming = True

    async def stop_stream(self) -> None:
        """Stop streaming and drop anything not yet read."""
        await self._link("stop_stream")
        if self._streaming:
            self.world.stop_stream(self._side)
            self._streaming = False

    async def read_batch(self, timeout_s: float) -> TagBatch:
        """The next slice of tags; InstrumentTimeout after ``timeout_s`` if not streaming."""
        await self._link("read_batch", timeout_s)
        self._check_range("read_batch", "timeout_s", timeout_s, 0.0, 3600.0)
        if not self._streaming:
            # Like the real tagger: nothing arrives on the stream socket until started.
            await self.clock.sleep(timeout_s)
            raise InstrumentTimeout(
                f"no tags within {timeout_s:g} s (stream not started)",
                instrument=self.name,
                command="read_batch",
            )
        batch: TagBatch = self.world.read_batch(self._side)
        self._batches += 1
        self._missed_events += batch.missed_events
        self._tags += np.bincount(batch.channel, minlength=self._n_channels)[: self._n_channels]
        self._span_ps += batch.stop_ps - batch.start_ps
        return batch

    async def get_count_rates_hz(self, integration_s: float) -> list[float]:
        """Tag rate of every channel over ``integration_s`` of sim time (advances the clock)."""
        await self._link("get_count_rates_hz")
        self._check_range(
            "get_count_rates_hz", "integration_s", integration_s, 1e-9, MAX_INTEGRATION_S
        )
        rates = self.world.tagger_count_rates_hz(self._side, float(integration_s))
        return [float(r) for r in rates]

    async def snapshot(self) -> dict[str, Any]:
        """Identity, side, resolution, channel delays and stream state."""
        await self._link("snapshot")
        return {
            **self._identity(),
            "side": self._side,
            "n_channels": self._n_channels,
            "resolution_ps": self._resolution_ps,
            "channel_delays_ps": [
                int(self.world.tagger_channel_delay_ps(self._side, c))
                for c in range(self._n_channels)
            ],
            "streaming": self._streaming,
        }

    async def safe_state(self) -> None:
        """Stop the stream (a tagger has nothing to switch off but its data flow)."""
        await self.stop_stream()

    async def health(self) -> Health:
        """Healthy when it answers; readings count batches and events missed to overflow,
        and give each channel's count rate over the tags streamed since the last reading."""
        await self._link("health")
        readings: dict[str, float | int | str | bool] = {
            "streaming": self._streaming,
            "batches_read": self._batches,
            "missed_events": self._missed_events,
        }
        if self._span_ps > 0:
            for channel, tags in enumerate(self._tags.tolist()):
                readings[f"ch{channel}_count_rate_hz"] = tags / ps_to_seconds(self._span_ps)
            self._tags[:] = 0
            self._span_ps = 0
        return Health(ok=True, detail="ok", readings=readings)
