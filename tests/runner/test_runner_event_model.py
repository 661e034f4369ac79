"""A run's documents as event-model documents: valid, and enough to rebuild its tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import event_model

from labctl.documents import Document
from labctl.runner.engine import RunEngine
from labctl.runner.event_model import FILE_NAME, EventModelConverter, read_documents
from tests.runner.runner_fixtures import counting_plan


class TableBuilder(event_model.DocumentRouter):
    """A databroker-style consumer: validates each document and rebuilds one table per
    stream (rows of data, with the descriptor's units)."""

    def __init__(self) -> None:
        super().__init__()
        self.start_doc: dict[str, Any] = {}
        self.stop_doc: dict[str, Any] = {}
        self.streams: dict[str, str] = {}
        self.units: dict[str, dict[str, str]] = {}
        self.tables: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, name: str, doc: Any, validate: bool = False) -> Any:
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
        return super().__call__(name, doc, validate)

    def start(self, doc: Any) -> Any:
        self.start_doc = dict(doc)
        return doc

    def descriptor(self, doc: Any) -> Any:
        assert doc["run_start"] == self.start_doc["uid"]
        self.streams[doc["uid"]] = doc["name"]
        units = {k: v.get("units", "") for k, v in doc["data_keys"].items()}
        self.units.setdefault(doc["name"], {}).update(units)
        return doc

    def event(self, doc: Any) -> Any:
        self.tables.setdefault(self.streams[doc["descriptor"]], []).append(doc["data"])
        return doc

    def stop(self, doc: Any) -> Any:
        self.stop_doc = dict(doc)
        return doc


async def test_a_run_writes_event_model_documents_that_rebuild_its_table(
    marker_station: Any, tmp_path: Path
) -> None:
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs")
    result = await engine.run(counting_plan, name="em", args={"n": 4, "step_s": 0.0})
    assert result.status == "ok"
    reader = TableBuilder()
    names = []
    for name, doc in read_documents(result.path / FILE_NAME):
        names.append(name)
        reader(name, doc)
    assert names[0] == "start" and names[-1] == "stop"
    assert reader.start_doc["run_id"] == result.run_id
    assert reader.stop_doc["exit_status"] == "success"
    assert [row["index"] for row in reader.tables["primary"]] == [0, 1, 2, 3]
    assert [row["value_hz"] for row in reader.tables["primary"]] == [1000.0, 1001.0, 1002.0, 1003.0]
    assert reader.units["primary"]["value_hz"] == "Hz"


def test_nested_values_new_keys_and_failures_convert() -> None:
    docs: list[tuple[str, Any]] = []
    converter = EventModelConverter(lambda name, doc: docs.append((name, doc)))
    converter.emit(Document("start", "r1", 0, 1.0, "primary", {"plan": "p"}))
    converter.emit(Document("event", "r1", 1, 2.0, "qkd", {"qber_z": 0.02, "n": None}))
    converter.emit(Document("event", "r1", 2, 3.0, "primary", {"counts": {"det-h": 3}}))
    converter.emit(Document("event", "r1", 3, 4.0, "qkd", {"qber_z": 0.03, "delay_ps": 5}))
    converter.emit(Document("stop", "r1", 4, 5.0, "primary", {"exit_status": "aborted"}))
    reader = TableBuilder()
    for name, doc in docs:
        reader(name, doc)
    assert [n for n, _ in docs].count("descriptor") == 3  # qkd twice: its keys changed
    assert reader.tables["qkd_2"] == [{"qber_z": 0.03, "delay_ps": 5}]
    assert reader.tables["primary"] == [{"counts_det-h": 3}]
    assert reader.units["qkd_2"]["delay_ps"] == "ps"
    assert reader.stop_doc["exit_status"] == "abort"
