"""Run documents as bluesky event-model documents (start, descriptor, event, stop).

Tools of the bluesky ecosystem (databroker, tiled, suitcases) read runs as event-model
documents. ``EventModelConverter`` turns each labctl Document into the matching
event-model documents, validated by the ``event_model`` package as they are composed:
a labctl ``start`` becomes a RunStart (its data as metadata, ``run_id`` kept), the first
event of a stream with a given set of keys becomes an EventDescriptor named after the
stream (units read from the key suffixes, ``delay_ps`` -> ``ps``), each event an Event,
(a later event of the stream with other keys opens ``{stream}_2``, as event-model wants
one set of keys per stream name), and ``stop`` a RunStop (``ok`` -> ``success``,
``aborted`` -> ``abort``, else ``fail``).
Nested mappings are flattened (``detector_counts`` ``{"det-h": 3}`` ->
``detector_counts_det-h``); None values are left out. ``EventModelFile`` writes them to a
JSON-lines file of ``[name, document]`` pairs, the usual bluesky serialisation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import event_model

from labctl.documents import Document
from labctl.interfaces.units import unit_of

Handler = Callable[[str, Mapping[str, Any]], None]
"""Receives ``(name, document)``: name is start, descriptor, event or stop."""

FILE_NAME = "event_model.jsonl"
_EXIT = {"ok": "success", "aborted": "abort"}
_SEPARATOR = "_"  # event-model keys may not hold '.' or '/'


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> one level of keys; None values dropped; '.' and '/' replaced."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}".replace(".", _SEPARATOR).replace("/", _SEPARATOR)
        if value is None:
            continue
        if isinstance(value, Mapping):
            out.update(flatten(value, name + _SEPARATOR))
        else:
            out[name] = value
    return out


def data_key(name: str, value: Any) -> dict[str, Any]:
    shape: list[int]
    """The event-model description of one value: dtype, shape, units, source."""
    if isinstance(value, bool):
        dtype, shape = "boolean", []
    elif isinstance(value, int):
        dtype, shape = "integer", []
    elif isinstance(value, float):
        dtype, shape = "number", []
    elif isinstance(value, list | tuple):
        dtype, shape = "array", [len(value)]
    else:
        dtype, shape = "string", []
    key: dict[str, Any] = {"source": "labctl", "dtype": dtype, "shape": shape}
    unit = unit_of(name)
    if unit:
        key["units"] = unit
    return key


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


class EventModelConverter:
    """A DocumentSink that hands event-model documents of one run to ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._run: Any = None
        self._descriptors: dict[tuple[str, frozenset[str]], Any] = {}
        self._names: dict[str, str] = {}

    def emit(self, document: Document) -> None:
        """DocumentSink: convert and hand on (a run resumed mid-way gets a fresh start)."""
        if document.kind == "start" or self._run is None:
            metadata = {"run_id": document.run_id, "labctl_seq": document.seq}
            if document.kind == "start":
                metadata.update(_meta(document.data))
            else:
                metadata["resumed"] = True
            self._run = event_model.compose_run(time=document.ts, metadata=metadata)
            self._descriptors.clear()
            self.handler("start", self._run.start_doc)
            if document.kind == "start":
                return
        if document.kind == "stop":
            status = str(document.data.get("exit_status", "ok"))
            reason = str(document.data.get("reason") or "")
            stop = self._run.compose_stop(
                exit_status=_EXIT.get(status, "fail"), reason=reason, time=document.ts
            )
            self.handler("stop", stop)
            self._run = None
            return
        data = {k: _jsonable(v) for k, v in flatten(document.data).items()}
        signature = (document.stream, frozenset(data))
        bundle = self._descriptors.get(signature)
        if bundle is None:
            keys = {k: data_key(k, v) for k, v in data.items()}
            # event-model wants one set of keys per stream name: a later set of keys on the
            # same labctl stream becomes stream_2, stream_3...
            count = sum(1 for stream, _ in self._descriptors if stream == document.stream)
            name = document.stream if count == 0 else f"{document.stream}_{count + 1}"
            bundle = self._run.compose_descriptor(name=name, data_keys=keys)
            self._descriptors[signature] = bundle
            self.handler("descriptor", bundle.descriptor_doc)
        event = bundle.compose_event(
            data=data, timestamps=dict.fromkeys(data, document.ts), time=document.ts
        )
        self.handler("event", event)

    async def aclose(self) -> None:
        """Nothing is buffered."""


def _meta(data: Mapping[str, Any]) -> dict[str, Any]:
    """Start metadata as plain JSON (event-model forbids nothing JSON can say)."""
    out: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return out


class EventModelFile(EventModelConverter):
    """Writes a run's event-model documents as ``[name, document]`` JSON lines."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = self.path.open("a", encoding="utf-8")
        super().__init__(self._write)

    def _write(self, name: str, doc: Mapping[str, Any]) -> None:
        self._file.write(json.dumps([name, doc], allow_nan=False) + "\n")
        self._file.flush()

    async def aclose(self) -> None:
        """Close the file."""
        self._file.close()


def read_documents(path: str | Path) -> Iterable[tuple[str, dict[str, Any]]]:
    """The ``(name, document)`` pairs of an event-model JSON-lines file."""
    with Path(path).open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                name, doc = json.loads(line)
                yield name, doc
