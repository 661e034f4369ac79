"""What every real driver shares: lifecycle over one Transport, settings memory, config.

A driver remembers every setting it has written (and the ones its config asked for), so
``connect()`` after a lost link re-applies them: the reconnect requirement of issue 4.
Settings are re-applied by ``order`` (low first, e.g. laser power before output on), then
in the order they were first written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, ClassVar

from labctl.interfaces.build import InstrumentSpec, TransportSpec
from labctl.interfaces.errors import ConfigError, InstrumentError
from labctl.interfaces.instrument import LifecycleMixin
from labctl.transport.base import Transport

Applier = Callable[[], Awaitable[object]]


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
    """Lifecycle of a driver over one Transport, with re-apply on (re)connect."""

    model: ClassVar[str] = "unknown"

    def __init__(self, name: str, transport: Transport) -> None:
        if not name:
            raise ValueError("a driver needs a non-empty instrument name")
        self.name = name
        self._transport = transport
        self._memory = SettingsMemory()
        self._identity: dict[str, str] = {}

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
        if self._transport.is_open and self._identity:
            return
        await self._transport.open()
        self._identity = await self._identify()
        for apply in self._memory.appliers():
            await apply()

    async def close(self) -> None:
        """Close the link; the device keeps its settings and so does this driver's memory."""
        self._identity = {}
        await self._transport.close()

    async def _identify(self) -> dict[str, str]:  # pragma: no cover - always overridden
        raise NotImplementedError

    def _remember(self, key: str, value: Any, apply: Applier, *, order: int = 0) -> None:
        self._memory.remember(key, value, apply, order=order)


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
    spec: InstrumentSpec, validators: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """Validated config settings by key; unknown keys and bad values -> ConfigError."""
    validated: dict[str, Any] = {}
    for key, value in spec.settings.items():
        field = f"instruments.{spec.name}.settings.{key}"
        validator = validators.get(key)
        if validator is None:
            known = ", ".join(sorted(validators))
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
