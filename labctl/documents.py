"""Run documents: what a run tells every sink (run folder, qcodes, MQTT).

A run emits one ``start`` document, any number of ``event`` documents on named streams
(``primary``, ``qkd``, ``calibration``, ``sync``, ``telemetry``...), and one ``stop``
document. ``seq`` counts every document of the run from 0, so a subscriber can detect
gaps and duplicates. Documents never carry key material.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

DocumentKind = Literal["start", "event", "stop"]
ExitStatus = Literal["ok", "degraded", "aborted", "halted", "failed", "timeout"]


@dataclass(frozen=True, slots=True)
class Document:
    """One run document; ``data`` holds JSON-able values with units in their names."""

    kind: DocumentKind
    run_id: str
    seq: int
    ts: float
    stream: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        """The document as the JSON object written to disk and published on MQTT."""
        return {
            "kind": self.kind,
            "run_id": self.run_id,
            "seq": self.seq,
            "ts": self.ts,
            "stream": self.stream,
            "data": self.data,
        }


@runtime_checkable
class DocumentSink(Protocol):
    """Receives every document of a run. ``emit`` must never block acquisition."""

    def emit(self, document: Document) -> None:
        """Accept a document (buffer it if the destination is slow or away)."""
        ...

    async def aclose(self) -> None:
        """Flush what can be flushed and release resources."""
        ...
