"""A detector twin behind ID Quantique ID120 SPAD modules, one module per twin channel.

Each channel is served as its own ID120 on its own TCP port (a raw SCPI socket standing
in for the module's USB-TMC link, LF-terminated). Commands, as the public ID120 driver of
the Instrumental library uses them (units: µV, ms, m°C, Hz):

- ``*IDN?`` -> ``IDQuantique,ID120,<serial>,<firmware>``;
- ``THRESHOLD:VOLTAGE[?]`` (µV, 0..1 047 000 in 500 µV steps), ``THRESHOLD:CAPABILITY?``;
- ``BIAS:VOLTAGE[?]`` (µV, 0..250 000 000 in 80 000 µV steps), ``BIAS:CAPABILITY?``,
  ``BIAS:ERROR_STATUS?`` (``TRUE`` while the diode is latched / its bias failed);
- ``DEADTIME:TIME[?]`` (40..1 000 000 in steps of 40), ``DEADTIME:CAPABILITY?``;
- ``COUNTERS:INTEGRATION_TIME[?]`` (ms, 200..100 000 in 200 ms steps),
  ``COUNTERS:DETECTION_FREQ?`` (Hz), ``COUNTERS:DETECTION_COUNT?`` (counts in one window),
  ``COUNTERS:INTEGRATION_TIME_CAPABILITY?``;
- ``REG:RUN[?] TRUE|FALSE`` (cooling and bias on: the module counts), ``REG:STATE?``
  (``ON``/``OFF``), ``REG:TEMP_SET_POINT[?]`` (m°C, -50 000..-10 000),
  ``REG:MEASURED_TEMP?``, ``REG:TEMP_SET_POINT_CAPABILITY?``;
- ``OUTPUT<n>:POLARITY[?] POSITIVE|NEGATIVE``; ``INFO:<field>?`` identity fields.

Assumed where the public sources are silent: capability answers are ``min,max,step``; a
refused setting (out of range, not on a step, bad word) leaves the value unchanged and
answers nothing (clients read the value back); an unknown header answers ``ERROR``.

Twin mapping: REG:RUN is the channel's enable (``TRUE`` on a latched channel resets the
latch first); the threshold is the trigger level (µV -> mV); the bias voltage drives the
twin's bias at 1 V per µA (labctl's SNSPD-style bias figure, see drivers/idq/id120.py);
rates come from a 1 ms sample of the twin, scaled to the integration window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sims.wire.base import GARBAGE, Fate, TcpEndpoint, attempt, ensure_link

SERIAL = "LCTWIN0004-{channel}"  # one module per channel, each with its own serial
IDENTITY = "IDQuantique,ID120," + SERIAL + ",2.1.0"
THRESHOLD_UV = (0, 1_047_000, 500)
BIAS_UV = (0, 250_000_000, 80_000)
DEADTIME = (40, 1_000_000, 40)
INTEGRATION_MS = (200, 100_000, 200)
TEMPERATURE_MDEGC = (-50_000, -10_000, 1_000)
UV_PER_UA = 1_000_000  # bias: 1 V on the diode per µA of labctl bias figure
INFO = {
    "PRODUCT_NAME": "ID120",
    "PRODUCT_DEVELOPMENT_NAME": "ID120",
    "PRODUCT_DESCRIPTION": "Visible single-photon detector (twin)",
    "PRODUCT_TYPE": "SPAD",
    "PRODUCT_REVISION": "A",
    "APD_TYPE": "Si",
    "BOARD_REVISION": "1",
    "VENDOR_NAME": "ID Quantique",
    "MANUFACTURER_NAME": "ID Quantique",
    "MANUFACTURING_DATE": "2026-01-01",
    "OUTPUT1_STANDARD": "LVTTL",
    "OUTPUT2_STANDARD": "NIM",
    "FIRMWARE_VERSION": "2.1.0",
    "CONTENT_INTEGRITY": "OK",
    "BIAS_BREAKDOWN_VOLTAGE": "25000000",
}


class _Silent(Exception):
    """The twin timed out: the module says nothing."""


class _Garbled(Exception):
    """The twin's reply is garbage on the line."""


class _Lost(Exception):
    """The twin's link dropped: close the connection."""


def _stepped(text: str, limits: tuple[int, int, int]) -> int | None:
    """An integer argument within ``limits`` on a step, or None (refused)."""
    try:
        value = int(float(text))
    except ValueError:
        return None
    low, high, step = limits
    if not low <= value <= high or (value - low) % step:
        return None
    return value


class Id120Channel:
    """One ID120 module in front of one channel of a detector twin."""

    def __init__(self, name: str, twin: Any, channel: int, *, host: str, port: int) -> None:
        self.name = name
        self.twin = twin
        self.channel = channel
        self._endpoint = TcpEndpoint(host, port, self._connection)
        self.deadtime = 1_000
        self.integration_ms = 1_000
        self.temperature_set_mdegc = -40_000
        self.polarity = {1: "POSITIVE", 2: "POSITIVE"}

    @property
    def address(self) -> str:
        """host:port as bound."""
        return self._endpoint.address

    async def start(self) -> None:
        """Listen."""
        await self._endpoint.start()

    async def stop(self) -> None:
        """Close the port and every connection."""
        await self._endpoint.stop()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            text = line.decode("ascii", "replace").strip()
            if not text:
                continue
            try:
                if not await ensure_link(self.twin):
                    return
                reply = await self._command(text)
            except _Silent:
                continue
            except _Garbled:
                writer.write(GARBAGE + b"\n")
                await writer.drain()
                continue
            except _Lost:
                return
            if reply is not None:
                writer.write(reply.encode("ascii") + b"\n")
                await writer.drain()

    async def _twin(self, call: Awaitable[Any]) -> Any:
        outcome = await attempt(call)
        if outcome.fate is Fate.OK or outcome.fate is Fate.REFUSED:
            return outcome.value  # a refusal keeps the old value (None)
        if outcome.fate is Fate.SILENT:
            raise _Silent
        if outcome.fate is Fate.GARBLED:
            raise _Garbled
        raise _Lost

    async def _command(self, text: str) -> str | None:
        header, _, argument = text.partition(" ")
        header, argument = header.upper(), argument.strip()
        query = header.endswith("?")
        path = header.rstrip("?")
        handler = self._handlers().get((path, query))
        if handler is None:
            if query and path in ("INFO:PRODUCT_SERIAL_NUMBER", "INFO:BOARD_SERIAL_NUMBER"):
                return SERIAL.format(channel=self.channel)
            if query and path.startswith("INFO:") and path[5:] in INFO:
                return INFO[path[5:]]
            if path.startswith("OUTPUT") and path.endswith(":POLARITY"):
                return self._polarity(path, argument, query)
            return "ERROR"
        return await handler(argument)

    def _handlers(self) -> dict[tuple[str, bool], Callable[[str], Awaitable[str | None]]]:
        return {
            ("*IDN", True): self._idn,
            ("THRESHOLD:VOLTAGE", True): self._threshold,
            ("THRESHOLD:VOLTAGE", False): self._set_threshold,
            ("THRESHOLD:CAPABILITY", True): self._capability(THRESHOLD_UV),
            ("BIAS:VOLTAGE", True): self._bias,
            ("BIAS:VOLTAGE", False): self._set_bias,
            ("BIAS:CAPABILITY", True): self._capability(BIAS_UV),
            ("BIAS:ERROR_STATUS", True): self._bias_error,
            ("DEADTIME:TIME", True): self._kept("deadtime"),
            ("DEADTIME:TIME", False): self._keep("deadtime", DEADTIME),
            ("DEADTIME:CAPABILITY", True): self._capability(DEADTIME),
            ("COUNTERS:INTEGRATION_TIME", True): self._kept("integration_ms"),
            ("COUNTERS:INTEGRATION_TIME", False): self._keep("integration_ms", INTEGRATION_MS),
            ("COUNTERS:INTEGRATION_TIME_CAPABILITY", True): self._capability(INTEGRATION_MS),
            ("COUNTERS:DETECTION_FREQ", True): self._frequency,
            ("COUNTERS:DETECTION_COUNT", True): self._count,
            ("REG:RUN", True): self._run,
            ("REG:RUN", False): self._set_run,
            ("REG:STATE", True): self._state,
            ("REG:TEMP_SET_POINT", True): self._kept("temperature_set_mdegc"),
            ("REG:TEMP_SET_POINT", False): self._keep("temperature_set_mdegc", TEMPERATURE_MDEGC),
            ("REG:TEMP_SET_POINT_CAPABILITY", True): self._capability(TEMPERATURE_MDEGC),
            ("REG:MEASURED_TEMP", True): self._temperature,
        }

    # -- commands -----------------------------------------------------------------------

    async def _idn(self, _: str) -> str:
        return IDENTITY.format(channel=self.channel)

    @staticmethod
    def _capability(limits: tuple[int, int, int]) -> Callable[[str], Awaitable[str]]:
        async def answer(_: str) -> str:
            return ",".join(str(v) for v in limits)

        return answer

    def _kept(self, attribute: str) -> Callable[[str], Awaitable[str]]:
        async def answer(_: str) -> str:
            return str(getattr(self, attribute))

        return answer

    def _keep(
        self, attribute: str, limits: tuple[int, int, int]
    ) -> Callable[[str], Awaitable[None]]:
        async def setting(argument: str) -> None:
            value = _stepped(argument, limits)
            if value is not None:
                setattr(self, attribute, value)

        return setting

    async def _threshold(self, _: str) -> str:
        level_mv = await self._twin(self.twin.get_trigger_level_mv(self.channel))
        return str(round(float(level_mv) * 1000.0))

    async def _set_threshold(self, argument: str) -> None:
        value = _stepped(argument, THRESHOLD_UV)
        if value is not None:
            await self._twin(self.twin.set_trigger_level_mv(self.channel, value / 1000.0))

    async def _bias(self, _: str) -> str:
        bias_ua = await self._twin(self.twin.get_bias_ua(self.channel))
        return str(round(float(bias_ua) * UV_PER_UA))

    async def _set_bias(self, argument: str) -> None:
        value = _stepped(argument, BIAS_UV)
        if value is not None:
            await self._twin(self.twin.set_bias_ua(self.channel, value / UV_PER_UA))

    async def _bias_error(self, _: str) -> str:
        latched = await self._twin(self.twin.is_latched(self.channel))
        return "TRUE" if latched else "FALSE"

    async def _rate_hz(self) -> float:
        rates = await self._twin(self.twin.get_count_rates_hz(1e-3))
        return 0.0 if rates is None else float(rates[self.channel])

    async def _frequency(self, _: str) -> str:
        return str(round(await self._rate_hz()))

    async def _count(self, _: str) -> str:
        return str(round(await self._rate_hz() * self.integration_ms / 1000.0))

    async def _run(self, _: str) -> str:
        enabled = await self._twin(self.twin.get_enabled(self.channel))
        return "TRUE" if enabled else "FALSE"

    async def _set_run(self, argument: str) -> None:
        word = argument.upper()
        if word not in ("TRUE", "FALSE"):
            return
        if word == "TRUE" and await self._twin(self.twin.is_latched(self.channel)):
            await self._twin(self.twin.reset_latch(self.channel))
        await self._twin(self.twin.set_enabled(self.channel, word == "TRUE"))

    async def _state(self, _: str) -> str:
        return "ON" if (await self._run("")) == "TRUE" else "OFF"

    async def _temperature(self, _: str) -> str:
        return str(self.temperature_set_mdegc if (await self._run("")) == "TRUE" else 20_000)

    def _polarity(self, path: str, argument: str, query: bool) -> str | None:
        try:
            output = int(path[len("OUTPUT") : -len(":POLARITY")])
        except ValueError:
            return "ERROR"
        if output not in self.polarity:
            return "ERROR"
        if query:
            return self.polarity[output]
        if argument.upper() in ("POSITIVE", "NEGATIVE"):
            self.polarity[output] = argument.upper()
        return None


class Id120Wire:
    """Every channel of a detector twin as its own ID120 on its own TCP port."""

    def __init__(self, name: str, twin: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.twin = twin
        self.channels = [
            Id120Channel(name, twin, k, host=host, port=port + k if port else 0)
            for k in range(int(twin.n_channels))
        ]

    async def start(self) -> None:
        """Start every module (stop those started when one fails)."""
        started: list[Id120Channel] = []
        try:
            for channel in self.channels:
                await channel.start()
                started.append(channel)
        except BaseException:
            for channel in started:
                await channel.stop()
            raise

    async def stop(self) -> None:
        """Stop every module."""
        for channel in self.channels:
            await channel.stop()

    def endpoints(self) -> dict[str, str]:
        """``control``: channel 0's module; ``channel<k>``: every module."""
        found = {f"channel{c.channel}": c.address for c in self.channels}
        return {"control": self.channels[0].address, **found}
