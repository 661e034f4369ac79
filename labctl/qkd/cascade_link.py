"""Cascade over an authenticated channel: Alice serves parity queries, Bob drives."""

from __future__ import annotations

from labctl.qkd.auth import AuthenticatedChannel
from labctl.qkd.cascade import (
    CascadeAlice,
    CascadeBob,
    CascadeOutcome,
    CascadeReply,
    CascadeRequest,
)
from labctl.qkd.cascade_schedule import CascadeSchedule
from labctl.qkd.errors import ReconciliationError
from labctl.qkd.secret import SecretBits

_QUERY = "cascade/query"
_REPLY = "cascade/reply"
_DONE = "cascade/done"


async def serve_alice(
    channel: AuthenticatedChannel, key: SecretBits, schedule: CascadeSchedule
) -> int:
    """Answer Bob's queries until he signals the end; returns the number of queries served."""
    alice = CascadeAlice(key, schedule)
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


async def run_bob(
    channel: AuthenticatedChannel, key: SecretBits, schedule: CascadeSchedule
) -> CascadeOutcome:
    """Drive Cascade against a remote Alice; returns Bob's corrected key and statistics."""
    protocol = CascadeBob(key, schedule).run()
    try:
        request = next(protocol)
        while True:
            await channel.send(_QUERY, request.to_bytes())
            message = await channel.recv(expect=_REPLY)
            request = protocol.send(CascadeReply.from_bytes(message.payload))
    except StopIteration as done:
        outcome: CascadeOutcome = done.value
    await channel.send(_DONE, b"")
    return outcome
