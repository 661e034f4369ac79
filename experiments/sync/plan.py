"""``synchronize(run)``: the sync plan on a station (also a step of calibrate_all and keygen)."""

from __future__ import annotations

from typing import Any

from experiments.sync.acquire import acquire_sync
from experiments.sync.alice import alice_of
from experiments.sync.model import SyncError, SyncResult
from experiments.sync.settings import SyncSettings
from labctl.interfaces.devices import TimeTagger
from labctl.runner.plan_context import PlanContext


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
    run.emit("sync", result.summary())
    return result
