"""Typed errors of the QKD post-processing stack.

Messages name the step and the quantity that failed, never key material: a key bit, a
parity string or a pre-shared key must not end up in a log line or a stop document.
"""

from __future__ import annotations

from labctl.interfaces.errors import LabctlError


class QkdError(LabctlError):
    """Base class of every error raised on purpose by labctl.qkd."""


class AuthenticationError(QkdError):
    """A classical-channel message failed its MAC, was replayed, reordered or truncated.

    The caller must stop key output: nothing derived after this point can be trusted.
    """


class ChannelError(QkdError):
    """The classical channel broke: peer closed, timeout, or an oversized frame."""


class ChannelTimeout(ChannelError):
    """No message arrived within the configured timeout."""


class ChannelClosed(ChannelError):
    """The peer closed the classical channel."""


class MessageFormatError(QkdError):
    """A protocol message does not parse (wrong length, unknown type, bad field)."""


class ReconciliationError(QkdError):
    """Error correction could not run (inconsistent frame sizes, protocol violation)."""


class VerificationError(QkdError):
    """Alice's and Bob's keys differ after error correction (hash tags do not match)."""
