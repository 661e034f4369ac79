"""ID Quantique ID120 silicon SPAD modules, one per channel, as one SinglePhotonDetector.

Protocol facts (the ID120's SCPI command set as the public ID120 driver of the
Instrumental library uses it): LF-terminated SCPI text on the module's USB-TMC (VISA)
link; ``*IDN?`` names ``IDQuantique`` and ``ID120``; ``THRESHOLD:VOLTAGE`` (µV, 0..1 047 000
in 500 µV steps), ``BIAS:VOLTAGE`` (µV, 0..250 000 000 in 80 mV steps),
``BIAS:ERROR_STATUS?`` (``TRUE``/``FALSE``), ``COUNTERS:INTEGRATION_TIME`` (ms, 200..100 000
in 200 ms steps), ``COUNTERS:DETECTION_FREQ?`` (Hz over the last window), ``REG:RUN``
(``TRUE``/``FALSE``: cooling and bias on, the module counts), ``REG:STATE?``.

Assumptions, where the public sources say nothing:

- Settings answer nothing and a refused one leaves the value as it was, so every setting
  is read back; a different value read back raises InstrumentFault naming the command.
- One module is one channel: the transport ``address`` is channel 0's module, option
  ``channel_addresses`` lists the others in channel order (``tcp`` for a raw-socket
  bridge, as the wire twin serves, or ``visa`` resources such as ``USB0::...::INSTR``).
- Bias: labctl's detector interface carries an SNSPD's bias current in µA; a SPAD is
  biased by a voltage. This driver reads the labctl figure as volts on the diode:
  ``bias_ua = x`` sets ``BIAS:VOLTAGE`` to x V (rounded to the 80 mV step), so a station
  file gives SPAD bias voltages under ``bias_ua``.
- Latch: a SPAD does not latch; ``is_latched`` reports ``BIAS:ERROR_STATUS`` (the bias
  failed, no counts) and ``reset_latch`` cycles ``REG:RUN``.
- Rates: ``COUNTERS:DETECTION_FREQ?`` of every module; the module's own window
  (``integration_ms`` setting, default 200 ms) is set at connect, ``integration_s`` is
  only checked.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Self

from labctl.instrument.base import DriverBase, make_transport, require_transport
from labctl.instrument.base import validate_config_settings as validate_settings
from labctl.instrument.scpi import ScpiLink
from labctl.instrument.settings import Setting
from labctl.instrument.validate import (
    RefusedValue,
    check_channel,
    check_number,
    parse_float,
)
from labctl.interfaces.build import BuildContext, InstrumentSpec, TransportSpec
from labctl.interfaces.errors import ConfigError, InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health
from labctl.transport.base import Transport

BIAS_RANGE_V = (0.0, 250.0)
BIAS_STEP_UV = 80_000
THRESHOLD_RANGE_MV = (0.0, 1047.0)
THRESHOLD_STEP_UV = 500
INTEGRATION_RANGE_MS = (200, 100_000)
INTEGRATION_STEP_MS = 200
MAX_MODULES = 16
"""The per-channel declarations' bound; from_config asks one value per module it names."""
ORDER_WINDOW = -1  # the counting window, as at every connect before anything else
ORDER_BIAS = 0
ORDER_THRESHOLD = 1
ORDER_RUN = 10  # the module runs only once its bias and threshold are back


def bias_uv(bias_ua: float) -> int:
    """The BIAS:VOLTAGE value (µV, on the 80 mV step) for a labctl bias figure (V)."""
    return round(bias_ua * 1e6 / BIAS_STEP_UV) * BIAS_STEP_UV


def threshold_uv(level_mv: float) -> int:
    """The THRESHOLD:VOLTAGE value (µV, on the 500 µV step) for a level in mV."""
    return round(level_mv * 1e3 / THRESHOLD_STEP_UV) * THRESHOLD_STEP_UV


class ID120Array(DriverBase):
    """Driver for N ID Quantique ID120 modules (implements labctl's SinglePhotonDetector)."""

    model: ClassVar[str] = "ID Quantique ID120"
    # Declared in the order snapshot() reads them back; re-applied by ``order``.
    settings = (
        Setting(
            "integration_ms",
            "integer",
            INTEGRATION_RANGE_MS,
            apply=lambda d, ms: d._set_every("COUNTERS:INTEGRATION_TIME", ms),
            order=ORDER_WINDOW,
        ),
        Setting(
            "enabled",
            "bool",
            order=ORDER_RUN,
            read=lambda d: d._every_channel(d.get_enabled),
            channels=MAX_MODULES,
            apply_channel=lambda d, ch, on: d._set(ch, "REG:RUN", "TRUE" if on else "FALSE"),
        ),
        Setting(
            "bias_ua",
            "number",
            BIAS_RANGE_V,
            order=ORDER_BIAS,
            read=lambda d: d._every_channel(d.get_bias_ua),
            channels=MAX_MODULES,
            apply_channel=lambda d, ch, v: d._set(ch, "BIAS:VOLTAGE", bias_uv(v)),
        ),
        Setting(
            "trigger_level_mv",
            "number",
            THRESHOLD_RANGE_MV,
            order=ORDER_THRESHOLD,
            read=lambda d: d._every_channel(d.get_trigger_level_mv),
            channels=MAX_MODULES,
            apply_channel=lambda d, ch, mv: d._set(ch, "THRESHOLD:VOLTAGE", threshold_uv(mv)),
        ),
    )

    def __init__(
        self, name: str, transports: Sequence[Transport], *, integration_ms: int = 200
    ) -> None:
        if not transports:
            raise ValueError(f"{name}: an ID120 array needs at least one module")
        super().__init__(name, transports[0])
        self._links = [ScpiLink(t, terminator=b"\n") for t in transports]
        self._transports = list(transports)
        self._integration_ms = _check_integration_ms(name, integration_ms)
        self._serials: list[str] = []
        # Every module counts over this window: set at connect, before the other settings.
        self._remember_declared("integration_ms", self._integration_ms)

    @classmethod
    def config_validators(cls, name: str) -> dict[str, Callable[[Any], Any]]:
        """The declared checks, with the window's 200 ms step (a Setting has no step)."""
        return {
            **super().config_validators(name),
            "integration_ms": functools.partial(_check_integration_ms, name),
        }

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: enabled, bias_ua, trigger_level_mv (lists),
        integration_ms; transport option channel_addresses (channels 1..N-1)."""
        transport_spec = require_transport(spec, ("tcp", "visa"))
        others = transport_spec.options.get("channel_addresses", [])
        if not isinstance(others, list) or not all(isinstance(a, str) for a in others):
            raise ConfigError(
                "must be a list of addresses (channels 1..N-1)",
                file=spec.source.file,
                line=spec.source.line,
                field=f"instruments.{spec.name}.transport.options.channel_addresses",
            )
        options = {k: v for k, v in transport_spec.options.items() if k != "channel_addresses"}
        if transport_spec.kind == "visa":
            options = {"write_termination": "", "read_termination": "\n", **options}
        specs = [
            TransportSpec(transport_spec.kind, address, transport_spec.timeout_s, options)
            for address in [transport_spec.address, *others]
        ]
        validated = validate_settings(spec, cls._array_validators(spec.name, len(specs)))
        driver = cls(
            spec.name,
            [make_transport(spec, s) for s in specs],
            integration_ms=validated.pop("integration_ms", 200),
        )
        for key, value in validated.items():
            driver._remember_declared(key, value)
        return driver

    @classmethod
    def _array_validators(cls, name: str, n_modules: int) -> dict[str, Callable[[Any], Any]]:
        """The station file's checks, each per-channel list sized to the modules named."""
        validators = cls.config_validators(name)
        for setting in cls.settings:
            if setting.channels is not None:
                sized = dataclasses.replace(setting, channels=n_modules, min_channels=n_modules)
                validators[setting.name] = functools.partial(sized.check, name)
        return validators

    # -- lifecycle ----------------------------------------------------------------------

    async def _identify(self) -> dict[str, str]:
        self._serials = []
        fields: list[str] = []
        for channel, (transport, link) in enumerate(
            zip(self._transports, self._links, strict=True)
        ):
            if not transport.is_open:
                await transport.open()
            reply = await link.ask("*IDN?")
            fields = [part.strip() for part in reply.split(",")]
            if len(fields) < 2 or fields[0] != "IDQuantique" or fields[1] != "ID120":
                raise ProtocolError(
                    f"channel {channel}: not an ID120 identity: {reply!r}",
                    instrument=self.name,
                    command="*IDN?",
                )
            self._serials.append(fields[2] if len(fields) > 2 else "")
        return {
            "vendor": fields[0],
            "model": fields[1],
            "serial": ",".join(self._serials),
            "firmware": fields[3] if len(fields) > 3 else "",
        }

    async def close(self) -> None:
        """Close every module's link."""
        for transport in self._transports[1:]:
            await transport.close()
        await super().close()

    async def snapshot(self) -> dict[str, Any]:
        """Identity and every channel's run state, bias figure and level as read back."""
        return {
            "model": self.model,
            **self.identity,
            "integration_ms": self._integration_ms,  # as set at connect; not queried
            **await self._declared_snapshot(),
        }

    async def safe_state(self) -> None:
        """Every module off (REG:RUN FALSE): no bias on the diodes."""
        for channel in range(self.n_channels):
            await self.set_enabled(channel, False)

    async def health(self) -> Health:
        """Unhealthy when a module reports a bias error; readings: rates and states."""
        rates = await self.get_count_rates_hz(1.0)
        readings: dict[str, float | int | str | bool] = {}
        ok = True
        for channel, rate in enumerate(rates):
            latched = await self.is_latched(channel)
            readings[f"rate_{channel}_hz"] = rate
            readings[f"bias_error_{channel}"] = latched
            ok = ok and not latched
        return Health(ok=ok, detail="ok" if ok else "bias error", readings=readings)

    # -- SinglePhotonDetector interface -------------------------------------------------

    @property
    def n_channels(self) -> int:
        """One channel per module."""
        return len(self._links)

    async def set_enabled(self, channel: int, enabled: bool) -> None:
        """REG:RUN TRUE/FALSE on the channel's module."""
        check_channel(self.name, channel, self.n_channels)
        await self._set_declared_channel("enabled", channel, enabled)

    async def get_enabled(self, channel: int) -> bool:
        """True while the module runs."""
        return await self._flag(channel, "REG:RUN?")

    async def set_bias_ua(self, channel: int, bias_ua: float) -> None:
        """The bias figure as volts on the diode (see the module docstring)."""
        check_channel(self.name, channel, self.n_channels)
        await self._set_declared_channel("bias_ua", channel, bias_ua)

    async def get_bias_ua(self, channel: int) -> float:
        """The bias voltage read back, as the labctl bias figure (V)."""
        return await self._number(channel, "BIAS:VOLTAGE?") / 1e6

    async def set_trigger_level_mv(self, channel: int, level_mv: float) -> None:
        """The discriminator threshold, millivolts (500 µV steps)."""
        check_channel(self.name, channel, self.n_channels)
        await self._set_declared_channel("trigger_level_mv", channel, level_mv)

    async def get_trigger_level_mv(self, channel: int) -> float:
        """The threshold read back, millivolts."""
        return await self._number(channel, "THRESHOLD:VOLTAGE?") / 1e3

    async def get_count_rates_hz(self, integration_s: float) -> list[float]:
        """Every module's detection frequency over its own window, hertz."""
        check_number(self.name, "integration_s", integration_s, 1e-6, 3600.0)
        return [await self._number(c, "COUNTERS:DETECTION_FREQ?") for c in range(self.n_channels)]

    async def is_latched(self, channel: int) -> bool:
        """True while the module reports a bias error."""
        return await self._flag(channel, "BIAS:ERROR_STATUS?")

    async def reset_latch(self, channel: int) -> None:
        """Cycle REG:RUN (off, then on)."""
        check_channel(self.name, channel, self.n_channels)
        await self._set(channel, "REG:RUN", "FALSE")
        await self._set(channel, "REG:RUN", "TRUE")

    # -- internals ----------------------------------------------------------------------

    async def _every_channel(self, read: Callable[[int], Awaitable[Any]]) -> list[Any]:
        """``read`` of each channel, in channel order."""
        return [await read(channel) for channel in range(self.n_channels)]

    async def _set_every(self, header: str, value: int | str) -> None:
        """``_set`` on every module, in channel order."""
        for channel in range(self.n_channels):
            await self._set(channel, header, value)

    async def _set(self, channel: int, header: str, value: int | str) -> None:
        """Write, read back, and raise InstrumentFault when the module kept another value."""
        link = self._links[channel]
        await link.send(f"{header} {value}")
        reply = await link.ask(f"{header}?")
        if reply.strip().upper() != str(value).upper():
            raise InstrumentFault(
                f"channel {channel} kept {reply.strip()!r} (refused {value})",
                instrument=self.name,
                command=header,
            )

    async def _number(self, channel: int, query: str) -> float:
        check_channel(self.name, channel, self.n_channels)
        reply = await self._links[channel].ask(query)
        return parse_float(reply, instrument=self.name, command=query)

    async def _flag(self, channel: int, query: str) -> bool:
        check_channel(self.name, channel, self.n_channels)
        reply = (await self._links[channel].ask(query)).upper()
        if reply not in ("TRUE", "FALSE"):
            raise ProtocolError(
                f"expected TRUE or FALSE, got {reply!r}", instrument=self.name, command=query
            )
        return reply == "TRUE"


def _check_integration_ms(instrument: str, value: int) -> int:
    """The counting window: within range and on the module's 200 ms step."""
    window_ms: int = ID120Array.declared("integration_ms").check(instrument, value)
    if window_ms % INTEGRATION_STEP_MS:
        raise RefusedValue(
            f"integration_ms={window_ms} is not a multiple of {INTEGRATION_STEP_MS}",
            instrument=instrument,
            command="integration_ms",
        )
    return window_ms
