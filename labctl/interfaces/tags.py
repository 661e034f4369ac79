"""Time-tag batches: numpy arrays, never Python lists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ChannelArray = npt.NDArray[np.uint8]
TimeArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class TagBatch:
    """Tags recorded in the window [start_ps, stop_ps) of the tagger's own clock.

    ``channel[i]`` clicked at ``time_ps[i]`` (sorted ascending). ``overflow`` is True when
    the tagger dropped tags in this window because its input rate exceeded its maximum;
    ``missed_events`` counts them when the tagger knows how many.
    """

    channel: ChannelArray
    time_ps: TimeArray
    start_ps: int
    stop_ps: int
    overflow: bool = False
    missed_events: int = 0

    def __post_init__(self) -> None:
        if self.channel.dtype != np.uint8:
            raise TypeError(f"TagBatch.channel must be uint8, got {self.channel.dtype}")
        if self.time_ps.dtype != np.int64:
            raise TypeError(f"TagBatch.time_ps must be int64, got {self.time_ps.dtype}")
        if self.channel.shape != self.time_ps.shape:
            raise ValueError(
                f"TagBatch arrays differ in length: {self.channel.shape} vs {self.time_ps.shape}"
            )
        if self.stop_ps < self.start_ps:
            raise ValueError(
                f"TagBatch window ends before it starts: {self.start_ps}..{self.stop_ps}"
            )

    def __len__(self) -> int:
        return int(self.time_ps.shape[0])

    @property
    def duration_ps(self) -> int:
        """Length of the window covered, picoseconds (a batch can be empty but long)."""
        return self.stop_ps - self.start_ps

    @classmethod
    def empty(cls, start_ps: int, stop_ps: int) -> TagBatch:
        """A batch with no tags covering [start_ps, stop_ps)."""
        return cls(
            channel=np.empty(0, dtype=np.uint8),
            time_ps=np.empty(0, dtype=np.int64),
            start_ps=start_ps,
            stop_ps=stop_ps,
        )

    def counts_per_channel(self, n_channels: int) -> npt.NDArray[np.int64]:
        """How many tags each channel has in this batch."""
        return np.bincount(self.channel, minlength=n_channels).astype(np.int64)
