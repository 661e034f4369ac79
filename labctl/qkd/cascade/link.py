"""Cascade over an authenticated channel: Alice serves parity queries, Bob drives.

The batch variants reconcile K frames of one length and schedule in lock-step (one
message per round trip for all of them, :mod:`labctl.qkd.cascade.batch`); the wire
messages are the same.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TypeVar

from labctl.qkd.auth.channel import AuthenticatedChannel
from labctl.qkd.cascade.batch import CascadeBatchBob, CascadeBatchOutcome, batch_alice
from labctl.qkd.cascade.protocol import (
    CascadeAlice,
    CascadeBob,
    CascadeOutcome,
    CascadeReply,
    CascadeRequest,
)
from labctl.qkd.cascade.schedule import CascadeSchedule, forget_shuffles
from labctl.qkd.errors import ReconciliationError
from labctl.qkd.secret import SecretBits

_QUERY = "cascade/query"
_REPLY = "cascade/reply"
_DONE = "cascade/done"

_Outcome = TypeVar("_Outcome")


async def _serve(channel: AuthenticatedChannel, alice: CascadeAlice) -> int:
    served = 0
    while True:
        message = await channel.recv()
        if message.kind == _DONE:
            return served
        if message.kind != _QUERY:
            raise ReconciliationError(f"cascade: unexpected message {message.kind!r}")
        reply = alice.handle(CascadeRequest.from_bytes(message.payload))
        await channel.send(_REPLY, reply.to_bytes())
        served += 1


async def _drive(
    channel: AuthenticatedChannel,
    protocol: Generator[CascadeRequest, CascadeReply, _Outcome],
) -> _Outcome:
    try:
        request = next(protocol)
        while True:
            await channel.send(_QUERY, request.to_bytes())
            message = await channel.recv(expect=_REPLY)
            request = protocol.send(CascadeReply.from_bytes(message.payload))
    except StopIteration as done:
        outcome: _Outcome = done.value
    await channel.send(_DONE, b"")
    return outcome


async def serve_alice(
    channel: AuthenticatedChannel, key: SecretBits, schedule: CascadeSchedule
) -> int:
    """Answer Bob's queries until he signals the end; returns the number of queries served."""
    try:
        return await _serve(channel, CascadeAlice(key, schedule))
    finally:
        forget_shuffles(schedule)


async def run_bob(
    channel: AuthenticatedChannel, key: SecretBits, schedule: CascadeSchedule
) -> CascadeOutcome:
    """Drive Cascade against a remote Alice; returns Bob's corrected key and statistics."""
    try:
        return await _drive(channel, CascadeBob(key, schedule).run())
    finally:
        forget_shuffles(schedule)


async def serve_alice_batch(
    channel: AuthenticatedChannel,
    keys: Sequence[SecretBits],
    schedules: Sequence[CascadeSchedule],
) -> int:
    """:func:`serve_alice` for K frames reconciled together (same order as Bob's)."""
    return await _serve(channel, batch_alice(keys, schedules))


async def run_bob_batch(
    channel: AuthenticatedChannel,
    keys: Sequence[SecretBits],
    schedules: Sequence[CascadeSchedule],
) -> CascadeBatchOutcome:
    """:func:`run_bob` for K frames: corrected keys, per-frame disclosed bits, channel use."""
    return await _drive(channel, CascadeBatchBob(keys, schedules).run())
