"""``synchronize(run)``: the sync plan on a station (also a step of calibrate_all and keygen)."""

from __future__ import annotations

from typing import Any

from experiments.sync.acquire import acquire_sync
from experiments.sync.alice import alice_of
from experiments.sync.model import SyncError, SyncResult
from experiments.sync.settings import SyncSettings
from labctl.interfaces.devices import TimeTagger
from labctl.runner.plan_context import PlanContext
from labctl.store.datasets import Column

SYNC_DATASET = "sync"
SYNC_SETPOINT = Column("attempt", label="synchronization of the run (0 = the first)")
SYNC_COLUMNS = (
    Column("offset_ps", label="Bob's clock offset onto Alice's pulses"),
    Column("drift_ppb", label="Bob's clock drift against Alice's"),
    Column("period_ps", label="Alice's pulse period"),
    Column("jitter_ps", label="timing jitter of the detections"),
    Column("data_s", label="acquisition time used"),
    Column("detections", label="detections used"),
    Column(
        "index_score",
        unit="1",
        label="pulse-index margin: correlation score of the chosen offset over the next best",
    ),
)
"""One row per synchronization of the run (the first, then every resynchronization)."""


def sync_settings(station: Any) -> SyncSettings:
    """The station's ``sync:`` section, validated."""
    config = getattr(station, "config", None)
    section = getattr(config, "sync", None)
    return SyncSettings.from_section(section, getattr(config, "file", None))


def instrument(station: Any, name: str, kind: type[Any], role: str) -> Any:
    """Station instrument ``name`` implementing ``kind``, or SyncError saying what is missing."""
    found = station.instruments.get(name)
    if found is None:
        known = ", ".join(sorted(station.instruments)) or "none"
        raise SyncError(f"no {role} {name!r} in the station (instruments: {known})")
    if not isinstance(found, kind):
        raise SyncError(f"instrument {name!r} is not a {kind.__name__} ({role})")
    return found


async def synchronize(run: PlanContext, settings: SyncSettings | None = None) -> SyncResult:
    """Lock Bob's tagger onto Alice's pulses; emits a ``sync`` event with the figures."""
    station = run.station
    settings = settings or sync_settings(station)
    tagger = instrument(station, settings.tagger, TimeTagger, "Bob's time tagger")
    try:
        alice = alice_of(station)
    except LookupError as exc:
        raise SyncError(str(exc)) from None
    with run.progress.task("sync", total=1) as bar:
        result = await acquire_sync(tagger, alice, run.clock, settings)
        bar.advance()
    figures = result.summary()
    run.emit("sync", figures)
    data = run.dataset(
        SYNC_DATASET,
        setpoints=[Column("attempt", label="synchronization of the run (0 = the first)")],
        measured=SYNC_COLUMNS,
    )
    data.add(attempt=data.last_row_id(), **{c.name: figures[c.name] for c in SYNC_COLUMNS})
    return result
