"""An instrument that stays down suspends the run, is remedied, and the run goes on.

The main test drives real drivers over their wire twins on loopback: the laser's wire
twin goes away for longer than the driver's own reconnects last, then comes back as a
fresh device; the run is suspended (state and event naming the instrument and the error),
resumes by itself, and ends ok with the laser's settings back on the new device.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from labctl.interfaces import Health, LifecycleMixin
from labctl.interfaces.errors import ConnectionLost, InstrumentFault
from labctl.runner.engine import RunEngine
from labctl.runner.link_guard import GuardedInstrument, LinkRecoveryPolicy
from labctl.runner.status import RunState
from labctl.store.events import read_events
from sims.wire.tsl570 import Tsl570Wire
from sims.world import World
from tests.runner.runner_fixtures import MiniStation
from tests.sims.wire.wired import WIRE_WORLD, make_twin, wired_station

FAST = LinkRecoveryPolicy(give_up_s=20.0, first_delay_s=0.2, factor=1.5, max_delay_s=0.5)


def _runner_events(run_path: Path) -> list[dict[str, Any]]:
    return [
        e["data"] for e in read_events(run_path / "events.jsonl") if e.get("stream") == "runner"
    ]


async def _steady_plan(run: Any) -> dict[str, Any]:
    """Keep using the laser and the switch for ``n`` steps, checkpointing after each."""
    laser = run.instrument("laser")
    switch = run.instruments.get("switch")
    await laser.set_power_mw(2.5)
    await laser.set_output(True)
    powers = []
    for i in range(int(run.args["n"])):
        powers.append(await laser.get_power_mw())
        if switch is not None:
            await switch.set_port(1 + i % 2)
        await run.sleep(0.05)
        await run.checkpoint({"next": i + 1})
    return {"powers": powers}


async def test_wire_twin_away_for_seconds_suspends_then_the_run_ends_ok(tmp_path: Path) -> None:
    async with wired_station(["laser", "optical_switch"]) as setup:
        station = MiniStation(dict(setup.drivers))
        engine = RunEngine(station, runs_dir=tmp_path / "runs", link_recovery=FAST)
        old = setup.server("laser")
        port = int(old.endpoints()["control"].rsplit(":", 1)[1])
        states: list[RunState] = []
        back: dict[str, Any] = {}

        async def outage() -> None:
            await asyncio.sleep(0.3)
            await old.stop()
            # Longer than the driver's own reconnects (under 1 s in these tests).
            await asyncio.sleep(1.5)
            twin = make_twin("laser", World.from_settings(WIRE_WORLD))
            await twin.connect()
            server = Tsl570Wire("laser", twin, port=port)
            await server.start()
            back.update(twin=twin, server=server)

        from labctl.runner.control import RunControl

        control = RunControl()
        control.on_state(states.append)
        outage_task = asyncio.create_task(outage())
        try:
            result = await engine.run(_steady_plan, args={"n": 30}, control=control)
            await outage_task
            assert result.status == "ok", result.reason
            assert result.result["powers"] == [2.5] * 30
            assert await back["twin"].get_power_mw() == 2.5  # re-applied on the new device
            # safe_state at the end switched the new device's output off again.
            assert await back["twin"].get_output() is False
        finally:
            outage_task.cancel()
            if "server" in back:
                await back["server"].stop()
                await back["twin"].close()
        assert RunState.SUSPENDED in states
        after = states[states.index(RunState.SUSPENDED) + 1 :]
        assert RunState.RUNNING in after  # resumed before stopping
        events = _runner_events(result.path)
        suspended = [e for e in events if e.get("action") == "suspended"]
        assert len(suspended) == 1
        assert suspended[0]["instrument"] == "laser"
        assert "ConnectionLost" in suspended[0]["error"]
        resumed = [e for e in events if e.get("action") == "unsuspended"]
        assert resumed and resumed[0]["instrument"] == "laser"
        assert resumed[0]["down_s"] > 0.5


async def test_an_instrument_that_stays_down_aborts_the_run_after_give_up(
    tmp_path: Path,
) -> None:
    async with wired_station(["laser"]) as setup:
        station = MiniStation(dict(setup.drivers))
        policy = LinkRecoveryPolicy(give_up_s=1.0, first_delay_s=0.2, factor=1.0)
        engine = RunEngine(station, runs_dir=tmp_path / "runs", link_recovery=policy)
        await setup.server("laser").stop()
        result = await engine.run(_steady_plan, args={"n": 3})
        assert result.status == "aborted"
        assert "instrument 'laser' still failing" in result.reason
        assert "give-up time 1 s" in result.reason and "ConnectionLost" in result.reason
        actions = [e.get("action") for e in _runner_events(result.path)]
        assert "suspended" in actions and "give-up" in actions
        assert "unsuspended" not in actions


class FlakyMeter(LifecycleMixin):
    """A test instrument whose link is down while ``down`` is set (real behaviour, no mock)."""

    def __init__(self) -> None:
        self.name = "meter"
        self.down = False
        self.connected = True
        self.calls = 0

    async def connect(self) -> None:
        if self.down:
            raise ConnectionLost("refused", instrument=self.name, command="connect")
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def snapshot(self) -> dict[str, Any]:
        return {}

    async def safe_state(self) -> None:
        return None

    async def health(self) -> Health:
        return Health(not self.down)

    async def read_hz(self) -> float:
        self.calls += 1
        if self.down or not self.connected:
            raise ConnectionLost("link dropped", instrument=self.name, command="read_hz")
        return 42.0

    async def set_rate_hz(self, rate_hz: float) -> None:
        if rate_hz < 0:
            raise InstrumentFault("negative rate refused", instrument=self.name, command="rate")


async def test_a_refusal_is_not_a_suspension(tmp_path: Path) -> None:
    meter = FlakyMeter()
    engine = RunEngine(MiniStation({"meter": meter}), runs_dir=tmp_path, link_recovery=FAST)

    async def plan(run: Any) -> None:
        await run.instrument("meter").set_rate_hz(-1.0)

    result = await engine.run(plan)
    assert result.status == "failed" and "negative rate refused" in result.reason
    assert "suspended" not in [e.get("action") for e in _runner_events(result.path)]


async def test_an_abort_while_suspended_stops_the_run(tmp_path: Path) -> None:
    meter = FlakyMeter()
    meter.down = True
    engine = RunEngine(MiniStation({"meter": meter}), runs_dir=tmp_path, link_recovery=FAST)
    from labctl.runner.control import RunControl

    control = RunControl()

    async def plan(run: Any) -> float:
        meter_seen = run.station.instruments["meter"]
        assert isinstance(meter_seen, GuardedInstrument)
        asyncio.get_running_loop().call_later(0.5, control.abort, "operator stop")
        value: float = await meter_seen.read_hz()
        return value

    result = await engine.run(plan, control=control)
    assert result.status == "aborted" and result.reason == "operator stop"
    assert meter.calls == 1


async def test_guard_is_off_when_asked(tmp_path: Path) -> None:
    meter = FlakyMeter()
    meter.down = True
    engine = RunEngine(MiniStation({"meter": meter}), runs_dir=tmp_path, instrument_give_up_s=None)

    async def plan(run: Any) -> float:
        value: float = await run.instrument("meter").read_hz()
        return value

    result = await engine.run(plan)
    assert result.status == "failed" and "link dropped" in result.reason


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_policy_rejects_a_useless_give_up(bad: float) -> None:
    with pytest.raises(ValueError, match="give_up_s"):
        LinkRecoveryPolicy(give_up_s=bad)


async def test_concurrent_calls_share_one_suspension(tmp_path: Path) -> None:
    meter = FlakyMeter()
    meter.down = True
    engine = RunEngine(MiniStation({"meter": meter}), runs_dir=tmp_path, link_recovery=FAST)

    def back() -> None:
        meter.down = False

    async def plan(run: Any) -> list[float]:
        asyncio.get_running_loop().call_later(0.5, back)
        guarded = run.instrument("meter")
        readings: list[float] = list(await asyncio.gather(guarded.read_hz(), guarded.read_hz()))
        return readings

    result = await engine.run(plan)
    assert result.status == "ok" and result.result == [42.0, 42.0]
    actions = [e.get("action") for e in _runner_events(result.path)]
    assert actions.count("suspended") == 1 and actions.count("unsuspended") == 1


class StreamingMeter(FlakyMeter):
    """A FlakyMeter whose read_hz continues a stream a restarted device has forgotten."""

    unrepeatable_operations = frozenset({"read_hz"})


async def test_unrepeatable_operations_go_to_the_plan_unguarded(tmp_path: Path) -> None:
    meter = StreamingMeter()
    meter.down = True
    engine = RunEngine(MiniStation({"meter": meter}), runs_dir=tmp_path, link_recovery=FAST)

    async def plan(run: Any) -> float:
        value: float = await run.instrument("meter").read_hz()
        return value

    result = await engine.run(plan)
    assert result.status == "failed" and "link dropped" in result.reason
    assert meter.calls == 1
    assert "suspended" not in [e.get("action") for e in _runner_events(result.path)]
