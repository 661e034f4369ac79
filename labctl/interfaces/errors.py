"""Typed errors shared by every driver, twin and transport.

Every instrument error names the instrument and the command that failed, so that a
log line or a stop document says *what* and *where* without a traceback.
"""

from __future__ import annotations


class LabctlError(Exception):
    """Base class of every error labctl raises on purpose."""


class ConfigError(LabctlError):
    """A station file (or an API argument) is invalid.

    ``file`` and ``line`` point at the offending place when it is known, ``field`` is the
    dotted path of the field (``instruments.laser.settings.power_mw``).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.suggestion = suggestion
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
            where += ": "
        text = where
        if self.field:
            text += f"{self.field}: "
        text += self.message
        if self.suggestion:
            text += f" (did you mean '{self.suggestion}'?)"
        return text


class InstrumentError(LabctlError):
    """An instrument (real or simulated) could not do what was asked.

    ``instrument`` is the station name of the instrument (or its resource address when no
    name is known yet) and ``command`` the command being executed (a SCPI string, a frame
    in hex, or a method name for twins).
    """

    kind = "instrument error"

    def __init__(self, message: str, *, instrument: str, command: str | None = None) -> None:
        self.message = message
        self.instrument = instrument
        self.command = command
        where = f"{instrument}"
        if command is not None:
            where += f" [{command}]"
        super().__init__(f"{where}: {self.kind}: {message}")


class ConnectionLost(InstrumentError):
    """The link to the instrument broke (peer closed, cable pulled, port vanished)."""

    kind = "connection lost"


class InstrumentTimeout(InstrumentError):
    """The instrument did not answer within the configured timeout."""

    kind = "timeout"


class ProtocolError(InstrumentError):
    """The instrument answered something that does not parse."""

    kind = "protocol error"


class InstrumentFault(InstrumentError):
    """The instrument reported an error of its own (an error reply or status)."""

    kind = "instrument fault"


TRANSIENT_ERRORS: tuple[type[InstrumentError], ...] = (ConnectionLost, InstrumentTimeout)
"""Errors a supervisor may retry (after a reconnect for ConnectionLost)."""
