"""Cascade on K frames in lock-step: one channel message per round trip for all frames.

A frame of 1e4 bits needs 130-230 sequential round trips whatever its length, each with
a fixed cost (generator hand-off, message objects, kernel dispatches, and on a real link
the network latency), so small frames are reconciled many at a time, as real systems do.
Each frame keeps its own public shuffles and block partition
(:mod:`labctl.qkd.cascade.layout`): every query concerns one frame, and frame f's
queries in round trip r of the batch are those it sends alone in its r-th round trip of
the same pass. A frame whose search of a pass ended waits (sends nothing) while others
finish theirs, so per frame the corrected key, the disclosed parity bits, the
frame-error outcome and the efficiency f are those of the frame reconciled alone with
the same seed; only the channel uses are shared (the batch's round trips are those of its
slowest frame in every pass). Leakage is accounted per frame: each disclosed parity is
charged to the one frame its range lies in.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from labctl.qkd.cascade.layout import FrameLayout
from labctl.qkd.cascade.messages import CascadeReply, CascadeRequest
from labctl.qkd.cascade.protocol import CascadeAlice, CascadeBob, CascadeStats
from labctl.qkd.cascade.schedule import CascadeSchedule
from labctl.qkd.errors import ReconciliationError
from labctl.qkd.estimation.entropy import binary_entropy
from labctl.qkd.secret import SecretBits

__all__ = [
    "CascadeBatchBob",
    "CascadeBatchOutcome",
    "batch_alice",
    "reconcile_batch",
]


@dataclass(frozen=True, repr=False)
class CascadeBatchOutcome:
    """Bob's corrected key of every frame, per-frame leakage and the shared channel use."""

    keys: tuple[SecretBits, ...]
    disclosed_bits: tuple[int, ...]
    """Parity bits disclosed about each frame (the leakage to subtract for that frame)."""
    corrected_bits: tuple[int, ...]
    """Bits of each frame that Bob's key changed (each flipped bit is flipped once)."""
    stats: CascadeStats
    """The batch's channel: round trips, messages, bytes, all disclosed bits."""

    def efficiency(self, frame: int, qber: float) -> float:
        """f of one frame: disclosed / (n h(Q)), 1 is the Shannon limit."""
        limit = len(self.keys[frame]) * binary_entropy(qber)
        return float("inf") if limit == 0 else self.disclosed_bits[frame] / limit

    def __repr__(self) -> str:
        return (
            f"CascadeBatchOutcome(frames={len(self.keys)}, "
            f"disclosed_bits={sum(self.disclosed_bits)}, stats={self.stats!r})"
        )


CascadeBatchProtocol = Generator[CascadeRequest, CascadeReply, CascadeBatchOutcome]


def _layout(
    schedules: Sequence[CascadeSchedule], layout: FrameLayout | None, compiled: bool
) -> FrameLayout:
    if layout is None:
        return FrameLayout(schedules, compiled=compiled)
    if layout.schedules != tuple(schedules):
        raise ReconciliationError("cascade batch: layout built for other schedules")
    return layout


class CascadeBatchBob:
    """Bob's side for K frames of one length and block-size schedule (own seeds allowed)."""

    def __init__(
        self,
        keys: Sequence[SecretBits],
        schedules: Sequence[CascadeSchedule],
        *,
        compiled: bool = True,
        layout: FrameLayout | None = None,
    ) -> None:
        self._inputs = tuple(keys)
        self._bob = CascadeBob.for_frames(self._inputs, _layout(schedules, layout, compiled))

    def __repr__(self) -> str:
        return f"CascadeBatchBob({self._bob!r})"

    @property
    def stats(self) -> CascadeStats:
        """Channel statistics of the batch so far."""
        return self._bob.stats

    def run(self) -> CascadeBatchProtocol:
        """The protocol as a generator: yields requests, receives replies, returns the outcome."""
        yield from self._bob._drive()
        keys = self._bob.corrected_keys()
        corrected = tuple(
            int(np.count_nonzero(k.bits != i.bits)) for k, i in zip(keys, self._inputs, strict=True)
        )
        disclosed = tuple(int(d) for d in self._bob.disclosed_per_frame)
        return CascadeBatchOutcome(keys, disclosed, corrected, self._bob.stats)


def batch_alice(
    keys: Sequence[SecretBits],
    schedules: Sequence[CascadeSchedule],
    *,
    compiled: bool = True,
    layout: FrameLayout | None = None,
) -> CascadeAlice:
    """Alice's side for K frames (answers the batch's requests like a single frame's)."""
    return CascadeAlice.for_frames(tuple(keys), _layout(schedules, layout, compiled))


def reconcile_batch(
    alice_keys: Sequence[SecretBits],
    bob_keys: Sequence[SecretBits],
    schedules: Sequence[CascadeSchedule],
    *,
    compiled: bool = True,
) -> CascadeBatchOutcome:
    """Run Cascade on K frames in one process (both sides share the public layout)."""
    layout = FrameLayout(schedules, compiled=compiled)
    alice = batch_alice(alice_keys, schedules, layout=layout)
    protocol = CascadeBatchBob(bob_keys, schedules, layout=layout).run()
    try:
        request = next(protocol)
        while True:
            request = protocol.send(alice.handle(request))
    except StopIteration as done:
        outcome: CascadeBatchOutcome = done.value
        return outcome
