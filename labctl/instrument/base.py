"""What every real driver shares: lifecycle over one Transport, settings memory, config.

A driver remembers every setting it has written (and the ones its config asked for), so
``connect()`` after a lost link re-applies them. Settings are re-applied by ``order`` (low
first, e.g. laser power before output on), then in the order they were first written.

Recovery (see ``labctl.instrument.recovery``): every public operation that meets a dropped
link (ConnectionLost) reconnects on its own — at most ``attempts`` tries with exponential
backoff within ``total_s`` (the transport's ReconnectPolicy) — re-applies the settings
and runs again. The device may have restarted with factory state in between, which is
why the settings memory, not the device, is the reference. Only a driver that was
connected and not closed on purpose recovers; ``close()`` means closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, ClassVar, TypeVar

from labctl.instrument.recovery import enter_operation, inside_operation, leave_operation
from labctl.instrument.settings import Setting
from labctl.interfaces.build import InstrumentSpec, TransportSpec
from labctl.interfaces.errors import (
    ConfigError,
    ConnectionLost,
    InstrumentError,
    InstrumentTimeout,
    ProtocolError,
)
from labctl.interfaces.instrument import LifecycleMixin
from labctl.transport.base import Transport
from labctl.transport.recovery import policy_of

Applier = Callable[[], Awaitable[object]]
T = TypeVar("T")
log = logging.getLogger("drivers")

MAX_OPERATION_RUNS = 3
"""Runs of one operation at most: a link that drops right after each reconnect is down."""


class SettingsMemory:
    """The last value of each setting written, with how to write it again."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, Any, Applier]] = {}

    def remember(self, key: str, value: Any, apply: Applier, *, order: int = 0) -> None:
        """Record that ``key`` was set to ``value``; ``apply`` writes it again."""
        self._entries[key] = (order, value, apply)

    def forget(self, key: str) -> None:
        """Drop a setting (e.g. after a device reset)."""
        self._entries.pop(key, None)

    def values(self) -> dict[str, Any]:
        """The remembered values by key, for snapshots."""
        return {key: value for key, (_, value, _) in self._entries.items()}

    def appliers(self) -> list[Applier]:
        """Every remembered setting's applier, in re-apply order."""
        ranked = sorted(enumerate(self._entries.values()), key=lambda item: (item[1][0], item[0]))
        return [apply for _, (_, _, apply) in ranked]


class DriverBase(LifecycleMixin):
    """Lifecycle of a driver over one Transport, with re-apply on (re)connect.

    A driver that declares its ``settings`` (:class:`~labctl.instrument.settings.Setting`,
    one line each) gets their station-file validation (:meth:`config_validators`), checked
    and remembered writes (:meth:`_set_declared`, :meth:`_set_declared_channel`),
    re-application after a reconnect (:meth:`_remember_declared`) and the read-back part of
    its snapshot (:meth:`_declared_snapshot`) from that declaration.
    """

    model: ClassVar[str] = "unknown"
    settings: ClassVar[tuple[Setting, ...]] = ()

    def __init__(self, name: str, transport: Transport) -> None:
        if not name:
            raise ValueError("a driver needs a non-empty instrument name")
        self.name = name
        self._transport = transport
        self._memory = SettingsMemory()
        self._identity: dict[str, str] = {}
        self._wanted_open = False  # connect() called and close() not since: keep it up
        self._recovery_lock = asyncio.Lock()
        self._generation = 0  # bumped by every (re)connect: a recovery another task did
        self.reconnects = 0  # successful recoveries so far (for logs and tests)

    @property
    def transport(self) -> Transport:
        """The link this driver talks over."""
        return self._transport

    @property
    def identity(self) -> dict[str, str]:
        """Vendor, model, serial and firmware as read at the last connect."""
        return dict(self._identity)

    @property
    def remembered_settings(self) -> dict[str, Any]:
        """The settings that connect() re-applies after a reconnect."""
        return self._memory.values()

    async def connect(self) -> None:
        """Open the link, read the identity and re-apply every remembered setting."""
        self._wanted_open = True
        if self._transport.is_open and self._identity:
            return
        token = enter_operation(self)
        try:
            await self._open_and_restore()
        finally:
            leave_operation(token)
        self._generation += 1

    async def close(self) -> None:
        """Close the link; the device keeps its settings and so does this driver's memory."""
        self._wanted_open = False
        await self._close_links()

    async def _open_and_restore(self) -> None:
        """Open the link(s), read the identity, re-apply the settings in their order."""
        self._identity = {}
        await self._transport.open()
        self._identity = await self._identify()
        for apply in self._memory.appliers():
            await apply()

    async def _close_links(self) -> None:
        """Close every link of this driver (a driver with a second link closes it too)."""
        self._identity = {}
        await self._transport.close()

    def _after_reconnect(self) -> None:
        """Hook: note what a device restart may have lost (e.g. a stream's time base)."""

    def _link_suspect(self) -> bool:
        """Hook: True when the link looks up but the device may have restarted behind it."""
        return False

    async def _run_operation(
        self, name: str, run: Callable[[], Awaitable[T]], *, rerun: bool = True
    ) -> T:
        """Run one public operation; after a dropped link reconnect, re-apply, run again.

        ``rerun=False``: reconnect before running when the link is known to be down, but
        never run the operation a second time.
        """
        if inside_operation(self):
            return await run()
        token = enter_operation(self)
        try:
            lost: ConnectionLost | None = None
            for _ in range(MAX_OPERATION_RUNS):
                generation = self._generation
                link_up = self._transport.is_open and self._identity
                if self._wanted_open and (not link_up or self._link_suspect()):
                    await self._recover(generation, lost, name)
                    generation = self._generation
                try:
                    return await run()
                except ConnectionLost as exc:
                    if not self._wanted_open or not rerun:
                        raise
                    lost = exc
                    await self._recover(generation, exc, name)
            assert lost is not None
            raise ConnectionLost(
                f"link dropped again after each of {MAX_OPERATION_RUNS} reconnects: {lost.message}",
                instrument=self.name,
                command=lost.command or name,
            ) from lost
        finally:
            leave_operation(token)

    async def _recover(self, generation: int, cause: InstrumentError | None, name: str) -> None:
        """Reconnect with backoff and re-apply settings; ConnectionLost when it stays down."""
        async with self._recovery_lock:
            if self._generation != generation and self._transport.is_open and self._identity:
                return  # another task reconnected while this one waited
            if cause is None and self._transport.is_open and self._identity:
                log.info("%s: the device may have restarted; reconnecting", self.name)
            policy = policy_of(self._transport)
            loop = asyncio.get_running_loop()
            started = loop.time()
            last = cause
            tries = 0
            for delay_s in policy.schedule_s():
                if tries and loop.time() - started + delay_s > policy.total_s:
                    break
                await asyncio.sleep(delay_s)
                tries += 1
                try:
                    await self._close_links()
                    await self._open_and_restore()
                except (ConnectionLost, InstrumentTimeout, ProtocolError) as exc:
                    last = exc
                    log.info("%s: reconnect %d failed: %s", self.name, tries, exc)
                    continue
                self._generation += 1
                self.reconnects += 1
                self._after_reconnect()
                log.warning(
                    "%s: reconnected after %d attempt(s) (%s); %d setting(s) re-applied",
                    self.name,
                    tries,
                    "link dropped" if cause is None else cause.message,
                    len(self._memory.values()),
                )
                return
            await self._close_links()
            why = "never connected" if last is None else last.message
            raise ConnectionLost(
                f"still unreachable after {tries} reconnect attempt(s) in "
                f"{loop.time() - started:.1f} s: {why}",
                instrument=self.name,
                command=name if last is None or last.command is None else last.command,
            ) from last

    async def _identify(self) -> dict[str, str]:  # pragma: no cover - always overridden
        raise NotImplementedError

    def _remember(self, key: str, value: Any, apply: Applier, *, order: int = 0) -> None:
        self._memory.remember(key, value, apply, order=order)

    # -- declared settings --------------------------------------------------------------

    @classmethod
    def config_validators(cls, name: str) -> dict[str, Callable[[Any], Any]]:
        """The station file's ``settings:`` checks, one per declared setting."""
        return {s.name: functools.partial(s.check, name) for s in cls.settings}

    @classmethod
    def declared(cls, key: str) -> Setting:
        """The declaration of setting ``key`` (KeyError names the known ones)."""
        for setting in cls.settings:
            if setting.name == key:
                return setting
        raise KeyError(f"{cls.__name__} declares no setting {key!r}")

    def _declared_limits(self, key: str) -> tuple[float, float] | None:
        """The range of ``key`` for the unit connected (the declaration's by default)."""
        return self.declared(key).limits

    async def _set_declared(self, key: str, value: Any) -> Any:
        """Check ``value`` against the declaration, write it, remember it; the value used."""
        setting = self.declared(key)
        checked = setting.check(self.name, value, self._declared_limits(key))
        if setting.apply is None:
            raise NotImplementedError(f"{type(self).__name__}: {key} declares no apply")
        await setting.apply(self, checked)
        self._remember_declared(key, checked)
        return checked

    def _remember_declared(self, key: str, value: Any) -> None:
        """Remember a declared setting so connect() (re-)applies it in its order.

        A per-channel setting with ``apply_channel`` is remembered channel by channel
        (``voltages_mv[2]``), so a later write of one channel replaces only that one.
        """
        setting = self.declared(key)
        if setting.channels is not None and setting.apply_channel is not None:
            for channel, item in enumerate(value):
                self._remember_channel(setting, channel, item)
            return
        apply = setting.apply
        if apply is None:
            raise NotImplementedError(f"{type(self).__name__}: {key} declares no apply")
        self._remember(key, value, functools.partial(apply, self, value), order=setting.order)

    async def _set_declared_channel(self, key: str, channel: int, value: Any) -> Any:
        """Check one channel's ``value``, write it with ``apply_channel``, remember it."""
        setting = self.declared(key)
        if setting.channels is None or setting.apply_channel is None:
            raise NotImplementedError(f"{type(self).__name__}: {key} is not written per channel")
        checked = setting.check_one(self.name, value, self._declared_limits(key), channel=channel)
        await setting.apply_channel(self, channel, checked)
        self._remember_channel(setting, channel, checked)
        return checked

    def _remember_channel(self, setting: Setting, channel: int, value: Any) -> None:
        assert setting.apply_channel is not None
        self._remember(
            f"{setting.name}[{channel}]",
            value,
            functools.partial(setting.apply_channel, self, channel, value),
            order=setting.order,
        )

    async def _declared_snapshot(self) -> dict[str, Any]:
        """Every declared setting that has ``read``, read back, in declaration order."""
        return {s.name: await s.read(self) for s in self.settings if s.read is not None}


def with_default_options(spec: TransportSpec, defaults: Mapping[str, Any]) -> TransportSpec:
    """``spec`` with ``defaults`` filled in for options the config did not give."""
    return dataclasses.replace(spec, options={**defaults, **spec.options})


def require_transport(spec: InstrumentSpec, kinds: tuple[str, ...]) -> TransportSpec:
    """The spec's transport, or ConfigError naming the entry when missing or of a wrong kind."""
    transport = spec.transport
    if transport is None:
        raise ConfigError(
            f"{spec.class_path} needs a transport ({' or '.join(kinds)})",
            file=spec.source.file,
            line=spec.source.line,
            field=f"instruments.{spec.name}.transport",
        )
    if transport.kind not in kinds:
        raise ConfigError(
            f"{spec.class_path} speaks over {' or '.join(kinds)}, not {transport.kind}",
            file=spec.source.file,
            line=spec.source.line,
            field=f"instruments.{spec.name}.transport.kind",
        )
    return transport


def make_transport(
    spec: InstrumentSpec, transport: TransportSpec, *, driver_options: Collection[str] = ()
) -> Transport:
    """Build the real transport for ``spec`` through labctl's factory (ConfigError on typos)."""
    from labctl.transport.factory import make_transport as factory

    return factory(
        transport, instrument=spec.name, source=spec.source, driver_options=driver_options
    )


def validate_config_settings(
    spec: InstrumentSpec,
    validators: Mapping[str, Callable[[Any], Any]],
    *,
    handled_elsewhere: Collection[str] = (),
) -> dict[str, Any]:
    """Validated config settings by key; unknown keys and bad values -> ConfigError.

    Keys in ``handled_elsewhere`` (e.g. a twin's ``faults``) are known but left out.
    """
    validated: dict[str, Any] = {}
    for key, value in spec.settings.items():
        if key in handled_elsewhere:
            continue
        field = f"instruments.{spec.name}.settings.{key}"
        validator = validators.get(key)
        if validator is None:
            known = ", ".join(sorted([*validators, *handled_elsewhere]))
            raise ConfigError(
                f"unknown setting for {spec.class_path} (known: {known})",
                file=spec.source.file,
                line=spec.source.line,
                field=field,
            )
        try:
            validated[key] = validator(value)
        except (TypeError, ValueError) as exc:
            message = exc.message if isinstance(exc, InstrumentError) else str(exc)
            raise ConfigError(
                message, file=spec.source.file, line=spec.source.line, field=field
            ) from None
    return validated
