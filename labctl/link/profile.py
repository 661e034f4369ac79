"""Per-stage CPU accounting of one party's post-processing (no key material recorded).

Each node owns a :class:`StageProfile`; its code runs inside ``profile.stage(name)``
sections, which may nest: a section is charged its own CPU time (``time.process_time``,
all threads of the process) minus that of the sections inside it, so the stages add up to
the party's total. Channel traffic (HMAC, framing, socket) is charged to ``"channel"`` by
:class:`TimedChannel`, wherever it happens (Cascade included).

The figures are one party's CPU only when that party runs alone in its process with one
block in flight (``labctl node alice|bob``, or the two-process benchmark with one worker):
``process_time`` is per process, so in one shared process the other party's work (and
other blocks') would be charged to whatever section is waiting on the channel.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from labctl.qkd.auth.channel import AuthenticatedChannel, Message

STAGES = (
    "sifting",
    "estimation",
    "cascade",
    "verification",
    "finite key",
    "pa",
    "key store",
    "channel",
    "serialization",
)
"""Stage names in the order a block goes through them (reports list them this way)."""


HISTORY_BLOCKS = 1000
"""Blocks whose per-stage CPU a profile keeps (a night-long run makes thousands)."""


class StageProfile:
    """Exclusive CPU seconds per stage, accumulated over blocks."""

    def __init__(self) -> None:
        self.cpu_s: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.blocks = 0
        self.messages = 0
        self.payload_bytes = 0
        """Messages and payload bytes through the channel, both directions."""
        self.history: deque[dict[str, float]] = deque(maxlen=HISTORY_BLOCKS)
        """The last finished blocks' CPU seconds per stage (``end_block``), oldest first."""
        self._children_s: list[float] = []  # CPU of nested sections, per open section
        self._at_last_block: dict[str, float] = dict(self.cpu_s)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Charge the CPU spent inside (less nested sections) to ``name``."""
        start_s = time.process_time()
        self._children_s.append(0.0)
        try:
            yield
        finally:
            elapsed_s = time.process_time() - start_s
            nested_s = self._children_s.pop()
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + elapsed_s - nested_s
            if self._children_s:
                self._children_s[-1] += elapsed_s

    def end_block(self) -> None:
        """A block is over: count it and record its own per-stage CPU in ``history``."""
        self.blocks += 1
        totals = {**self.cpu_s, "messages": self.messages, "payload bytes": self.payload_bytes}
        self.history.append({k: v - self._at_last_block.get(k, 0.0) for k, v in totals.items()})
        self._at_last_block = totals

    def per_block_s(self) -> dict[str, float]:
        """Mean CPU seconds per block of each stage (0 blocks: the totals)."""
        n = max(self.blocks, 1)
        return {name: cpu / n for name, cpu in self.cpu_s.items()}

    def reset(self) -> None:
        """Forget what was accumulated (e.g. after a warm-up block)."""
        self.cpu_s = dict.fromkeys(STAGES, 0.0)
        self.blocks = 0
        self.messages = 0
        self.payload_bytes = 0
        self.history.clear()
        self._at_last_block = dict(self.cpu_s)


class TimedChannel:
    """An AuthenticatedChannel whose send/recv CPU is charged to the ``channel`` stage.

    Waiting for the peer costs no CPU, so a recv is charged only what framing, the MAC
    check and the event loop spend on it.
    """

    def __init__(self, channel: AuthenticatedChannel, profile: StageProfile) -> None:
        self._channel = channel
        self._profile = profile

    async def send(self, kind: str, payload: bytes) -> None:
        """Send one authenticated message."""
        with self._profile.stage("channel"):
            await self._channel.send(kind, payload)
        self._profile.messages += 1
        self._profile.payload_bytes += len(payload)

    async def recv(self, expect: str | None = None, timeout_s: float | None = None) -> Message:
        """Receive one authenticated message (see AuthenticatedChannel.recv)."""
        with self._profile.stage("channel"):
            message = await self._channel.recv(expect=expect, timeout_s=timeout_s)
        self._profile.messages += 1
        self._profile.payload_bytes += len(message.payload)
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)
