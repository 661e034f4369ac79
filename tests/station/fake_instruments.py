"""Test fixtures for the station logic: small in-memory and TCP instruments, not simulations.

They implement the Instrument/Laser protocols with just enough behaviour to observe what the
station does (parallel connects, timeouts, close/safe_state on every instrument).
Config files name them as ``tests.station.fake_instruments:FakeLaser`` etc.
"""

from __future__ import annotations

import asyncio
from typing import Any

from labctl.interfaces import (
    BuildContext,
    ConfigError,
    ConnectionLost,
    Health,
    InstrumentSpec,
    InstrumentTimeout,
    LifecycleMixin,
)

# Everything the fakes did, in order, so tests can assert on what the station called.
JOURNAL: list[tuple[str, str]] = []


class VirtualClock:
    """A clock whose time moves only when someone sleeps on it."""

    def __init__(self) -> None:
        self._now_s = 0.0

    @property
    def is_virtual(self) -> bool:
        return True

    def now_s(self) -> float:
        return self._now_s

    async def sleep(self, duration_s: float) -> None:
        self._now_s += max(0.0, duration_s)
        await asyncio.sleep(0)


class FakeWorld:
    """A world object: has a virtual clock and remembers what attached to it."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.clock = VirtualClock()
        self.attached: list[str] = []

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> FakeWorld:
        JOURNAL.append(("world", "build"))
        return cls(seed=int(spec.settings.get("seed", 0)))


class Concurrency:
    """Counts how many connects are in flight at once (to see that they run in parallel)."""

    active = 0
    peak = 0


class FakeInstrument(LifecycleMixin):
    """In-memory lifecycle whose connect can be slowed down or made to fail (``fail`` setting)."""

    KNOWN_SETTINGS = frozenset({"power_mw", "connect_delay_s", "fail", "hold_s"})

    def __init__(self, name: str, settings: dict[str, Any], context: BuildContext) -> None:
        self.name = name
        self.context = context
        self.connect_delay_s = float(settings.get("connect_delay_s", 0.0))
        self.hold_s = float(settings.get("hold_s", 0.0))
        self.fail: str | None = settings.get("fail")
        self.connected = False
        self.output = True
        self.power_mw = float(settings.get("power_mw", 1.0))
        self.wavelength_nm = 1550.0

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> FakeInstrument:
        unknown = set(spec.settings) - cls.KNOWN_SETTINGS
        if unknown:
            raise ConfigError(f"unknown setting '{sorted(unknown)[0]}'")
        if context.world is not None:
            context.world.attached.append(spec.name)
        return cls(spec.name, spec.settings, context)

    async def connect(self) -> None:
        Concurrency.active += 1
        Concurrency.peak = max(Concurrency.peak, Concurrency.active)
        try:
            # Hold the connect open a moment so parallel connects overlap observably.
            await asyncio.sleep(self.hold_s)
            if self.fail == "hang":
                await asyncio.sleep(3600)
            if self.fail == "lost":
                raise ConnectionLost("peer closed", instrument=self.name, command="connect")
            if self.fail == "value":
                raise ValueError("bad reply")
            await asyncio.sleep(self.connect_delay_s)
        finally:
            Concurrency.active -= 1
        self.connected = True
        JOURNAL.append((self.name, "connect"))

    async def close(self) -> None:
        JOURNAL.append((self.name, "close"))
        self.connected = False
        if self.fail == "close":
            raise ConnectionLost("socket already gone", instrument=self.name, command="close")

    async def snapshot(self) -> dict[str, Any]:
        if self.fail == "snapshot":
            raise InstrumentTimeout("no reply", instrument=self.name, command="snapshot")
        return {"output": self.output, "power_mw": self.power_mw}

    async def safe_state(self) -> None:
        JOURNAL.append((self.name, "safe_state"))
        if self.fail == "safe_state":
            raise ConnectionLost("cannot switch off", instrument=self.name, command="safe_state")
        self.output = False

    async def health(self) -> Health:
        if self.fail == "health":
            raise InstrumentTimeout("no reply", instrument=self.name, command="health")
        return Health(ok=self.connected, detail="connected" if self.connected else "closed")


class FakeLaser(FakeInstrument):
    """An in-memory laser (implements the Laser protocol)."""

    async def set_output(self, enabled: bool) -> None:
        self.output = enabled

    async def get_output(self) -> bool:
        return self.output

    async def set_power_mw(self, power_mw: float) -> None:
        self.power_mw = power_mw

    async def get_power_mw(self) -> float:
        return self.power_mw

    async def set_wavelength_nm(self, wavelength_nm: float) -> None:
        self.wavelength_nm = wavelength_nm

    async def get_wavelength_nm(self) -> float:
        return self.wavelength_nm


class FakeSwitch(FakeInstrument):
    """An in-memory optical switch, so typed lookups have something that is not a Laser."""

    port = 1

    async def set_port(self, port: int) -> None:
        self.port = port

    async def get_port(self) -> int:
        return self.port

    @property
    def n_ports(self) -> int:
        return 4

    @property
    def parking_port(self) -> int:
        return 4


class LineProbe(LifecycleMixin):
    """Talks over a real TCP socket: connect opens it, health asks 'PING', safe_state says 'SAFE'.

    Every reply is one line; every step has the transport's timeout.
    """

    def __init__(self, name: str, host: str, port: int, timeout_s: float) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> LineProbe:
        if spec.transport is None or spec.transport.kind != "tcp":
            raise ConfigError("LineProbe needs a tcp transport", field=f"instruments.{spec.name}")
        host, _, port = spec.transport.address.rpartition(":")
        return cls(spec.name, host, int(port), spec.transport.timeout_s)

    async def connect(self) -> None:
        where = f"{self.host}:{self.port}"
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout_s
            )
        except TimeoutError:
            raise InstrumentTimeout(
                f"{where} did not accept within {self.timeout_s} s",
                instrument=self.name,
                command="connect",
            ) from None
        except OSError as exc:
            raise ConnectionLost(
                f"cannot reach {where}: {exc.strerror or exc}",
                instrument=self.name,
                command="connect",
            ) from None

    async def _ask(self, line: str) -> str:
        if self._reader is None or self._writer is None:
            raise ConnectionLost("not connected", instrument=self.name, command=line)
        self._writer.write(line.encode() + b"\n")
        await self._writer.drain()
        try:
            reply = await asyncio.wait_for(self._reader.readline(), self.timeout_s)
        except TimeoutError:
            raise InstrumentTimeout("no reply", instrument=self.name, command=line) from None
        if not reply:
            raise ConnectionLost("peer closed", instrument=self.name, command=line)
        return reply.decode().strip()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
        self._reader = self._writer = None

    async def snapshot(self) -> dict[str, Any]:
        return {"address": f"{self.host}:{self.port}"}

    async def safe_state(self) -> None:
        await self._ask("SAFE")

    async def health(self) -> Health:
        reply = await self._ask("PING")
        return Health(ok=reply == "PONG", detail=f"replied {reply!r}")


class NotAnInstrument:
    """Has a factory, but what it builds lacks the Instrument lifecycle."""

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> NotAnInstrument:
        return cls()


class NoFactory:
    """A class the station cannot build: it lacks from_config."""
