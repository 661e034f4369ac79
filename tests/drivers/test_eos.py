"""Exact-exchange tests of the Single Quantum Eos driver: JSON control and counts stream."""

from __future__ import annotations

import pytest

from drivers.singlequantum.eos import EosSNSPD
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    InstrumentFault,
    InstrumentSpec,
    InstrumentTimeout,
    ProtocolError,
    SinglePhotonDetector,
    TransportSpec,
)
from labctl.testing.exchange import DISCONNECT, SILENCE, ScriptedTransport, Step

E = b"\x17"


def req(label: str, value: bytes) -> Step:
    return (
        b'{"request":"' + label.encode() + b'"}',  # sent unterminated, as the vendor does
        b'{"label":"' + label.encode() + b'","value":' + value + b"}" + E,
    )


def cmd(name: str, label: str, value: bytes) -> Step:
    sent = (
        b'{"command":"'
        + name.encode()
        + b'","label":"'
        + label.encode()
        + b'","value":'
        + value
        + b"}"
    )
    return (sent, b'{"label":"' + label.encode() + b'","value":' + value + b"}" + E)


CONNECT: list[Step] = [
    req("NumberOfDetectors", b"2"),
    req("InptMeasurementPeriod", b"100"),
    req("BiasCurrent", b"[12.0,0.0]"),
    req("DetectorEnable", b"true"),
]


async def connected(
    script: list[Step], counts: list[Step] | None = None
) -> tuple[EosSNSPD, ScriptedTransport, ScriptedTransport]:
    control = ScriptedTransport(CONNECT + script, instrument="snspd")
    stream = ScriptedTransport(counts or [], instrument="snspd")
    eos = EosSNSPD("snspd", control, stream)
    await eos.connect()
    return eos, control, stream


async def test_connect_reads_channels_and_state() -> None:
    eos, control, _ = await connected([])
    assert isinstance(eos, SinglePhotonDetector)
    assert eos.n_channels == 2
    assert eos.identity == {"vendor": "Single Quantum", "model": "Eos", "channels": "2"}
    control.assert_complete()


async def test_bias_setpoint_applies_only_when_armed() -> None:
    eos, control, _ = await connected(
        [
            cmd("SetAllBiasCurrents", "BiasCurrent", b"[12.0,0.0]"),  # channel 1 still disarmed
            cmd("DetectorEnable", "DetectorEnable", b"true"),
            cmd("SetAllBiasCurrents", "BiasCurrent", b"[12.0,9.5]"),
            cmd("DetectorEnable", "DetectorEnable", b"true"),
            req("TriggerLevel", b"[200.0,200.0]"),
            cmd("SetAllTriggerLevels", "TriggerLevel", b"[200.0,150.0]"),
            req("DetectorEnable", b"true"),
            req("BiasCurrent", b"[12.0,9.5]"),
            req("TriggerLevel", b"[200.0,150.0]"),
            req("BiasCurrent", b"[12.0,9.5]"),
        ]
    )
    await eos.set_bias_ua(1, 9.5)
    await eos.set_enabled(1, True)
    await eos.set_trigger_level_mv(1, 150)
    assert await eos.get_enabled(1) is True
    assert await eos.get_trigger_level_mv(1) == 150.0
    assert await eos.get_bias_ua(1) == 9.5
    control.assert_complete()


async def test_safe_state_disarms_everything() -> None:
    eos, control, _ = await connected(
        [
            cmd("SetAllBiasCurrents", "BiasCurrent", b"[0.0,0.0]"),
            cmd("DetectorEnable", "DetectorEnable", b"false"),
        ]
    )
    await eos.safe_state()
    assert eos.remembered_settings["bias"] == ([12.0, 0.0], [False, False])
    control.assert_complete()


async def test_count_rates_from_the_stream() -> None:
    lines: list[Step] = [
        (b"", b"17,99\n"),  # tail of a line queued before we looked: dropped
        (b"", b"1700000000100,120,7\n"),
        (b"", b"1700000000200,80,3\n"),
    ]
    eos, control, stream = await connected([], lines)
    rates = await eos.get_count_rates_hz(0.2)  # two 100 ms periods
    assert rates == pytest.approx([(120 + 80) / 0.2, (7 + 3) / 0.2])
    assert not stream.is_open and stream.open_count == 1
    stream.assert_complete()
    control.assert_complete()


async def test_latch_detection_health_and_reset() -> None:
    eos, control, _ = await connected(
        [
            req("BiasVoltage", b"[3.0,480.0]"),  # channel 1 is not armed: not latched
            req("BiasVoltage", b"[310.0,1.0]"),
            req("BiasVoltage", b"[310.0,1.0]"),
            cmd("SetAllBiasCurrents", "BiasCurrent", b"[0.0,0.0]"),
            cmd("DetectorEnable", "DetectorEnable", b"false"),
            cmd("SetAllBiasCurrents", "BiasCurrent", b"[12.0,0.0]"),
            cmd("DetectorEnable", "DetectorEnable", b"true"),
        ]
    )
    assert (await eos.health()).ok
    assert await eos.is_latched(0) is True
    health = await eos.health()
    assert not health.ok and "[0]" in health.detail
    assert health.readings["bias_voltage_0_mv"] == 310.0
    await eos.reset_latch(0)
    control.assert_complete()


async def test_error_label_is_instrument_fault() -> None:
    eos, control, _ = await connected(
        [
            (
                b'{"command":"SetAllBiasCurrents","label":"BiasCurrent","value":[30.0,0.0]}',
                b'{"label":"StatusMsg","value":"busy"}'
                + E
                + b'{"label":"ErrorMsg","value":"bias above critical current"}'
                + E,
            )
        ]
    )
    with pytest.raises(InstrumentFault) as info:
        await eos.set_bias_ua(0, 30.0)
    assert info.value.command == "SetAllBiasCurrents"
    assert "critical current" in str(info.value)
    control.assert_complete()


async def test_messages_run_together_and_wrapped_values() -> None:
    eos, control, _ = await connected(
        [
            # Two objects in one message ("}{"), whitespace around them.
            (
                req("TriggerLevel", b"")[0],
                b' {"label":"StatusMsg","value":"ok"}{"label":"TriggerLevel","value":[5.0,6.0]}\r\n'
                + E,
            ),
            # A value wrapped with its properties, as labelProps publishes it.
            (
                req("BiasCurrent", b"")[0],
                b'{"label":"BiasCurrent","value":{"value":[12.0,0.0],"unit":"uA"}}' + E,
            ),
            (
                req("TriggerLevel", b"")[0],
                b'{"label":"X","value":1} {"label":"Error","value":"x"}' + E,
            ),
        ]
    )
    assert await eos.get_trigger_level_mv(1) == 6.0
    assert await eos.get_bias_ua(0) == 12.0
    with pytest.raises(InstrumentFault, match="Error: x"):
        await eos.get_trigger_level_mv(0)
    control.assert_complete()


async def test_garbled_reply_is_re_sent_twice_then_protocol_error() -> None:
    garbled = (req("TriggerLevel", b"")[0], b"{not json" + E)
    eos, control, stream = await connected(
        [
            garbled,
            req("TriggerLevel", b"[1.0,2.0]"),  # the re-sent request gets a good reply
            garbled,
            garbled,
            garbled,  # three in a row: two re-sends spent
            req("TriggerLevel", b"[1.0]"),
            cmd("SetMeasurementPeriod", "InptMeasurementPeriod", b"50"),
        ],
        [
            (b"", b"x\n"),  # stale line, always dropped
            (b"", b"1,2\n"),  # one count for two channels: a lost period, skipped
            (b"", b"5,10,20\n"),
            (b"", b"x\n"),
            (b"", b"1\n"),
            (b"", b"2\n"),
            (b"", b"3\n"),
        ],
    )
    assert await eos.get_trigger_level_mv(1) == 2.0
    with pytest.raises(ProtocolError, match="not JSON") as caught:
        await eos.get_trigger_level_mv(0)
    assert "did not parse 3 times" in "".join(caught.value.__notes__)
    with pytest.raises(ProtocolError, match="should list 2 numbers"):
        await eos.get_trigger_level_mv(0)
    await eos.set_measurement_period_ms(50)
    assert await eos.get_count_rates_hz(0.01) == [200.0, 400.0]
    with pytest.raises(ProtocolError, match="does not hold 2 counts"):
        await eos.get_count_rates_hz(0.01)
    control.assert_complete()
    stream.assert_complete()


async def test_silence_is_timeout() -> None:
    eos, control, stream = await connected(
        [(req("BiasVoltage", b"")[0], SILENCE)], [(b"", SILENCE)]
    )
    with pytest.raises(InstrumentTimeout):
        await eos.is_latched(0)
    with pytest.raises(InstrumentTimeout):
        await eos.get_count_rates_hz(0.1)
    assert not stream.is_open  # closed even when the read failed
    control.assert_complete()


async def test_bad_arguments_rejected_before_the_wire() -> None:
    eos, control, _ = await connected([])
    with pytest.raises(ValueError, match="channel=2"):
        await eos.set_enabled(2, True)
    with pytest.raises(ValueError, match=r"bias_ua\[0\]=150"):
        await eos.set_bias_ua(0, 150)
    with pytest.raises(ValueError, match="measurement_period_ms=5"):
        await eos.set_measurement_period_ms(5)
    control.assert_complete()


async def test_reconnect_reapplies_period_triggers_then_bias() -> None:
    script = [
        cmd("SetMeasurementPeriod", "InptMeasurementPeriod", b"200"),
        req("TriggerLevel", b"[200.0,200.0]"),
        cmd("SetAllTriggerLevels", "TriggerLevel", b"[120.0,200.0]"),
        cmd("SetAllBiasCurrents", "BiasCurrent", b"[11.0,0.0]"),
        cmd("DetectorEnable", "DetectorEnable", b"true"),
        (req("BiasVoltage", b"")[0], DISCONNECT),
        *CONNECT,
        cmd("SetMeasurementPeriod", "InptMeasurementPeriod", b"200"),
        cmd("SetAllTriggerLevels", "TriggerLevel", b"[120.0,200.0]"),
        cmd("SetAllBiasCurrents", "BiasCurrent", b"[11.0,0.0]"),
        cmd("DetectorEnable", "DetectorEnable", b"true"),
        req("BiasVoltage", b"[900.0,0.0]"),  # the call itself, run again
    ]
    eos, control, _ = await connected(script)
    await eos.set_measurement_period_ms(200)
    await eos.set_trigger_level_mv(0, 120)
    await eos.set_bias_ua(0, 11.0)
    assert await eos.is_latched(0) is True  # reconnected on its own, settings back first
    assert control.open_count == 2 and eos.reconnects == 1
    control.assert_complete()


def test_from_config_validates_and_builds_both_links() -> None:
    spec = InstrumentSpec(
        name="snspd",
        class_path="drivers.singlequantum.eos:EosSNSPD",
        settings={"bias_ua": [10.0, 11.0], "enabled": [True, True]},
        transport=TransportSpec(kind="tcp", address="127.0.0.1:12000"),
    )
    eos = EosSNSPD.from_config(spec, BuildContext(lab="lab", node="bob"))
    assert eos.transport.resource.endswith("12000")
    bad = InstrumentSpec(
        name="snspd",
        class_path="drivers.singlequantum.eos:EosSNSPD",
        settings={"bias_ua": [10.0, 500.0]},
        transport=TransportSpec(kind="tcp", address="127.0.0.1:12000"),
    )
    with pytest.raises(ConfigError, match=r"settings\.bias_ua: .*bias_ua\[1\]=500"):
        EosSNSPD.from_config(bad, BuildContext(lab="lab", node="bob"))


async def test_station_settings_apply_at_connect_and_come_back_whole() -> None:
    spec = InstrumentSpec(
        name="snspd",
        class_path="drivers.singlequantum.eos:EosSNSPD",
        settings={"bias_ua": [10.0, 11], "trigger_level_mv": [150, 160.0], "latch_voltage_mv": 80},
        transport=TransportSpec(kind="tcp", address="127.0.0.1:12000"),
    )
    built = EosSNSPD.from_config(spec, BuildContext(lab="lab", node="bob"))
    assert built.remembered_settings == {
        "trigger_level_mv": [150.0, 160.0],
        "bias": ([10.0, 11.0], None),  # enables as the Eos reports them at connect
    }
    with pytest.raises(ConfigError, match=r"settings\.enabled: .*enabled\[0\] must be True"):
        EosSNSPD.from_config(
            InstrumentSpec(
                name="snspd",
                class_path="drivers.singlequantum.eos:EosSNSPD",
                settings={"enabled": [1, 0]},
                transport=TransportSpec(kind="tcp", address="127.0.0.1:12000"),
            ),
            BuildContext(lab="lab", node="bob"),
        )
    restarted = [
        req("NumberOfDetectors", b"2"),
        req("InptMeasurementPeriod", b"100"),
        req("BiasCurrent", b"[0.0,0.0]"),
        req("DetectorEnable", b"false"),
    ]
    control = ScriptedTransport(
        [
            *CONNECT,  # channel 0 armed, channel 1 not
            cmd("SetAllTriggerLevels", "TriggerLevel", b"[150.0,160.0]"),
            cmd("SetAllBiasCurrents", "BiasCurrent", b"[10.0,0.0]"),
            cmd("DetectorEnable", "DetectorEnable", b"true"),
            cmd("SetMeasurementPeriod", "InptMeasurementPeriod", b"200"),
            (req("BiasVoltage", b"")[0], DISCONNECT),
            *restarted,  # factory state: the enables of the first connect come back
            cmd("SetMeasurementPeriod", "InptMeasurementPeriod", b"200"),
            cmd("SetAllTriggerLevels", "TriggerLevel", b"[150.0,160.0]"),
            cmd("SetAllBiasCurrents", "BiasCurrent", b"[10.0,0.0]"),
            cmd("DetectorEnable", "DetectorEnable", b"true"),
            req("BiasVoltage", b"[1.0,0.0]"),
            req("BiasCurrent", b"[10.0,0.0]"),  # the snapshot
            req("TriggerLevel", b"[150.0,160.0]"),
        ],
        instrument="snspd",
    )
    eos = EosSNSPD("snspd", control, ScriptedTransport([], instrument="snspd"))
    eos._remember_declared("trigger_level_mv", [150.0, 160.0])  # as from_config does
    eos._remember_declared("bias_ua", [10.0, 11.0])
    await eos.connect()
    assert eos.remembered_settings["bias"] == ([10.0, 11.0], [True, False])
    await eos.set_measurement_period_ms(200)
    assert await eos.is_latched(0) is False
    snapshot = await eos.snapshot()
    assert snapshot["measurement_period_ms"] == 200  # the period set, not the factory one
    assert snapshot["bias_setpoint_ua"] == [10.0, 11.0] and snapshot["enabled"] == [True, False]
    control.assert_complete()
