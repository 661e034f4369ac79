"""The public ID120 client exchanges against the ID120 wire twin, over PyVISA.

The public ID120 driver is the Instrumental library's (``instrumental.drivers.spds.id120``,
mabuchilab); it is in the library's repository but not in its PyPI release (0.8 ships no
SPAD drivers), so its code is not used here. Each test sends what that driver sends, in
its spelling, through pyvisa-py on a ``TCPIP::host::port::SOCKET`` resource (the driver
is a VisaMixin: ``read_termination`` LF, PyVISA's default write termination), and parses
the answers as its facets do: ``SCPI_Facet(msg, convert=int)`` reads ``int(query(msg?))``
and writes ``msg <int in base units>`` (µV, ms, m°C), boolean facets read and write
``TRUE``/``FALSE``; ``_initialize`` runs ``info()``, every capability and INFO query.
Then the twin's state is checked. PyVISA blocks, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pyvisa

from sims.wire.id120 import Id120Wire
from sims.world import World
from tests.sims.wire.wired import NAMES, WIRE_WORLD, make_twin

call = asyncio.to_thread
INFO_QUERIES = [  # ID120.info(), in its order
    "THRESHOLD:CAPABILITY?",
    "DEADTIME:CAPABILITY?",
    "BIAS:CAPABILITY?",
    "COUNTERS:INTEGRATION_TIME_CAPABILITY?",
    "REG:TEMP_SET_POINT_CAPABILITY?",
    *(
        f"INFO:{field}?"
        for field in (
            "PRODUCT_NAME",
            "PRODUCT_DEVELOPMENT_NAME",
            "PRODUCT_DESCRIPTION",
            "PRODUCT_SERIAL_NUMBER",
            "PRODUCT_TYPE",
            "PRODUCT_REVISION",
            "APD_TYPE",
            "BOARD_REVISION",
            "BOARD_SERIAL_NUMBER",
            "VENDOR_NAME",
            "MANUFACTURER_NAME",
            "MANUFACTURING_DATE",
            "OUTPUT1_STANDARD",
            "OUTPUT2_STANDARD",
            "FIRMWARE_VERSION",
            "CONTENT_INTEGRITY",
            "BIAS_BREAKDOWN_VOLTAGE",
        )
    ),
]


class Spad:
    """One module as the driver's VisaMixin sees it: ``query`` and ``write``."""

    def __init__(self, resource: Any) -> None:
        self._rsrc = resource

    async def query(self, message: str) -> str:
        return str(await call(self._rsrc.query, message))

    async def write(self, message: str) -> None:
        await call(self._rsrc.write, message)  # answers nothing; the next query follows it

    async def facet(self, message: str) -> int:
        """``SCPI_Facet(message, convert=int)`` read."""
        return int(await self.query(message + "?"))


@pytest.fixture
async def spads() -> AsyncIterator[tuple[Any, list[Spad]]]:
    world = World.from_settings(WIRE_WORLD)
    world.set_laser_enabled(True)
    async with make_twin("detector", world) as twin:
        wire = Id120Wire(NAMES["detector"], twin)
        await wire.start()
        manager = pyvisa.ResourceManager("@py")
        opened = []
        try:
            for channel in range(4):
                host, port = wire.endpoints()[f"channel{channel}"].rsplit(":", 1)
                resource = await call(
                    manager.open_resource, f"TCPIP::{host}::{port}::SOCKET", timeout=2000
                )
                resource.read_termination = "\n"  # ID120._initialize
                opened.append(resource)
            yield twin, [Spad(r) for r in opened]
        finally:
            for resource in opened:
                await call(resource.close)
            # Not manager.close(): PyVISA shares one manager per library in the process,
            # and the drivers' VISA links of later tests use it too.
            await wire.stop()


async def test_instrumental_id120_initialize_and_identify(spads: tuple[Any, list[Spad]]) -> None:
    _, modules = spads
    for channel, spad in enumerate(modules):
        manufacturer, model, serial, _firmware = (await spad.query("*IDN?")).split(",")
        assert (manufacturer, model) == ("IDQuantique", "ID120")  # _INST_VISA_INFO_
        assert serial.endswith(f"-{channel}")
    answers = [await modules[0].query(q) for q in INFO_QUERIES]
    assert all(answer and answer != "ERROR" for answer in answers), answers
    assert answers[0] == "0,1047000,500" and answers[5] == "ID120"


async def test_instrumental_id120_facets_drive_the_twin(spads: tuple[Any, list[Spad]]) -> None:
    twin, modules = spads
    spad = modules[1]
    await spad.write("THRESHOLD:VOLTAGE 150000")  # threshold = 150 mV
    assert await spad.facet("THRESHOLD:VOLTAGE") == 150_000
    assert await twin.get_trigger_level_mv(1) == pytest.approx(150.0)
    await spad.write("BIAS:VOLTAGE 12000000")  # bias = 12 V, on the 80 mV step
    assert await spad.facet("BIAS:VOLTAGE") == 12_000_000
    assert await twin.get_bias_ua(1) == pytest.approx(12.0)
    await spad.write("DEADTIME:TIME 1000")
    assert await spad.facet("DEADTIME:TIME") == 1000
    await spad.write("COUNTERS:INTEGRATION_TIME 400")
    assert await spad.facet("COUNTERS:INTEGRATION_TIME") == 400
    await spad.write("REG:TEMP_SET_POINT -40000")
    assert await spad.facet("REG:TEMP_SET_POINT") == -40_000
    assert isinstance(await spad.facet("REG:MEASURED_TEMP"), int)
    await spad.write("REG:RUN TRUE")  # run = True
    assert await spad.query("REG:RUN?") == "TRUE" and await spad.query("REG:STATE?") == "ON"
    assert await twin.get_enabled(1)
    assert await spad.query("BIAS:ERROR_STATUS?") == "FALSE"
    assert await spad.facet("COUNTERS:DETECTION_FREQ") > 0
    assert await spad.facet("COUNTERS:DETECTION_COUNT") > 0
    await spad.write("OUTPUT1:POLARITY NEGATIVE")  # set_outputs(1, 'NEGATIVE')
    assert await spad.query("OUTPUT1:POLARITY?") == "NEGATIVE"
    await spad.write("REG:RUN FALSE")
    assert await spad.query("REG:STATE?") == "OFF" and not await twin.get_enabled(1)
    assert await spad.facet("COUNTERS:DETECTION_FREQ") == 0
