"""Exact-exchange tests of the ID Quantique ID120 array driver: SCPI text per module."""

from __future__ import annotations

import pytest

from drivers.idq.id120 import ID120Array
from labctl.interfaces import InstrumentFault, ProtocolError, SinglePhotonDetector
from labctl.testing.exchange import ScriptedTransport, Step


def connect(channel: int) -> list[Step]:
    return [
        (b"*IDN?\n", f"IDQuantique,ID120,SN{channel},2.1.0\n".encode()),
        (b"COUNTERS:INTEGRATION_TIME 200\n", b""),
        (b"COUNTERS:INTEGRATION_TIME?\n", b"200\n"),
    ]


async def array(*scripts: list[Step]) -> tuple[ID120Array, list[ScriptedTransport]]:
    transports = [
        ScriptedTransport(connect(k) + script, instrument="spads")
        for k, script in enumerate(scripts)
    ]
    driver = ID120Array("spads", transports)
    await driver.connect()
    return driver, transports


async def test_settings_are_written_and_read_back() -> None:
    spads, transports = await array(
        [
            (b"REG:RUN TRUE\n", b""),
            (b"REG:RUN?\n", b"TRUE\n"),
            (b"COUNTERS:DETECTION_FREQ?\n", b"1520\n"),
        ],
        [
            (b"BIAS:VOLTAGE 9520000\n", b""),  # 9.5 V on the 80 mV step
            (b"BIAS:VOLTAGE?\n", b"9520000\n"),
            (b"THRESHOLD:VOLTAGE 120500\n", b""),
            (b"THRESHOLD:VOLTAGE?\n", b"120500\n"),
            (b"BIAS:VOLTAGE?\n", b"9520000\n"),
            (b"BIAS:ERROR_STATUS?\n", b"FALSE\n"),
            (b"COUNTERS:DETECTION_FREQ?\n", b"33\n"),
        ],
    )
    assert isinstance(spads, SinglePhotonDetector) and spads.n_channels == 2
    assert spads.identity["serial"] == "SN0,SN1"
    await spads.set_enabled(0, True)
    await spads.set_bias_ua(1, 9.5)
    await spads.set_trigger_level_mv(1, 120.4)
    assert await spads.get_bias_ua(1) == pytest.approx(9.52)
    assert await spads.is_latched(1) is False
    assert await spads.get_count_rates_hz(0.1) == [1520.0, 33.0]
    for transport in transports:
        transport.assert_complete()


async def test_a_value_the_module_kept_is_a_refusal() -> None:
    spads, transports = await array(
        [
            (b"THRESHOLD:VOLTAGE 1000000\n", b""),
            (b"THRESHOLD:VOLTAGE?\n", b"150000\n"),
            (b"REG:RUN?\n", b"MAYBE\n"),
            (b"REG:RUN FALSE\n", b""),
            (b"REG:RUN?\n", b"FALSE\n"),
            (b"REG:RUN TRUE\n", b""),
            (b"REG:RUN?\n", b"TRUE\n"),
        ]
    )
    with pytest.raises(InstrumentFault) as caught:
        await spads.set_trigger_level_mv(0, 1000.0)
    assert caught.value.command == "THRESHOLD:VOLTAGE" and "150000" in caught.value.message
    with pytest.raises(ProtocolError):
        await spads.get_enabled(0)
    await spads.reset_latch(0)
    with pytest.raises(InstrumentFault):
        await spads.set_bias_ua(0, 300.0)  # beyond the 250 V supply
    transports[0].assert_complete()


async def test_a_foreign_identity_is_refused() -> None:
    transport = ScriptedTransport([(b"*IDN?\n", b"IDQ,ID100,1,1\n")], instrument="spads")
    with pytest.raises(ProtocolError, match="ID120"):
        await ID120Array("spads", [transport]).connect()
