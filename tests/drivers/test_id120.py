"""Exact-exchange tests of the ID Quantique ID120 array driver: SCPI text per module."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.idq.id120 import ID120Array
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    ConnectionLost,
    InstrumentFault,
    InstrumentSpec,
    ProtocolError,
    SinglePhotonDetector,
    TransportSpec,
)
from labctl.testing.exchange import DISCONNECT, ScriptedTransport, Step


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


async def test_a_reconnect_re_applies_window_bias_and_level_before_running() -> None:
    spads, transports = await array(
        [
            (b"REG:RUN TRUE\n", b""),
            (b"REG:RUN?\n", b"TRUE\n"),
            (b"BIAS:VOLTAGE 9520000\n", b""),
            (b"BIAS:VOLTAGE?\n", b"9520000\n"),
            (b"REG:RUN?\n", DISCONNECT),
            *connect(0),
            (b"BIAS:VOLTAGE 9520000\n", b""),  # the bias is back before the module runs
            (b"BIAS:VOLTAGE?\n", b"9520000\n"),
            (b"REG:RUN TRUE\n", b""),
            (b"REG:RUN?\n", b"TRUE\n"),
        ],
        [
            (b"THRESHOLD:VOLTAGE 120500\n", b""),
            (b"THRESHOLD:VOLTAGE?\n", b"120500\n"),
            *connect(1),
            (b"THRESHOLD:VOLTAGE 120500\n", b""),
            (b"THRESHOLD:VOLTAGE?\n", b"120500\n"),
        ],
    )
    await spads.set_enabled(0, True)
    await spads.set_bias_ua(0, 9.5)
    await spads.set_trigger_level_mv(1, 120.4)
    assert spads.remembered_settings == {
        "integration_ms": 200,
        "enabled[0]": True,
        "bias_ua[0]": 9.5,
        "trigger_level_mv[1]": 120.4,
    }
    with pytest.raises(ConnectionLost):
        await spads.get_enabled(0)
    await spads.connect()
    for transport in transports:
        transport.assert_complete()


def test_the_station_file_gives_one_value_per_module() -> None:
    def spec(settings: dict[str, Any]) -> InstrumentSpec:
        options = {"channel_addresses": ["127.0.0.1:47021"]}
        return InstrumentSpec(
            name="spads",
            class_path="drivers.idq.id120:ID120Array",
            settings=settings,
            transport=TransportSpec("tcp", "127.0.0.1:47020", 2.0, options),
        )

    context = BuildContext(lab="lab", node="bob")
    with pytest.raises(ConfigError, match=r"settings\.bias_ua: .*bias_ua needs 2 values"):
        ID120Array.from_config(spec({"bias_ua": [12.0]}), context)
    with pytest.raises(ConfigError, match=r"trigger_level_mv\[1\]=2000 is outside"):
        ID120Array.from_config(spec({"trigger_level_mv": [100.0, 2000]}), context)
    with pytest.raises(ConfigError, match="integration_ms=300 is not a multiple of 200"):
        ID120Array.from_config(spec({"integration_ms": 300}), context)
    spads = ID120Array.from_config(
        spec({"enabled": [True, False], "bias_ua": [12.0, 12.5], "integration_ms": 400}), context
    )
    assert spads.remembered_settings == {
        "integration_ms": 400,
        "enabled[0]": True,
        "enabled[1]": False,
        "bias_ua[0]": 12.0,
        "bias_ua[1]": 12.5,
    }
