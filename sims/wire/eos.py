"""A detector twin behind the Single Quantum Eos protocol: JSON control + counts stream.

Control (TCP): JSON objects ended by ETB (0x17). ``{"request": L}`` is answered
``{"label": L, "value": ...}`` for ``NumberOfDetectors``, ``InptMeasurementPeriod`` (ms),
``BiasCurrent`` (µA per channel, 0 when unbiased), ``TriggerLevel`` (mV),
``DetectorEnable`` (system switch) and ``BiasVoltage`` (mV; a latched wire reads
``LATCHED_VOLTAGE_MV``). Commands ``SetAllBiasCurrents``, ``SetAllTriggerLevels``,
``DetectorEnable`` and ``SetMeasurementPeriod`` are confirmed by publishing their label
with the value now held; a refusal is published as ``{"label": "Error", "value": why}``.

A channel counts when the system switch is on and its bias is above zero; taking the bias
away resets a latched wire (the physics of an SNSPD, and what the driver's reset does).

Counts (TCP): one line ``<sim time ms>,<counts ch1>,...`` per measurement period of wall
time (the first at once). To keep a bright world cheap, the twin samples the rate over at
most ``counter_window_s`` of sim time and reports rate x period counts.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sims.wire.base import GARBAGE, Fate, Outcome, TcpEndpoint, attempt, ensure_link

ETB = b"\x17"
LATCHED_VOLTAGE_MV = 800.0  # a normal-state nanowire: far above the superconducting ~0 mV
SUPERCONDUCTING_VOLTAGE_MV = 0.0
PERIOD_RANGE_MS = (10, 60_000)


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
        counter_window_s: float = 1e-3,
    ) -> None:
        self.name = name
        self.twin = twin
        self._control = TcpEndpoint(host, control_port, self._control_connection)
        self._counts = TcpEndpoint(host, counts_port, self._counts_connection)
        self._counter_window_s = counter_window_s
        self._period_ms = 100
        self._n = int(twin.n_channels)
        self._bias_ua = [0.0] * self._n
        self._trigger_mv = [0.0] * self._n
        self._system_on = False

    async def start(self) -> None:
        """Read the twin's state (as the device holds it at power-up), then listen."""
        armed = [bool(await self.twin.get_enabled(ch)) for ch in range(self._n)]
        for ch in range(self._n):
            bias = float(await self.twin.get_bias_ua(ch))
            self._bias_ua[ch] = bias if armed[ch] else 0.0
            self._trigger_mv[ch] = float(await self.twin.get_trigger_level_mv(ch))
        self._system_on = any(armed)
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
        while True:
            raw = (await reader.readuntil(ETB))[:-1]
            outcome = await self._execute(raw)
            if outcome.fate is Fate.LOST:
                return
            if outcome.fate is Fate.SILENT:
                continue
            if outcome.fate is Fate.GARBLED:
                writer.write(GARBAGE + ETB)
            else:
                writer.write(json.dumps(outcome.value, separators=(",", ":")).encode() + ETB)
            await writer.drain()

    async def _execute(self, raw: bytes) -> Outcome:
        try:
            message = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(f"not JSON: {raw[:40]!r}")
        if not isinstance(message, dict):
            return _error("a message must be a JSON object")
        if "request" in message:
            label = str(message["request"])
            outcome = await self._read(label)
        elif "command" in message:
            label = str(message.get("label", ""))
            outcome = await self._command(str(message["command"]), message.get("value"))
        else:
            return _error("neither a request nor a command")
        if outcome.fate is Fate.REFUSED:
            return _error(outcome.message)
        if outcome.fate is not Fate.OK:
            return outcome
        return Outcome(Fate.OK, {"label": label, "value": outcome.value})

    async def _read(self, label: str) -> Outcome:
        if label == "NumberOfDetectors":
            return Outcome(Fate.OK, self._n)
        if label == "InptMeasurementPeriod":
            return Outcome(Fate.OK, self._period_ms)
        if label == "BiasCurrent":
            return Outcome(Fate.OK, list(self._bias_ua))
        if label == "TriggerLevel":
            return Outcome(Fate.OK, list(self._trigger_mv))
        if label == "DetectorEnable":
            return Outcome(Fate.OK, self._system_on)
        if label == "BiasVoltage":
            voltages = []
            for ch in range(self._n):
                latched = await attempt(self.twin.is_latched(ch))
                if latched.fate is not Fate.OK:
                    return latched
                armed = self._system_on and self._bias_ua[ch] > 0
                volts = LATCHED_VOLTAGE_MV if armed and latched.value else 0.0
                voltages.append(volts or SUPERCONDUCTING_VOLTAGE_MV)
            return Outcome(Fate.OK, voltages)
        return Outcome(Fate.REFUSED, message=f"unknown label {label!r}")

    async def _command(self, name: str, value: Any) -> Outcome:
        if name == "SetAllBiasCurrents":
            levels = _numbers(value, self._n)
            if levels is None or any(v < 0 for v in levels):
                return Outcome(Fate.REFUSED, message=f"{name} needs {self._n} values >= 0")
            for ch, bias in enumerate(levels):
                if bias > 0:
                    outcome = await attempt(self.twin.set_bias_ua(ch, bias))
                    if outcome.fate is not Fate.OK:
                        return outcome
            return await self._apply(levels, self._system_on, value)
        if name == "DetectorEnable":
            if not isinstance(value, bool):
                return Outcome(Fate.REFUSED, message=f"{name} needs true or false")
            return await self._apply(self._bias_ua, value, value)
        if name == "SetAllTriggerLevels":
            levels = _numbers(value, self._n)
            if levels is None:
                return Outcome(Fate.REFUSED, message=f"{name} needs {self._n} values")
            for ch, level in enumerate(levels):
                outcome = await attempt(self.twin.set_trigger_level_mv(ch, level))
                if outcome.fate is not Fate.OK:
                    return outcome
            self._trigger_mv = list(levels)
            return Outcome(Fate.OK, value)
        if name == "SetMeasurementPeriod":
            low, high = PERIOD_RANGE_MS
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                return Outcome(Fate.REFUSED, message=f"{name} needs {low}..{high} ms")
            self._period_ms = value
            return Outcome(Fate.OK, value)
        return Outcome(Fate.REFUSED, message=f"unknown command {name!r}")

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
        self._bias_ua = list(bias_ua)
        self._system_on = system_on
        return Outcome(Fate.OK, confirmed)

    # -- counts stream ------------------------------------------------------------------

    async def _counts_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not await ensure_link(self.twin):
            return
        while not writer.is_closing():
            period_s = self._period_ms / 1000.0
            window_s = min(period_s, self._counter_window_s)
            outcome = await attempt(self.twin.get_count_rates_hz(window_s))
            if outcome.fate is Fate.LOST:
                return
            if outcome.fate is Fate.GARBLED:
                writer.write(GARBAGE + b"\n")
            elif outcome.fate is Fate.OK:
                stamp_ms = round(self._now_s() * 1000.0)
                counts = ",".join(str(round(rate * period_s)) for rate in outcome.value)
                writer.write(f"{stamp_ms},{counts}\n".encode("ascii"))
            await writer.drain()
            await asyncio.sleep(period_s)

    def _now_s(self) -> float:
        """The twin's (sim) time for the counts line's timestamp."""
        clock = getattr(self.twin, "clock", None)
        return float(clock.now_s()) if clock is not None else 0.0


def _error(message: str) -> Outcome:
    return Outcome(Fate.OK, {"label": "Error", "value": message})


def _numbers(value: Any, count: int) -> list[float] | None:
    """``value`` as ``count`` floats, or None when it is not such a list."""
    if not isinstance(value, list) or len(value) != count:
        return None
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        return None
    return [float(v) for v in value]
