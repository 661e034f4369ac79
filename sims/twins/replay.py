"""ReplayTimeTagger: a TimeTagger that streams the tags of a recorded PicoQuant PTU file.

A lab runs synchronization and key analysis on recorded data by naming this class in
place of its tagger (``class: sims.twins.replay:ReplayTimeTagger``, setting ``file``, a
path relative to the station file). It needs no world: the tags are the file's.

Streaming cuts the file into windows of ``batch_ps`` (default 1 ms) from the file's first
time; each ``read_batch`` returns the next one, tiling time without gaps. A restarted
stream goes on where the last one stopped (tags are never replayed twice) unless ``loop``
is set, in which case the file starts again after its end, shifted by its duration so
times keep rising. Past the end (no ``loop``) ``read_batch`` raises InstrumentTimeout, as a
tagger with nothing more to send. Channel delays shift a channel's tags when replayed.
Rates are the file's mean rate per channel (the recording, not ``integration_s``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np

from labctl.formats.ptu import PtuError, PtuTags, read_ptu
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import (
    ConfigError,
    ConnectionLost,
    InstrumentFault,
    InstrumentTimeout,
)
from labctl.interfaces.instrument import Health, LifecycleMixin
from labctl.interfaces.tags import TagBatch
from labctl.interfaces.units import ps_to_seconds

DEFAULT_BATCH_PS = 1_000_000_000  # 1 ms
MAX_DELAY_PS = 1_000_000_000  # 1 ms, as the world's taggers
_SETTINGS = ("file", "batch_ps", "loop")


class ReplayTimeTagger(LifecycleMixin):
    """Streams the tags of a PTU file as TagBatches (implements labctl's TimeTagger)."""

    model = "labctl ReplayTimeTagger"

    def __init__(
        self, name: str, path: str | Path, *, batch_ps: int = DEFAULT_BATCH_PS, loop: bool = False
    ) -> None:
        if not name:
            raise ValueError("a replay tagger needs a non-empty instrument name")
        if isinstance(batch_ps, bool) or not isinstance(batch_ps, int) or batch_ps < 1:
            raise ValueError(f"{name}: batch_ps must be an integer >= 1, got {batch_ps!r}")
        self.name = name
        self.path = Path(path)
        self.batch_ps = batch_ps
        self.loop = loop
        self._tags: PtuTags | None = None
        self._connected = False
        self._streaming = False
        self._delays_ps: list[int] = []
        self._cursor_ps = 0  # replay time of the next window's start
        self._batches = 0

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry: settings ``file`` (required), ``batch_ps``, ``loop``."""
        where = f"instruments.{spec.name}.settings"
        for key in spec.settings:
            if key not in _SETTINGS:
                raise ConfigError(
                    f"unknown setting (known: {', '.join(_SETTINGS)})",
                    file=spec.source.file,
                    line=spec.source.line,
                    field=f"{where}.{key}",
                )
        raw = spec.settings.get("file")
        if not isinstance(raw, str) or not raw:
            raise ConfigError(
                "needs the PTU file to replay (a path)",
                file=spec.source.file,
                line=spec.source.line,
                field=f"{where}.file",
            )
        path = Path(raw)
        if not path.is_absolute() and context.config_file is not None:
            path = Path(context.config_file).parent / path
        loop = spec.settings.get("loop", False)
        if not isinstance(loop, bool):
            raise ConfigError(
                f"must be true or false, got {loop!r}",
                file=spec.source.file,
                line=spec.source.line,
                field=f"{where}.loop",
            )
        try:
            return cls(
                spec.name, path, batch_ps=spec.settings.get("batch_ps", DEFAULT_BATCH_PS), loop=loop
            )
        except ValueError as err:
            raise ConfigError(
                str(err), file=spec.source.file, line=spec.source.line, field=f"{where}.batch_ps"
            ) from None

    # -- lifecycle ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Read the file (once); ConnectionLost naming it when it cannot be read."""
        if self._tags is None:
            try:
                self._tags = read_ptu(self.path)
            except (OSError, PtuError) as err:
                raise ConnectionLost(
                    f"cannot replay {self.path}: {err}", instrument=self.name, command="connect"
                ) from None
            self._delays_ps = [0] * self._tags.n_channels
            self._cursor_ps = self._tags.start_ps
        self._connected = True

    async def close(self) -> None:
        """Stop streaming; the file stays loaded."""
        self._streaming = False
        self._connected = False

    @property
    def _file(self) -> PtuTags:
        if not self._connected or self._tags is None:
            raise ConnectionLost(
                "not connected (call connect() first)", instrument=self.name, command="replay"
            )
        return self._tags

    async def snapshot(self) -> dict[str, Any]:
        """File, resolution, delays, position and stream state."""
        tags = self._file
        return {
            "name": self.name,
            "model": self.model,
            "simulated": True,
            "file": str(self.path),
            "n_channels": tags.n_channels,
            "resolution_ps": tags.resolution_ps,
            "channel_delays_ps": list(self._delays_ps),
            "position_ps": self._cursor_ps,
            "streaming": self._streaming,
        }

    async def safe_state(self) -> None:
        """Stop the stream."""
        await self.stop_stream()

    async def health(self) -> Health:
        """Healthy while connected; readings: batches read and how far the replay is."""
        tags = self._file
        return Health(
            ok=True,
            detail="ok",
            readings={
                "streaming": self._streaming,
                "batches_read": self._batches,
                "replayed_fraction": min(
                    1.0, (self._cursor_ps - tags.start_ps) / max(1, tags.stop_ps - tags.start_ps)
                ),
            },
        )

    # -- TimeTagger interface -----------------------------------------------------------

    @property
    def n_channels(self) -> int:
        """Channels of the recording (0 until connected)."""
        return 0 if self._tags is None else self._tags.n_channels

    @property
    def resolution_ps(self) -> int:
        """The recording's time unit, picoseconds (1 until connected)."""
        return 1 if self._tags is None else self._tags.resolution_ps

    def _check_channel(self, command: str, channel: int) -> None:
        n = self._file.n_channels
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < n:
            raise InstrumentFault(
                f"channel {channel!r} does not exist (0..{n - 1})",
                instrument=self.name,
                command=command,
            )

    async def set_channel_delay_ps(self, channel: int, delay_ps: int) -> None:
        """Shift every replayed tag of ``channel`` by ``delay_ps``."""
        self._check_channel("set_channel_delay_ps", channel)
        if isinstance(delay_ps, bool) or not isinstance(delay_ps, int):
            raise InstrumentFault(
                f"delay_ps must be an integer, got {delay_ps!r}",
                instrument=self.name,
                command="set_channel_delay_ps",
            )
        if not -MAX_DELAY_PS <= delay_ps <= MAX_DELAY_PS:
            raise InstrumentFault(
                f"delay_ps {delay_ps} outside +-{MAX_DELAY_PS}",
                instrument=self.name,
                command="set_channel_delay_ps",
            )
        self._delays_ps[channel] = delay_ps

    async def get_channel_delay_ps(self, channel: int) -> int:
        """The shift applied to ``channel``, picoseconds."""
        self._check_channel("get_channel_delay_ps", channel)
        return self._delays_ps[channel]

    async def start_stream(self) -> None:
        """Start (or go on) replaying from where the last stream stopped."""
        self._file  # noqa: B018 - raises when not connected
        self._streaming = True

    async def stop_stream(self) -> None:
        """Stop replaying (the position is kept: nothing is replayed twice)."""
        self._streaming = False

    async def read_batch(self, timeout_s: float) -> TagBatch:
        """The next ``batch_ps`` window of the recording."""
        tags = self._file
        if not self._streaming:
            raise InstrumentTimeout(
                f"no tags within {timeout_s:g} s (stream not started)",
                instrument=self.name,
                command="read_batch",
            )
        duration_ps = tags.stop_ps - tags.start_ps
        lap, offset = divmod(self._cursor_ps - tags.start_ps, max(1, duration_ps))
        if lap and not self.loop:
            raise InstrumentTimeout(
                f"{self.path} replayed to its end", instrument=self.name, command="read_batch"
            )
        start_ps = self._cursor_ps
        stop_ps = start_ps + min(self.batch_ps, duration_ps - offset)
        shift = lap * duration_ps
        delays = np.asarray(self._delays_ps, dtype=np.int64)
        # Delays move tags across windows: take a delay's worth of margin on both sides.
        margin = int(np.abs(delays).max(initial=0))
        window = self._window(tags, start_ps - shift - margin, stop_ps - shift + margin)
        channel, time_ps = window
        time_ps = time_ps + shift + delays[channel]
        keep = (time_ps >= start_ps) & (time_ps < stop_ps)
        order = np.argsort(time_ps[keep], kind="stable")
        self._cursor_ps = stop_ps
        self._batches += 1
        return TagBatch(
            channel=channel[keep][order],
            time_ps=time_ps[keep][order],
            start_ps=start_ps,
            stop_ps=stop_ps,
        )

    @staticmethod
    def _window(
        tags: PtuTags, low_ps: int, high_ps: int
    ) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.int64]]]:
        first, last = np.searchsorted(tags.time_ps, [low_ps, high_ps])
        return tags.channel[first:last], tags.time_ps[first:last]

    async def get_count_rates_hz(self, integration_s: float) -> list[float]:
        """Mean rate of every channel over the whole recording, hertz."""
        tags = self._file
        if not 0.0 < integration_s <= 3600.0:
            raise InstrumentFault(
                f"integration_s {integration_s!r} outside (0, 3600]",
                instrument=self.name,
                command="get_count_rates_hz",
            )
        duration_s = ps_to_seconds(max(1, tags.stop_ps - tags.start_ps))
        counts = np.bincount(tags.channel, minlength=tags.n_channels)
        return [float(c) / duration_s for c in counts]
