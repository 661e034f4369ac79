"""A detector twin behind the Single Quantum Eos protocol: JSON control + counts stream.

Facts from Single Quantum's public Python clients (the ``WebSQControl`` script and the
QCoDeS driver ``qcodes_contrib_drivers.drivers.SingleQuantum``, both MIT, read for the
protocol only):

- Control (TCP, port 12000): clients send JSON objects back to back with no terminator
  (``json.dumps`` output, spaces and all); the system ends every message it sends with ETB
  (0x17), and clients also cope with several objects run together (``}{``).
- ``{"request": "labelProps", "value": "None"}`` is answered with one message per label,
  ``{"label": L, "value": {"value": v, ...properties}}`` (here: ``unit``, ``min``,
  ``max``, ``type``); clients cache these and read values from the cache.
- ``{"request": L}`` is answered ``{"label": L, "value": v}`` (the clients do it for
  ``BiasVoltage`` and ``StartAutoIV``; the twin answers it for every label).
- ``{"command": C, "label": L, "value": v}`` sets; the system publishes ``L`` with the
  value it now holds. Commands: ``SetAllBiasCurrents`` (µA per channel), ``SetAllTriggerLevels``
  (mV per channel), ``DetectorEnable`` (the system switch), ``SetMeasurementPeriod`` (ms,
  10..60000, label ``InptMeasurementPeriod``), ``DarkCountsAutoIV`` (target dark counts per
  channel) and ``AutoCaliBiasCurrents`` (publishes ``StartAutoIV``).
- ``{"label": L, "value": v}`` sets a plain setting label (``IVScanStart``...).
- A refusal is published under a label containing ``Error`` (here ``Error``) with the reason
  as its value; clients look for ``Error`` in the label.
- Counts (TCP, port 12345): one text line per measurement period,
  ``<timestamp>,<counts ch1>,...,<counts chN>``; clients ``float()`` every field.

Not simulated (documented stand-ins): the automatic bias calibration ends at once and
reports the present bias currents as ``BiasCurrentAutoIV``; IV scans only store their
settings. The counts timestamp is the twin's sim time in ms.

A channel counts when the system switch is on and its bias is above zero; taking the bias
away resets a latched wire (the physics of an SNSPD, and what the driver's reset does).
As on the device, a counts line holds every click of one whole measurement period: the twin
counts one period of sim time per line (a sample of part of the period scaled up would turn
a few dark counts into 0 or a multiple of the scale). The first line goes out at once, then
one per measurement period of wall time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sims.wire.base import GARBAGE, Fate, Outcome, TcpEndpoint, attempt, ensure_link

ETB = b"\x17"
LATCHED_VOLTAGE_MV = 800.0  # a normal-state nanowire: far above the superconducting ~0 mV
SUPERCONDUCTING_VOLTAGE_MV = 0.0
PERIOD_RANGE_MS = (10, 60_000)
BIAS_RANGE_UA = (0.0, 100.0)
MAX_MESSAGE_BYTES = 1 << 20
PLAIN_SETTINGS = ("IVScanStart", "IVScanEnd", "IVScanIncrement", "IVScanEnable")


def split_messages(buffer: bytearray) -> list[bytes]:
    """Take every complete top-level JSON object (or garbage run) off ``buffer``.

    Objects may follow each other directly, with whitespace, or with ETB between them.
    Bytes that cannot start an object, up to the next ``{`` or ETB (or all that has
    arrived), come back as one garbage item so the caller can refuse them.
    """
    out: list[bytes] = []
    i = 0
    while i < len(buffer):
        ch = buffer[i]
        if ch in b" \t\r\n\x17":
            i += 1
            continue
        if ch != ord("{"):
            end = min(
                (p for p in (buffer.find(b"{", i), buffer.find(ETB, i)) if p >= 0), default=-1
            )
            if end < 0:
                end = len(buffer)  # garbage so far is garbage already
            out.append(bytes(buffer[i:end]))
            i = end
            continue
        end = _object_end(buffer, i)
        if end < 0:
            break
        out.append(bytes(buffer[i:end]))
        i = end
    del buffer[:i]
    return out


def _object_end(buffer: bytearray, start: int) -> int:
    """Index just past the object starting at ``start``, or -1 if it is incomplete."""
    depth, in_string, escaped = 0, False, False
    for j in range(start, len(buffer)):
        ch = buffer[j]
        if in_string:
            if escaped:
                escaped = False
            elif ch == ord("\\"):
                escaped = True
            elif ch == ord('"'):
                in_string = False
        elif ch == ord('"'):
            in_string = True
        elif ch in b"{[":
            depth += 1
        elif ch in b"}]":
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


class EosWire:
    """Serves a SinglePhotonDetector twin as a Single Quantum Eos (control + counts)."""

    def __init__(
        self,
        name: str,
        twin: Any,
        *,
        host: str = "127.0.0.1",
        control_port: int = 0,
        counts_port: int = 0,
    ) -> None:
        self.name = name
        self.twin = twin
        self._control = TcpEndpoint(host, control_port, self._control_connection)
        self._counts = TcpEndpoint(host, counts_port, self._counts_connection)
        self.period_ms = 100
        self._n = int(twin.n_channels)
        self.bias_ua = [0.0] * self._n
        self.trigger_mv = [0.0] * self._n
        self.system_on = False
        self.dark_counts_target = [100.0] * self._n
        self.auto_iv_bias_ua = [0.0] * self._n
        self.plain: dict[str, Any] = {
            "IVScanStart": 0.0,
            "IVScanEnd": 30.0,
            "IVScanIncrement": 0.5,
            "IVScanEnable": False,
        }

    async def start(self) -> None:
        """Read the twin's state (as the device holds it at power-up), then listen."""
        armed = [bool(await self.twin.get_enabled(ch)) for ch in range(self._n)]
        for ch in range(self._n):
            bias = float(await self.twin.get_bias_ua(ch))
            self.bias_ua[ch] = bias if armed[ch] else 0.0
            self.trigger_mv[ch] = float(await self.twin.get_trigger_level_mv(ch))
        self.system_on = any(armed)
        await self._control.start()
        await self._counts.start()

    async def stop(self) -> None:
        """Close both listeners and every connection."""
        await self._counts.stop()
        await self._control.stop()

    def endpoints(self) -> dict[str, str]:
        """``control`` and ``counts``: host:port of each socket."""
        return {"control": self._control.address, "counts": self._counts.address}

    # -- control ------------------------------------------------------------------------

    async def _control_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not await ensure_link(self.twin):
            return
        buffer = bytearray()
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buffer += chunk
            if len(buffer) > MAX_MESSAGE_BYTES:
                buffer.clear()  # no object is that long: drop the junk, keep serving
            for raw in split_messages(buffer):
                replies = await self._execute(raw)
                if replies is None:
                    return  # the twin's link is lost: so is the connection
                for reply in replies:
                    writer.write(reply)
                await writer.drain()

    async def _execute(self, raw: bytes) -> list[bytes] | None:
        """The messages one incoming object is answered with (None: drop the connection)."""
        try:
            message = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return [_error(f"not JSON: {raw[:40]!r}")]
        if not isinstance(message, dict):
            return [_error("a message must be a JSON object")]
        if "request" in message:
            label = str(message["request"])
            if label == "labelProps":
                return await self._label_props()
            outcome = await self._read(label)
        elif "command" in message:
            label, outcome = await self._command(
                str(message["command"]), message.get("label"), message.get("value")
            )
        elif "label" in message:
            label = str(message["label"])
            outcome = self._set_plain(label, message.get("value"))
        else:
            return [_error("neither a request nor a command")]
        if outcome.fate is Fate.REFUSED:
            return [_error(outcome.message)]
        if outcome.fate is Fate.LOST:
            return None
        if outcome.fate is Fate.SILENT:
            return []
        if outcome.fate is Fate.GARBLED:
            return [GARBAGE + ETB]
        return [_publish(label, outcome.value)]

    async def _label_props(self) -> list[bytes] | None:
        """Every label with its value and properties, one message each."""
        replies = []
        for label, (unit, low, high, kind) in LABEL_PROPS.items():
            outcome = await self._read(label)
            if outcome.fate is Fate.LOST:
                return None
            if outcome.fate is not Fate.OK:
                continue
            props = {"value": outcome.value, "unit": unit, "min": low, "max": high, "type": kind}
            replies.append(_publish(label, props))
        return replies

    async def _read(self, label: str) -> Outcome:
        simple: dict[str, Callable[[], Any]] = {
            "NumberOfDetectors": lambda: self._n,
            "InptMeasurementPeriod": lambda: self.period_ms,
            "BiasCurrent": lambda: list(self.bias_ua),
            "TriggerLevel": lambda: list(self.trigger_mv),
            "DetectorEnable": lambda: self.system_on,
            "DarkCountsAutoIV": lambda: list(self.dark_counts_target),
            "BiasCurrentAutoIV": lambda: list(self.auto_iv_bias_ua),
            "StartAutoIV": lambda: False,
        }
        if label in simple:
            return Outcome(Fate.OK, simple[label]())
        if label in self.plain:
            return Outcome(Fate.OK, self.plain[label])
        if label == "BiasVoltage":
            voltages = []
            for ch in range(self._n):
                latched = await attempt(self.twin.is_latched(ch))
                if latched.fate is not Fate.OK:
                    return latched
                armed = self.system_on and self.bias_ua[ch] > 0
                voltages.append(
                    LATCHED_VOLTAGE_MV if armed and latched.value else SUPERCONDUCTING_VOLTAGE_MV
                )
            return Outcome(Fate.OK, voltages)
        return Outcome(Fate.REFUSED, message=f"unknown label {label!r}")

    async def _command(self, name: str, label: Any, value: Any) -> tuple[str, Outcome]:
        """Run one command; the label it publishes and the outcome."""
        handlers: dict[str, tuple[str, Callable[[Any], Awaitable[Outcome]]]] = {
            "SetAllBiasCurrents": ("BiasCurrent", self._set_bias),
            "DetectorEnable": ("DetectorEnable", self._set_enable),
            "SetAllTriggerLevels": ("TriggerLevel", self._set_triggers),
            "SetMeasurementPeriod": ("InptMeasurementPeriod", self._set_period),
            "DarkCountsAutoIV": ("DarkCountsAutoIV", self._set_dark_counts),
            "AutoCaliBiasCurrents": ("StartAutoIV", self._auto_calibrate),
            "IVScanEnable": ("IVScanEnable", self._iv_scan_enable),
        }
        if name not in handlers:
            return "Error", Outcome(Fate.REFUSED, message=f"unknown command {name!r}")
        published, handler = handlers[name]
        outcome = await handler(value)
        return (str(label) if label else published), outcome

    async def _set_bias(self, value: Any) -> Outcome:
        levels = _numbers(value, self._n)
        low, high = BIAS_RANGE_UA
        if levels is None or any(not low <= v <= high for v in levels):
            return Outcome(
                Fate.REFUSED, message=f"SetAllBiasCurrents needs {self._n} values {low}..{high} uA"
            )
        for ch, bias in enumerate(levels):
            if bias > 0:
                outcome = await attempt(self.twin.set_bias_ua(ch, bias))
                if outcome.fate is not Fate.OK:
                    return outcome
        return await self._apply(levels, self.system_on, value)

    async def _set_enable(self, value: Any) -> Outcome:
        if not isinstance(value, bool):
            return Outcome(Fate.REFUSED, message="DetectorEnable needs true or false")
        return await self._apply(self.bias_ua, value, value)

    async def _set_triggers(self, value: Any) -> Outcome:
        levels = _numbers(value, self._n)
        if levels is None:
            return Outcome(Fate.REFUSED, message=f"SetAllTriggerLevels needs {self._n} values")
        for ch, level in enumerate(levels):
            outcome = await attempt(self.twin.set_trigger_level_mv(ch, level))
            if outcome.fate is not Fate.OK:
                return outcome
        self.trigger_mv = list(levels)
        return Outcome(Fate.OK, value)

    async def _set_period(self, value: Any) -> Outcome:
        low, high = PERIOD_RANGE_MS
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            return Outcome(Fate.REFUSED, message=f"SetMeasurementPeriod needs {low}..{high} ms")
        self.period_ms = int(value)
        return Outcome(Fate.OK, self.period_ms)

    async def _set_dark_counts(self, value: Any) -> Outcome:
        counts = _numbers(value, self._n)
        if counts is None or any(c < 0 for c in counts):
            return Outcome(Fate.REFUSED, message=f"DarkCountsAutoIV needs {self._n} counts >= 0")
        self.dark_counts_target = counts
        return Outcome(Fate.OK, value)

    async def _auto_calibrate(self, value: Any) -> Outcome:
        if not isinstance(value, bool):
            return Outcome(Fate.REFUSED, message="AutoCaliBiasCurrents needs true or false")
        if value:
            self.auto_iv_bias_ua = list(self.bias_ua)  # stand-in: no search simulated
        return Outcome(Fate.OK, False)  # StartAutoIV: the search is already over

    async def _iv_scan_enable(self, value: Any) -> Outcome:
        if not isinstance(value, bool):
            return Outcome(Fate.REFUSED, message="IVScanEnable needs true or false")
        return Outcome(Fate.OK, False)  # a scan is not simulated: over at once

    def _set_plain(self, label: str, value: Any) -> Outcome:
        if label not in PLAIN_SETTINGS or label == "IVScanEnable":
            return Outcome(Fate.REFUSED, message=f"label {label!r} cannot be set")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Outcome(Fate.REFUSED, message=f"{label} needs a number")
        self.plain[label] = value
        return Outcome(Fate.OK, value)

    async def _apply(self, bias_ua: list[float], system_on: bool, confirmed: Any) -> Outcome:
        """Arm exactly the channels with bias while the system is on; unbias resets latches."""
        for ch in range(self._n):
            armed = system_on and bias_ua[ch] > 0
            if not armed:
                latched = await attempt(self.twin.is_latched(ch))
                if latched.fate is Fate.OK and latched.value:
                    await attempt(self.twin.reset_latch(ch))
            outcome = await attempt(self.twin.set_enabled(ch, armed))
            if outcome.fate is not Fate.OK:
                return outcome
        self.bias_ua = list(bias_ua)
        self.system_on = system_on
        return Outcome(Fate.OK, confirmed)

    # -- counts stream ------------------------------------------------------------------

    async def _counts_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not await ensure_link(self.twin):
            return
        loop = asyncio.get_running_loop()
        while not writer.is_closing():
            started_s = loop.time()
            period_s = self.period_ms / 1000.0
            outcome = await attempt(self.twin.get_count_rates_hz(period_s))
            if outcome.fate is Fate.LOST:
                return
            if outcome.fate is Fate.GARBLED:
                writer.write(GARBAGE + b"\n")
            elif outcome.fate is Fate.OK:
                stamp_ms = round(self._now_s() * 1000.0)
                counts = ",".join(str(round(rate * period_s)) for rate in outcome.value)
                writer.write(f"{stamp_ms},{counts}\n".encode("ascii"))
            await writer.drain()
            await asyncio.sleep(max(0.0, period_s - (loop.time() - started_s)))

    def _now_s(self) -> float:
        """The twin's (sim) time for the counts line's timestamp."""
        clock = getattr(self.twin, "clock", None)
        return float(clock.now_s()) if clock is not None else 0.0


# label: (unit, min, max, type) as published by labelProps
LABEL_PROPS: dict[str, tuple[str, float | None, float | None, str]] = {
    "NumberOfDetectors": ("", 1, 64, "int"),
    "InptMeasurementPeriod": ("ms", PERIOD_RANGE_MS[0], PERIOD_RANGE_MS[1], "int"),
    "BiasCurrent": ("uA", BIAS_RANGE_UA[0], BIAS_RANGE_UA[1], "float[]"),
    "TriggerLevel": ("mV", -2000.0, 2000.0, "float[]"),
    "DetectorEnable": ("", None, None, "bool"),
    "BiasVoltage": ("mV", None, None, "float[]"),
    "DarkCountsAutoIV": ("Hz", 0.0, None, "float[]"),
    "BiasCurrentAutoIV": ("uA", BIAS_RANGE_UA[0], BIAS_RANGE_UA[1], "float[]"),
    "StartAutoIV": ("", None, None, "bool"),
    "IVScanStart": ("uA", -90.9, 90.9, "float"),
    "IVScanEnd": ("uA", -90.9, 90.9, "float"),
    "IVScanIncrement": ("uA", 0.0, 90.9, "float"),
    "IVScanEnable": ("", None, None, "bool"),
}


def _publish(label: str, value: Any) -> bytes:
    return json.dumps({"label": label, "value": value}, separators=(",", ":")).encode() + ETB


def _error(message: str) -> bytes:
    return _publish("Error", message)


def _numbers(value: Any, count: int) -> list[float] | None:
    """``value`` as ``count`` floats, or None when it is not such a list."""
    if not isinstance(value, list) or len(value) != count:
        return None
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        return None
    return [float(v) for v in value]
