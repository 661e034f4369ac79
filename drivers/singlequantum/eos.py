"""Single Quantum Eos SNSPD system: JSON control over TCP plus its counts stream.

Control (port 12000) speaks the labelled JSON protocol of ``jsonlink``; the labels and
commands used here are those of Single Quantum's public client: ``NumberOfDetectors``,
``BiasCurrent`` (``SetAllBiasCurrents``, µA per channel), ``TriggerLevel``
(``SetAllTriggerLevels``, mV per channel), ``DetectorEnable`` (one switch for the whole
system), ``InptMeasurementPeriod`` (``SetMeasurementPeriod``, ms, at least 10) and
``BiasVoltage`` (mV per channel). The counts stream (port 12345) sends one text line per
measurement period: ``<timestamp>,<counts ch1>,...,<counts chN>``.

Documented assumptions:

- Per-channel enable: the Eos has one ``DetectorEnable`` for all channels, so a disabled
  channel gets 0 µA bias and the system switch is on while any channel is armed.
- Latching: a latched (normal-state) nanowire shows a bias voltage far above the
  superconducting near-zero value; a channel is latched when armed and its
  ``BiasVoltage`` exceeds ``latch_voltage_mv`` (a setting, default 50 mV).
- Rates: the driver opens the counts stream, drops the first (possibly stale or partial)
  line, sums ``ceil(integration_s / period)`` lines and divides by their duration.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Self

from drivers.singlequantum.jsonlink import JsonLink
from labctl.instrument.base import (
    DriverBase,
    make_transport,
    require_transport,
    validate_config_settings,
)
from labctl.instrument.recovery import operation
from labctl.instrument.settings import Setting
from labctl.instrument.validate import (
    check_channel,
    check_length,
    check_number,
    decode_ascii,
)
from labctl.interfaces.build import BuildContext, InstrumentSpec, TransportSpec
from labctl.interfaces.errors import ProtocolError
from labctl.interfaces.instrument import Health
from labctl.transport.base import Transport
from labctl.transport.recovery import policy_of

BIAS_RANGE_UA = (0.0, 100.0)
TRIGGER_RANGE_MV = (-2000.0, 2000.0)
PERIOD_RANGE_MS = (10, 60_000)
LATCH_RANGE_MV = (0.0, 1e4)
MAX_CHANNELS = 64  # a station file may list this many; the unit's count is read at connect
ORDER_PERIOD = -1
ORDER_TRIGGER = 0
ORDER_BIAS = 5  # bias goes on only after the counters are set up
BIAS_PAIR = ("bias_ua", "enabled")


class EosSNSPD(DriverBase):
    """Driver for a Single Quantum Eos (implements labctl's SinglePhotonDetector)."""

    model = "Single Quantum Eos"
    settings = (
        # Setpoints and enables reach the Eos together (see _apply_bias); bias_ua reads
        # back the bias flowing, which is 0 on a disarmed channel.
        Setting(
            "bias_ua",
            "number",
            BIAS_RANGE_UA,
            apply=lambda d, ua: d._apply_bias(setpoints=ua),
            order=ORDER_BIAS,
            read=lambda d: d._read_vector("BiasCurrent"),
            channels=MAX_CHANNELS,
        ),
        Setting(
            "enabled",
            "bool",
            apply=lambda d, on: d._apply_bias(armed=on),
            order=ORDER_BIAS,
            channels=MAX_CHANNELS,
        ),
        Setting(
            "trigger_level_mv",
            "number",
            TRIGGER_RANGE_MV,
            apply=lambda d, mv: d._send_triggers(mv),
            order=ORDER_TRIGGER,
            read=lambda d: d._read_vector("TriggerLevel"),
            channels=MAX_CHANNELS,
        ),
        Setting(
            "measurement_period_ms",
            "integer",
            PERIOD_RANGE_MS,
            apply=lambda d, ms: d._apply_period(ms),
            order=ORDER_PERIOD,
        ),
    )

    def __init__(
        self,
        name: str,
        control: Transport,
        counts: Transport,
        *,
        latch_voltage_mv: float = 50.0,
    ) -> None:
        super().__init__(name, control)
        self._json = JsonLink(control)
        self._counts = counts
        self._latch_voltage_mv = check_number(
            name, "latch_voltage_mv", latch_voltage_mv, *LATCH_RANGE_MV
        )
        self._n_channels = 0
        self._bias_ua: list[float] = []
        self._armed: list[bool] = []
        self._period_ms = 100

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: bias_ua, trigger_level_mv, enabled, ..."""
        control_spec = require_transport(spec, ("tcp",))
        name = spec.name
        validated = validate_config_settings(
            spec,
            {
                **cls.config_validators(name),
                # The driver's own latch criterion, never sent to the Eos: nothing to
                # remember or re-apply.
                "latch_voltage_mv": lambda v: check_number(
                    name, "latch_voltage_mv", v, *LATCH_RANGE_MV
                ),
            },
        )
        counts_address = control_spec.options.get("counts_address")
        if counts_address is None:
            counts_address = control_spec.address.rsplit(":", 1)[0] + ":12345"
        counts_spec = TransportSpec(
            kind="tcp", address=str(counts_address), timeout_s=control_spec.timeout_s
        )
        driver = cls(
            name,
            make_transport(spec, control_spec, driver_options=("counts_address",)),
            make_transport(spec, counts_spec),
            latch_voltage_mv=validated.get("latch_voltage_mv", 50.0),
        )
        for setting in cls.settings:
            if setting.name in validated:
                driver._remember_declared(setting.name, validated[setting.name])
        return driver

    # -- lifecycle ----------------------------------------------------------------------

    async def _close_links(self) -> None:
        """Close the counts stream too (a reconnect reopens it on the next measurement)."""
        await self._counts.close()
        await super()._close_links()

    async def _identify(self) -> dict[str, str]:
        n_channels = await self._json.request("NumberOfDetectors")
        if isinstance(n_channels, bool) or not isinstance(n_channels, int):
            raise ProtocolError(
                f"NumberOfDetectors is {n_channels!r}", instrument=self.name, command="request"
            )
        if not 1 <= n_channels <= MAX_CHANNELS:
            raise ProtocolError(
                f"{n_channels} detectors makes no sense", instrument=self.name, command="request"
            )
        self._n_channels = n_channels
        self._period_ms = _period_reply(
            self.name, await self._json.request("InptMeasurementPeriod")
        )
        bias = await self._read_vector("BiasCurrent")
        enabled = await self._json.request("DetectorEnable")
        self._bias_ua = list(bias)
        self._armed = [bool(enabled) and b > 0 for b in bias]
        return {"vendor": "Single Quantum", "model": "Eos", "channels": str(n_channels)}

    @operation
    async def snapshot(self) -> dict[str, Any]:
        """Identity, setpoints and what the system reports now."""
        return {
            "model": self.model,
            **self.identity,
            "bias_setpoint_ua": list(self._bias_ua),
            "enabled": list(self._armed),
            **await self._declared_snapshot(),
            "measurement_period_ms": self._period_ms,
            "latch_voltage_mv": self._latch_voltage_mv,
        }

    @operation
    async def safe_state(self) -> None:
        """Disarm every channel: zero bias and the system enable switch off."""
        # The driver's own value needs no check; written as is, it also fails as a lost
        # link, not as an empty list, when the Eos was never reached.
        await self._apply_bias(armed=[False] * self._n_channels)

    @operation
    async def health(self) -> Health:
        """Read bias voltages; unhealthy when an armed channel is latched."""
        voltages = await self._read_vector("BiasVoltage")
        latched = [ch for ch in range(self._n_channels) if self._latched(ch, voltages)]
        readings: dict[str, float | int | str | bool] = {
            f"bias_voltage_{ch}_mv": v for ch, v in enumerate(voltages)
        }
        detail = f"latched channels {latched}" if latched else "ok"
        return Health(ok=not latched, detail=detail, readings=readings)

    # -- SinglePhotonDetector interface -------------------------------------------------

    @property
    def n_channels(self) -> int:
        """Detector channels reported by the system at connect."""
        return self._n_channels

    @operation
    async def set_enabled(self, channel: int, enabled: bool) -> None:
        """Arm or disarm one channel (bias applied or zeroed)."""
        check_channel(self.name, channel, self._n_channels)
        armed = list(self._armed)
        armed[channel] = enabled
        await self._set_declared("enabled", armed)

    @operation
    async def get_enabled(self, channel: int) -> bool:
        """True when the system is enabled and the channel carries bias."""
        check_channel(self.name, channel, self._n_channels)
        enabled = await self._json.request("DetectorEnable")
        bias = await self._read_vector("BiasCurrent")
        return bool(enabled) and bias[channel] > 0

    @operation
    async def set_bias_ua(self, channel: int, bias_ua: float) -> None:
        """Set one channel's bias setpoint in µA (applied while the channel is armed)."""
        check_channel(self.name, channel, self._n_channels)
        setpoints = list(self._bias_ua)
        setpoints[channel] = bias_ua
        await self._set_declared("bias_ua", setpoints)

    @operation
    async def get_bias_ua(self, channel: int) -> float:
        """The bias current flowing in one channel now, µA."""
        check_channel(self.name, channel, self._n_channels)
        return (await self._read_vector("BiasCurrent"))[channel]

    @operation
    async def set_trigger_level_mv(self, channel: int, level_mv: float) -> None:
        """Set one channel's counter trigger level in mV."""
        check_channel(self.name, channel, self._n_channels)
        levels = await self._read_vector("TriggerLevel")
        levels[channel] = level_mv
        await self._set_declared("trigger_level_mv", levels)

    @operation
    async def get_trigger_level_mv(self, channel: int) -> float:
        """One channel's trigger level, mV."""
        check_channel(self.name, channel, self._n_channels)
        return (await self._read_vector("TriggerLevel"))[channel]

    @operation
    async def get_count_rates_hz(self, integration_s: float) -> list[float]:
        """Mean count rate per channel over at least ``integration_s`` seconds, from the stream."""
        check_number(self.name, "integration_s", integration_s, 1e-3, 3600.0)
        n_lines = max(1, math.ceil(integration_s * 1000.0 / self._period_ms))
        totals = [0.0] * self._n_channels
        # A counts line that does not parse is a lost period, not a failed measurement:
        # it is skipped and one more line read, at most garbled_retries per measurement.
        skips_left = policy_of(self._counts).garbled_retries
        await self._counts.open()
        try:
            await self._counts.read_until(b"\n", command="counts")  # stale or partial
            read = 0
            while read < n_lines:
                try:
                    line = await self._read_counts_line()
                except ProtocolError:
                    if skips_left <= 0:
                        raise
                    skips_left -= 1
                    continue
                for ch, counts in enumerate(line):
                    totals[ch] += counts
                read += 1
        finally:
            await self._counts.close()
        duration_s = n_lines * self._period_ms / 1000.0
        return [total / duration_s for total in totals]

    @operation
    async def is_latched(self, channel: int) -> bool:
        """True when the channel is armed and its bias voltage shows the normal state."""
        check_channel(self.name, channel, self._n_channels)
        return self._latched(channel, await self._read_vector("BiasVoltage"))

    @operation
    async def reset_latch(self, channel: int) -> None:
        """Drop the channel's bias to zero, then restore it, so the wire turns superconducting."""
        check_channel(self.name, channel, self._n_channels)
        armed = list(self._armed)
        armed[channel] = False
        await self._send_bias(armed=armed)
        await self._send_bias()

    # -- model extras -------------------------------------------------------------------

    @operation
    async def set_measurement_period_ms(self, period_ms: int) -> None:
        """Counter integration period of the counts stream, ms (10..60000)."""
        await self._set_declared("measurement_period_ms", period_ms)

    # -- internals ----------------------------------------------------------------------

    def _latched(self, channel: int, voltages: Sequence[float]) -> bool:
        return self._armed[channel] and abs(voltages[channel]) > self._latch_voltage_mv

    def _effective_bias(self, setpoints: list[float], armed: list[bool]) -> list[float]:
        return [b if on else 0.0 for b, on in zip(setpoints, armed, strict=True)]

    async def _apply_bias(
        self, *, setpoints: list[float] | None = None, armed: list[bool] | None = None
    ) -> None:
        """New setpoints and/or enables (None: those in force) with the other half kept.

        The Eos takes them as one pair of commands, the effective bias then the system
        switch; the driver's state and memory change only once both are confirmed.
        """
        if setpoints is not None:
            check_length(self.name, "bias_ua", setpoints, self._n_channels)
        if armed is not None:
            check_length(self.name, "enabled", armed, self._n_channels)
        setpoints = list(self._bias_ua if setpoints is None else setpoints)
        armed = list(self._armed if armed is None else armed)
        await self._send_bias(setpoints=setpoints, armed=armed)
        self._bias_ua, self._armed = setpoints, armed
        self._remember_bias(setpoints, armed)

    async def _send_bias(
        self, *, setpoints: list[float] | None = None, armed: list[bool] | None = None
    ) -> None:
        setpoints = self._bias_ua if setpoints is None else setpoints
        armed = self._armed if armed is None else armed
        bias = self._effective_bias(setpoints, armed)
        await self._confirmed("SetAllBiasCurrents", "BiasCurrent", bias)
        await self._confirmed("DetectorEnable", "DetectorEnable", any(armed))

    async def _send_triggers(self, levels: list[float]) -> None:
        await self._confirmed("SetAllTriggerLevels", "TriggerLevel", levels)

    async def _confirmed(self, name: str, label: str, value: Any) -> None:
        """Send a command; the value published back must be the one sent."""
        reply = await self._json.command(name, label, value)
        if reply != value:
            raise ProtocolError(
                f"{label} reads {reply!r} after setting {value!r}",
                instrument=self.name,
                command=name,
            )

    async def _apply_period(self, period_ms: int) -> None:
        """Rates are computed with the period the Eos confirms, after a reconnect too."""
        reply = await self._json.command("SetMeasurementPeriod", "InptMeasurementPeriod", period_ms)
        self._period_ms = _period_reply(self.name, reply)

    def _remember_declared(self, key: str, value: Any) -> None:
        """Setpoints and enables are remembered together, as one entry ``bias``.

        A reconnect then writes the pair of commands once, with both halves restored over
        what connect() has just read, not once per setting with the other half as the
        restarted device reports it. Before the first connect (a station file) a half not
        given is None: the one the device reports at connect.
        """
        if key not in BIAS_PAIR:
            super()._remember_declared(key, value)
            return
        setpoints, armed = self.remembered_settings.get("bias", (None, None))
        if key == "bias_ua":
            setpoints = value
        else:
            armed = value
        self._remember_bias(setpoints, armed)

    def _remember_bias(self, setpoints: list[float] | None, armed: list[bool] | None) -> None:
        setpoints = None if setpoints is None else list(setpoints)
        armed = None if armed is None else list(armed)
        restore = functools.partial(self._apply_bias, setpoints=setpoints, armed=armed)
        self._remember("bias", (setpoints, armed), restore, order=ORDER_BIAS)

    async def _read_vector(self, label: str) -> list[float]:
        value = await self._json.request(label)
        if not isinstance(value, list) or len(value) != self._n_channels:
            raise ProtocolError(
                f"{label} should list {self._n_channels} numbers, got {value!r}",
                instrument=self.name,
                command=f"request {label}",
            )
        try:
            return [float(v) for v in value]
        except (TypeError, ValueError):
            raise ProtocolError(
                f"{label} holds a non-number: {value!r}",
                instrument=self.name,
                command=f"request {label}",
            ) from None

    async def _read_counts_line(self) -> list[float]:
        raw = await self._counts.read_until(b"\n", command="counts")
        text = decode_ascii(raw, instrument=self.name, command="counts").strip()
        fields = text.split(",")
        try:
            counts = [float(field) for field in fields[1:]]
        except ValueError:
            counts = []
        if len(counts) != self._n_channels or any(c < 0 or not math.isfinite(c) for c in counts):
            raise ProtocolError(
                f"counts line {text!r} does not hold {self._n_channels} counts",
                instrument=self.name,
                command="counts",
            )
        return counts


def _period_reply(instrument: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
        raise ProtocolError(
            f"measurement period {value!r} ms makes no sense",
            instrument=instrument,
            command="request InptMeasurementPeriod",
        )
    return int(value)
