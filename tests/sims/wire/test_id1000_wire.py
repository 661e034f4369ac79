"""The ID1000 wire twin answers the Time Controller's SCPI command set as the manual gives it."""

from __future__ import annotations

import asyncio

import pytest
import zmq

from drivers.idq.tagframe import decode_frame
from tests.sims.wire.id1000_client import Served, served_id1000


@pytest.fixture
async def tc() -> Served:  # type: ignore[misc]
    async with served_id1000() as served:
        for detector in range(4):
            served.world.set_detector_enabled(detector, True)
        yield served


async def test_long_short_and_any_case_are_one_command(tc: Served) -> None:
    assert await tc.ask("INPUt1:THREshold -0.4V") == ""
    assert await tc.ask("inpu1:thre?") == "-0.4V"
    assert await tc.ask("INPUT1:THRESHOLD 1000mV") == ""
    assert await tc.ask("Input1:Thres?") == "1V"
    assert tc.wire.inputs[0].threshold_v == 1.0
    assert await tc.ask("INPU3:EDGE fall") == ""
    assert await tc.ask("INPUT3:EDGE?") == "FALLING"


async def test_compound_messages_follow_the_header_path(tc: Served) -> None:
    assert await tc.ask("INPU2:ENAB OFF;COUP AC;EDGE FALLING;SELE SHAPED;RESY MANU") == ""
    assert await tc.ask("INPU2:ENAB?;COUP?;EDGE?;SELE?;RESY?") == "OFF\nAC\nFALLING\nSHAPED\nMANUAL"
    state = tc.wire.inputs[1]
    assert (state.enabled, state.coupling, state.edge) == (False, "AC", "FALLING")
    # A leading ':' restarts at the root; an ENABle without value means ON.
    assert await tc.ask("INPU2:ENAB;:INPU4:COUN:MODE ACCU;INTE 250") == ""
    assert await tc.ask("INPU2:ENAB?;:INPU4:COUN:MODE?;INTE?") == "ON\nACCUMULATE\n250"


async def test_common_commands(tc: Served) -> None:
    assert (await tc.ask("*IDN?")).split(",")[:2] == ["ID Quantique", "ID1000"]
    assert await tc.ask("*OPC?") == "1"
    assert await tc.ask("*CLS;*ESE 8;*ESE?") == "8"
    assert await tc.ask("*TST?") == "0"
    await tc.ask("INPU1:THRE -0.2;:DELA1:VALU 700")
    assert await tc.twin.get_channel_delay_ps(0) == 700
    assert await tc.ask("*RST;*OPC?") == "1"
    assert await tc.ask("INPU1:THRE?;:DELA1:VALU?") == "0V\n0TB"
    assert await tc.twin.get_channel_delay_ps(0) == 0


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("FOO:BAR 1", "SCPI_ERR_INVALID_CMD"),
        ("INPU1:NOSUCH?", "SCPI_ERR_INVALID_CMD"),
        ("*XYZ", "SCPI_ERR_INVALID_CMD"),
        ("INPU1:EDGE SIDEWAYS", "SCPI_ERR_PARAM_TYPE"),
        ("INPU1:ENAB MAYBE", "SCPI_ERR_PARAM_TYPE"),
        ("INPU1:THRE", "SCPI_ERR_PARAM_COUNT"),
        ("INPU1:THRE 1A", "SCPI_ERR_PARAM_UNITS"),
        ("DELA1:VALU -5", "SCPI_ERR_INVALID_VALUE"),
        ("DELA1:LINK NOWHERE7", "SCPI_ERR_INVALID_VALUE"),
        ("INPU9:ENAB ON", "SCPI_ERR_NUM_SUF_INVALID"),
        ("DELA9:VALU 1", "SCPI_ERR_NUM_SUF_INVALID"),
    ],
)
async def test_refusals_answer_the_error_code_alone(tc: Served, command: str, error: str) -> None:
    assert await tc.ask(command) == error


async def test_an_error_ends_the_message(tc: Served) -> None:
    assert await tc.ask("INPU1:THRE 0.3;EDGE NOPE;COUP AC") == "SCPI_ERR_PARAM_TYPE"
    assert tc.wire.inputs[0].threshold_v == 0.3 and tc.wire.inputs[0].coupling == "DC"


async def test_delay_blocks_set_the_linked_input(tc: Served) -> None:
    assert await tc.ask("DELA2:VALUe 1.5KTB;LINK INPU2") == ""
    assert await tc.twin.get_channel_delay_ps(1) == 1500
    assert await tc.ask("DELAY2:VALUE?;LINK?") == "1500TB\nINPU2"
    # Relinked elsewhere, input 2 has no delay block left; DELAy5 then takes it over.
    assert await tc.ask("DELA2:INPOrt:LINK NONE") == ""
    assert await tc.twin.get_channel_delay_ps(1) == 0
    assert await tc.ask("DELA5:VALU 42;LINK INPU2;:DELA5:LINK?") == "INPU2"
    assert await tc.twin.get_channel_delay_ps(1) == 42


async def test_counters_count_events_of_the_window(tc: Served) -> None:
    assert await tc.ask("INPU1:COUN:MODE CYCL;INTE 100;RESEt") == "Counter value set to 0 "
    window = int(await tc.ask("INPU1:COUN?"))
    rate_hz = (await tc.twin.get_count_rates_hz(1e-3))[0]
    assert window > 0 and rate_hz > 0
    assert window == pytest.approx(rate_hz * 0.1, rel=0.5)  # Poisson: one ms sample each
    assert await tc.ask("INPU1:ENAB OFF;COUN?") == "0"
    assert await tc.ask("STAR:COUN?") == "0"
    assert await tc.ask("INPU1:HIRES:ERROR?") == "0"
    assert await tc.ask("INPU1:HIRES:ERROR:CLEAR") == "Cleared Highres errors"


async def test_record_stage_follows_number_and_duration(tc: Served) -> None:
    assert await tc.ask("REC:TRIG:ARM:MODE MANUal;:REC:ENABle ON;:REC:STOP;:REC:NUM 1") == ""
    assert await tc.ask("REC:DURation 60 GTB;:REC:NUM?;DUR?") == "1\n60000000000TB"
    assert await tc.ask("REC:PLAY;STAGe?") == "PLAYING"
    await asyncio.sleep(0.1)
    assert await tc.ask("REC:STAGe?") == "STOPPED"
    assert await tc.ask("REC:NUM INF;NUM?") == "INF"
    assert await tc.ask("REC:ENAB OFF;PLAY;STAG?") == "STOPPED"  # a disabled record never plays


async def test_raw_send_streams_only_the_chosen_inputs(tc: Served) -> None:
    pull = tc.req.context.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(tc.wire.endpoints()["stream"])
    try:
        assert await tc.ask("RAW2:SEND ON;:RAW2:SEND?;:RAW1:SEND?") == "ON\nOFF"
        assert not tc.wire.streaming
        assert await tc.ask("REC:NUM INF;PLAY") == ""
        assert tc.wire.streaming
        channels: set[int] = set()
        for _ in range(6):
            _, batch = decode_frame(await pull.recv(), instrument="test", n_channels=4)
            channels |= set(batch.channel.tolist())
        assert channels == {1}
        assert await tc.ask("REC:STOP") == ""
        assert not tc.wire.streaming and not tc.twin.is_streaming
        assert await tc.ask("RAW2:ERRORS?;:RAW2:ERRORS:CLEAR;:RAW2:REF:LINK NONE;LINK?") == (
            "0\nNONE"
        )
    finally:
        pull.close(linger=0)


async def test_unsimulated_blocks_are_stored_and_read_back(tc: Served) -> None:
    assert await tc.ask("TSCO5:WIND:ENAB OFF;:TSCO5:FIR:LINK DELA1;:TSCO5:OPOUt ONLYFIR") == ""
    assert await tc.ask("TSCO5:FIRst:LINK?;:TSCO5:OPOU?;:TSCO5:COUNter?") == "DELA1\nONLYFIR\n0"
    assert await tc.ask("HIST1:BCOUnt 4;BWID 100;FLUSh") == "Flushed Histogram!"
    assert await tc.ask("HIST1:DATA?") == "[0,0,0,0]"
    assert await tc.ask("DEVIce:RESolution?;:DEVI:RES:BWID?") == "HIRES\n1"
    assert await tc.ask("DEVI:CONFI:LOAD COUNT;:DEVI:SYNC?") == "INTERNAL"
