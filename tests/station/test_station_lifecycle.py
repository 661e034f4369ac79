"""Station: builds world then instruments, and runs every group operation on all of them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.station.fake_instruments as fake_instruments
from labctl.interfaces import (
    ConfigError,
    ConnectionLost,
    InstrumentTimeout,
    Laser,
    OpticalSwitch,
    TimeTagger,
    WallClock,
)
from labctl.station import Station, StationConfig, StationError, load_config
from tests.station.fake_instruments import JOURNAL, Concurrency, FakeLaser, FakeWorld

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _fresh_journal() -> Iterator[None]:
    JOURNAL.clear()
    Concurrency.active = Concurrency.peak = 0
    yield
    JOURNAL.clear()


def _config(instruments: dict[str, Any], **extra: Any) -> StationConfig:
    return StationConfig.model_validate(
        {
            "lab": "lab",
            "node": "node",
            "instruments": instruments,
            "allowed_packages": ["tests"],
            **extra,
        }
    )


def _fake(kind: str = "FakeLaser", **settings: Any) -> dict[str, Any]:
    return {"class": f"tests.station.fake_instruments:{kind}", "settings": settings}


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_world_is_built_first_and_shared_with_its_clock() -> None:
    station = Station.from_config(load_config(DATA / "good.yaml"))
    assert isinstance(station.world, FakeWorld) and station.world.seed == 7
    assert JOURNAL[0] == ("world", "build")
    assert station.world.attached == ["laser", "switch"]
    assert station.clock is station.world.clock and station.clock.is_virtual
    laser = station.get("laser", Laser)
    assert isinstance(laser, FakeLaser)
    assert laser.context.world is station.world and laser.context.clock is station.clock
    assert laser.context.config_file == str(DATA / "good.yaml")
    assert laser.power_mw == 2.5


def test_without_a_world_the_station_runs_on_wall_time() -> None:
    station = Station.from_config(_config({"laser": _fake()}))
    assert station.world is None and isinstance(station.clock, WallClock)


def test_typed_lookup_and_find() -> None:
    station = Station.from_config(_config({"laser": _fake(), "switch": _fake("FakeSwitch")}))
    assert station.get("switch", OpticalSwitch).n_ports == 4
    assert [i.name for i in station.find(Laser)] == ["laser"]
    assert station.find(TimeTagger) == []
    with pytest.raises(TypeError, match="instrument 'switch' \\(FakeSwitch\\) is not a Laser"):
        station.get("switch", Laser)
    with pytest.raises(
        KeyError, match="no instrument named 'tagger' \\(station has: laser, switch"
    ):
        station.get("tagger", TimeTagger)


def test_factory_errors_point_at_the_config_entry(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "lab: l\nnode: n\ninstruments:\n"
        "  a:\n    class: tests.station.fake_instruments:FakeLaser\n    settings: {powr_mw: 1}\n"
        "  b:\n    class: tests.station.fake_instruments:NotAnInstrument\n"
        "allowed_packages: [tests]\n"
    )
    with pytest.raises(ConfigError) as info:
        Station.from_config(load_config(path))
    text = str(info.value)
    assert f"{path}:4: instruments.a.settings: unknown setting 'powr_mw'" in text
    assert f"{path}:7: instruments.b: " in text
    assert "not an Instrument (missing: name, connect, close" in text


async def test_connect_all_runs_in_parallel_and_async_with_closes() -> None:
    station = Station.from_config(
        _config({f"l{i}": _fake(hold_s=0.05) for i in range(4)}), timeout_s=5
    )
    async with station:
        assert Concurrency.peak == 4
        assert station.connected == {"l0", "l1", "l2", "l3"}
        health = await station.health_all()
        assert all(h.ok for h in health.values()) and list(health) == ["l0", "l1", "l2", "l3"]
    assert station.connected == frozenset()
    assert sorted(n for n, what in JOURNAL if what == "close") == ["l0", "l1", "l2", "l3"]


async def test_every_connect_failure_is_reported_together() -> None:
    port = _free_port()
    station = Station.from_config(
        _config(
            {
                "good": _fake(),
                "lost": _fake(fail="lost"),
                "hangs": _fake(fail="hang"),
                "weird": _fake(fail="value"),
                "probe": {
                    "class": "tests.station.fake_instruments:LineProbe",
                    "transport": {"kind": "tcp", "address": f"127.0.0.1:{port}"},
                },
            }
        ),
        timeout_s=0.3,
    )
    with pytest.raises(StationError) as info:
        await station.connect_all()
    failures = info.value.failures
    assert set(failures) == {"lost", "hangs", "weird", "probe"}
    assert isinstance(failures["lost"], ConnectionLost)
    assert isinstance(failures["hangs"], InstrumentTimeout)
    assert isinstance(failures["probe"], ConnectionLost)
    text = str(info.value)
    assert "connect failed on 4 instrument(s)" in text
    assert "hangs [connect]: timeout: no result within 0.3 s" in text
    assert f"probe [connect]: connection lost: cannot reach 127.0.0.1:{port}" in text
    assert "weird: ValueError: bad reply" in text
    assert station.connected == {"good"}
    await station.close_all()


async def test_async_with_closes_everything_when_a_connect_fails() -> None:
    station = Station.from_config(_config({"good": _fake(), "bad": _fake(fail="lost")}))
    with pytest.raises(StationError):
        async with station:
            pytest.fail("the body must not run when a connect failed")
    assert {n for n, what in JOURNAL if what == "close"} == {"good", "bad"}


async def test_close_and_safe_state_reach_every_instrument_despite_failures() -> None:
    station = Station.from_config(
        _config({"a": _fake(fail="close"), "b": _fake(fail="safe_state"), "c": _fake()})
    )
    await station.connect_all()
    with pytest.raises(StationError) as info:
        await station.safe_state_all()
    assert set(info.value.failures) == {"b"}
    assert {n for n, what in JOURNAL if what == "safe_state"} == {"a", "b", "c"}
    assert station.get("c", Laser) is not None and not await station.get("c", Laser).get_output()
    with pytest.raises(StationError) as info:
        await station.close_all()
    assert set(info.value.failures) == {"a"}
    assert {n for n, what in JOURNAL if what == "close"} == {"a", "b", "c"}


async def test_health_and_snapshot_turn_failures_into_readable_entries() -> None:
    station = Station.from_config(
        _config(
            {
                "ok": _fake(power_mw=3.0),
                "sick": _fake(fail="health"),
                "mute": _fake(fail="snapshot"),
            }
        )
    )
    await station.connect_all()
    health = await station.health_all()
    assert health["ok"].ok and health["mute"].ok
    assert not health["sick"].ok and "sick [health]: timeout: no reply" in health["sick"].detail
    snapshots = await station.snapshot_all()
    assert snapshots["ok"] == {"output": True, "power_mw": 3.0}
    assert snapshots["mute"] == {"error": "mute [snapshot]: timeout: no reply"}
    await station.close_all()


async def test_a_hanging_instrument_does_not_stall_the_event_loop() -> None:
    station = Station.from_config(_config({"hangs": _fake(fail="hang")}), timeout_s=0.2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    with pytest.raises(StationError):
        await station.connect_all()
    task.cancel()
    assert ticks >= 5


@pytest.fixture
async def line_server() -> AsyncIterator[tuple[int, list[str]]]:
    """A TCP peer answering PING with PONG and recording every line it got."""
    received: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            received.append(line.decode().strip())
            writer.write(b"PONG\n" if line.strip() == b"PING" else b"OK\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], received
    server.close()
    await server.wait_closed()


async def test_probe_over_real_tcp(line_server: tuple[int, list[str]]) -> None:
    port, received = line_server
    probe = {
        "class": "tests.station.fake_instruments:LineProbe",
        "transport": {"kind": "tcp", "address": f"127.0.0.1:{port}"},
    }
    station = Station.from_config(_config({"probe": probe}))
    async with station:
        health = await station.health_all()
        await station.safe_state_all()
    assert health["probe"].ok and health["probe"].detail == "replied 'PONG'"
    assert received == ["PING", "SAFE"]


def test_station_rejects_a_nonsense_timeout() -> None:
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        Station(_config({}), {}, timeout_s=0)


def test_fake_module_is_the_one_the_station_imports() -> None:
    station = Station.from_config(_config({"laser": _fake()}))
    assert type(station.instruments["laser"]) is fake_instruments.FakeLaser
