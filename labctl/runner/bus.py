"""Numbering run documents and handing each one to the run folder and every other sink."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from labctl.documents import Document, DocumentKind, DocumentSink
from labctl.interfaces.clock import Clock
from labctl.store.events import EventLog

_STREAM = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class DocumentBus:
    """Gives documents consecutive ``seq`` numbers; the event log is written first.

    The event log is the record of the run, so a failure there propagates; any other sink
    (MQTT, dashboards) that raises is logged once and skipped, never stopping acquisition.
    """

    def __init__(
        self,
        run_id: str,
        clock: Clock,
        event_log: EventLog,
        sinks: Sequence[DocumentSink] = (),
        *,
        seq_next: int = 0,
        log: logging.Logger | None = None,
        on_emit: Callable[[Document], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.clock = clock
        self.event_log = event_log
        self.sinks = list(sinks)
        self.seq_next = seq_next
        self.log = log or logging.getLogger("labctl.runner")
        self.on_emit = on_emit
        self._failed_sinks: set[int] = set()

    def emit(self, kind: DocumentKind, stream: str, data: dict[str, Any]) -> Document:
        """Number, record and distribute one document."""
        document = self.number(kind, stream, data)
        self.record(document)
        return document

    def number(self, kind: DocumentKind, stream: str, data: dict[str, Any]) -> Document:
        """Check ``data`` and give it the next seq, without recording it yet.

        The caller must :meth:`record` it before anything else is emitted: a checkpoint
        written in between can then name the document (see ``RunContext.commit``).
        """
        if not _STREAM.match(stream):
            raise ValueError(
                f"stream name {stream!r}: use [a-z0-9_-], starting with a letter/digit"
            )
        if not isinstance(data, dict):
            raise ValueError(f"stream {stream!r}: document data must be a dict, got {type(data)}")
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"stream {stream!r}: document data is not plain JSON ({exc})") from exc
        document = Document(kind, self.run_id, self.seq_next, self.clock.now_s(), stream, data)
        self.seq_next += 1
        return document

    def record(self, document: Document) -> None:
        """Write a numbered document to the event log, then hand it to every sink."""
        self.event_log.append(document)
        for sink in self.sinks:
            try:
                sink.emit(document)
            except Exception as exc:
                if id(sink) not in self._failed_sinks:
                    self._failed_sinks.add(id(sink))
                    self.log.error("sink %r rejected a document (%s); continuing", sink, exc)
        if self.on_emit is not None:
            self.on_emit(document)
