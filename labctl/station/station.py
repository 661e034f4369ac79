"""A station: the world and instruments built from a config, with one lifecycle for all.

Every group operation (connect, close, safe state, health, snapshot) runs on all
instruments in parallel, each under its own timeout, and never stops at the first failure:
a lab user wants to see every instrument that is wrong, not just the first one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.clock import Clock, WallClock
from labctl.interfaces.errors import ConfigError, InstrumentTimeout, LabctlError
from labctl.interfaces.instrument import Health, Instrument
from labctl.station.errors import ConfigErrorGroup
from labctl.station.loader import import_classes
from labctl.station.model import StationConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_TIMEOUT_S = 10.0
"""Per-instrument limit of one group operation unless the caller gives another."""


class StationError(LabctlError):
    """One group operation failed on some instruments; ``failures`` lists every one."""

    def __init__(self, operation: str, failures: dict[str, BaseException]) -> None:
        self.operation = operation
        self.failures = dict(failures)
        lines = [f"{operation} failed on {len(failures)} instrument(s):"]
        lines += [f"  {name}: {_describe(error)}" for name, error in failures.items()]
        super().__init__("\n".join(lines))


def _describe(error: BaseException) -> str:
    """An error as one readable line (typed labctl errors already name what and where)."""
    if isinstance(error, LabctlError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _build(cls: type[Any], spec: InstrumentSpec, context: BuildContext, field: str) -> Any:
    """Call ``cls.from_config``; any failure becomes a ConfigError at the entry's line."""
    try:
        return cls.from_config(spec, context)
    except ConfigError as exc:
        if exc.file is not None:
            raise
        raise ConfigError(
            exc.message,
            file=spec.source.file,
            line=spec.source.line,
            field=exc.field or f"{field}.settings",
            suggestion=exc.suggestion,
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"{spec.class_path}.from_config failed: {_describe(exc)}",
            file=spec.source.file,
            line=spec.source.line,
            field=field,
        ) from exc


class Station:
    """The instruments of one lab node, built from a StationConfig, sharing one clock."""

    def __init__(
        self,
        config: StationConfig,
        instruments: dict[str, Instrument],
        *,
        world: Any | None = None,
        clock: Clock | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"Station timeout_s must be > 0, got {timeout_s}")
        self.config = config
        self.instruments = dict(instruments)
        self.world = world
        self.clock: Clock = clock if clock is not None else WallClock()
        self.timeout_s = timeout_s
        self._connected: set[str] = set()

    @classmethod
    def from_config(cls, config: StationConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Self:
        """Import every class, build the world first, then every instrument (unconnected)."""
        classes = import_classes(config)
        context = BuildContext(lab=config.lab, node=config.node, config_file=config.file)
        world = None
        clock: Clock = WallClock()
        world_spec = config.world_spec()
        if world_spec is not None:
            world = _build(classes["world"], world_spec, context, "world")
            world_clock = getattr(world, "clock", None)
            if isinstance(world_clock, Clock):
                clock = world_clock
        context = BuildContext(
            lab=config.lab, node=config.node, clock=clock, world=world, config_file=config.file
        )
        instruments: dict[str, Instrument] = {}
        problems: list[ConfigError] = []
        for name in config.instruments:
            spec = config.instrument_spec(name)
            field = f"instruments.{name}"
            try:
                built = _build(classes[name], spec, context, field)
            except ConfigError as exc:
                problems.append(exc)
                continue
            if not isinstance(built, Instrument):
                missing = [m for m in _INSTRUMENT_MEMBERS if not hasattr(built, m)]
                problems.append(
                    ConfigError(
                        f"{spec.class_path}.from_config returned {type(built).__name__}, "
                        f"which is not an Instrument (missing: {', '.join(missing)})",
                        file=spec.source.file,
                        line=spec.source.line,
                        field=field,
                    )
                )
                continue
            instruments[name] = built
        if problems:
            raise ConfigErrorGroup(problems)
        return cls(config, instruments, world=world, clock=clock, timeout_s=timeout_s)

    @property
    def lab(self) -> str:
        """The lab id from the config."""
        return self.config.lab

    @property
    def node(self) -> str:
        """The node id from the config."""
        return self.config.node

    @property
    def connected(self) -> frozenset[str]:
        """Names of the instruments connected by connect_all and not closed since."""
        return frozenset(self._connected)

    def get(self, name: str, kind: Callable[..., T]) -> T:
        """Instrument ``name``, checked to implement protocol ``kind`` (e.g. Laser)."""
        try:
            instrument = self.instruments[name]
        except KeyError:
            known = ", ".join(sorted(self.instruments)) or "none"
            raise KeyError(f"no instrument named '{name}' (station has: {known})") from None
        if not isinstance(instrument, cast(type, kind)):
            kind_name = getattr(kind, "__name__", str(kind))
            raise TypeError(
                f"instrument '{name}' ({type(instrument).__name__}) is not a {kind_name}"
            )
        return cast(T, instrument)

    def find(self, kind: Callable[..., T]) -> list[T]:
        """Every instrument implementing protocol ``kind``, in config order."""
        return [cast(T, i) for i in self.instruments.values() if isinstance(i, cast(type, kind))]

    async def _each(
        self,
        operation: str,
        call: Callable[[Instrument], Awaitable[R]],
        names: list[str] | None,
        timeout_s: float | None,
    ) -> tuple[dict[str, R], dict[str, BaseException]]:
        """Run ``call`` on the named instruments in parallel; split results from failures."""
        limit_s = self.timeout_s if timeout_s is None else timeout_s
        chosen = list(self.instruments) if names is None else names

        async def one(name: str) -> R:
            try:
                return await asyncio.wait_for(call(self.instruments[name]), limit_s)
            except TimeoutError:
                raise InstrumentTimeout(
                    f"no result within {limit_s:g} s", instrument=name, command=operation
                ) from None

        outcomes = await asyncio.gather(*(one(n) for n in chosen), return_exceptions=True)
        results: dict[str, R] = {}
        failures: dict[str, BaseException] = {}
        for name, outcome in zip(chosen, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                failures[name] = outcome
            else:
                results[name] = outcome
        return results, failures

    async def connect_all(self, timeout_s: float | None = None) -> None:
        """Connect every instrument in parallel; StationError lists all that failed.

        Instruments that did connect stay connected (see ``connected``), so a caller can
        still use or close them.
        """
        results, failures = await self._each("connect", lambda i: i.connect(), None, timeout_s)
        self._connected.update(results)
        for name, error in failures.items():
            log.error("connect %s failed: %s", name, _describe(error))
        if failures:
            raise StationError("connect", failures)

    async def close_all(self, timeout_s: float | None = None) -> None:
        """Close every instrument, even ones that failed to connect; StationError lists failures."""
        _, failures = await self._each("close", lambda i: i.close(), None, timeout_s)
        self._connected.clear()
        if failures:
            raise StationError("close", failures)

    async def safe_state_all(
        self, timeout_s: float | None = None, *, only_connected: bool = False
    ) -> None:
        """Put every instrument in its safe state in parallel; StationError lists failures."""
        names = [n for n in self.instruments if n in self._connected] if only_connected else None
        _, failures = await self._each("safe_state", lambda i: i.safe_state(), names, timeout_s)
        if failures:
            raise StationError("safe_state", failures)

    async def health_all(
        self, timeout_s: float | None = None, *, only_connected: bool = False
    ) -> dict[str, Health]:
        """Health of every instrument; a check that raises becomes ``Health(ok=False)``."""
        names = [n for n in self.instruments if n in self._connected] if only_connected else None
        results, failures = await self._each("health", lambda i: i.health(), names, timeout_s)
        for name, error in failures.items():
            results[name] = Health(ok=False, detail=_describe(error))
        return {name: results[name] for name in self.instruments if name in results}

    async def snapshot_all(self, timeout_s: float | None = None) -> dict[str, dict[str, Any]]:
        """Snapshot of every instrument for run metadata; a failed one is ``{"error": ...}``."""
        results, failures = await self._each("snapshot", lambda i: i.snapshot(), None, timeout_s)
        for name, error in failures.items():
            results[name] = {"error": _describe(error)}
        return {name: results[name] for name in self.instruments}

    async def __aenter__(self) -> Self:
        try:
            await self.connect_all()
        except BaseException:
            await self._close_quietly()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close_all()
        else:  # do not hide the error that ended the block behind a close failure
            await self._close_quietly()

    async def _close_quietly(self) -> None:
        """close_all, logging (not raising) failures."""
        try:
            await self.close_all()
        except StationError as error:
            log.error("%s", error)


_INSTRUMENT_MEMBERS = ("name", "connect", "close", "snapshot", "safe_state", "health")
