"""Public ID1000/ID900 client exchanges against the wire twin.

No ID1000/ID900 client is published on PyPI (pylablib, QMI and qcodes_contrib_drivers have
no ID Quantique time controller driver; ``idq-id801`` is for the older USB ID801). ID
Quantique publishes its Python examples only as scripts in a repository, and a public lab
driver of the ID900 (MSLNZ/pr-single-photons) lives in its own repository, so their code
is not used here: each test sends the program messages those scripts document, in their
spelling, over a plain ZMQ REQ socket and parses the answers the way they do (``int()``
of the bin width, ``splitlines()`` of joined counter queries, ``REC:STAGe?`` polled until
it is no longer ``PLAYING``, ``eval`` of histogram data, ``SCPI_ERR_`` as the error mark),
then checks what the twin now holds.
"""

from __future__ import annotations

import ast
import asyncio
import time

from tests.sims.wire.id1000_client import served_id1000


def is_error(answer: str) -> bool:
    """How the published scripts recognise a refused command."""
    return "SCPI_ERR_" in answer or answer.endswith(("SCPI_ERR_PARAM_TYPE", "SCPI_ERR_INVALID_CMD"))


async def test_idq_example_connect_and_bin_width() -> None:
    async with served_id1000() as tc:
        assert not is_error(await tc.ask("*IDN?"))
        resolution_bwid = int(await tc.ask("DEVI:RES:BWID?"))  # adjust_bin_width()
        assert resolution_bwid == tc.twin.resolution_ps
        assert await tc.ask("DEVIce:RESolution?") == "HIRES"  # inputs_status.py


async def test_idq_example_filtered_histogram_configuration() -> None:
    async with served_id1000() as tc:
        for n in (1, 2, 3):
            answer = await tc.ask(f"INPU{n}:ENAB ON;THRE -0.4V;COUP DC;EDGE FALLING;SELE UNSHAPED")
            assert not is_error(answer)
            assert not is_error(await tc.ask(f"DELA{n}:VALUe 0;LINK INPU{n}"))
        for command in (
            "TSCO5:WIND:ENAB OFF;:TSCO5:FIR:LINK DELA1;:TSCO5:OPOUt ONLYFIR",
            "TSCO7:WIND:ENAB ON;:TSCO7:FIR:LINK DELA2",
            "TSCO7:WIND:BEGI:LINK DELA3;DELAY 100000;EDGE RISING",
            "TSCO7:OPIN ONLYFIR;:TSCO7:OPOUt MUTE",
            "HIST1:REF:LINK TSCO5;:HIST1:STOP:LINK TSCO7",
        ):
            assert not is_error(await tc.ask(command))
        for state in tc.wire.inputs[:3]:
            assert (state.enabled, state.threshold_v, state.coupling) == (True, -0.4, "DC")
            assert (state.edge, state.select) == ("FALLING", "UNSHAPED")
        assert tc.wire.delay_link[:3] == ["INPUT1", "INPUT2", "INPUT3"]


async def test_idq_example_histogram_acquisition_flow() -> None:
    async with served_id1000() as tc:
        duration_s, bin_count = 0.05, 8
        for command in (
            "REC:TRIG:ARM:MODE MANUal",
            "REC:ENABle ON",
            "REC:STOP",
            "REC:NUM 1",
            f"REC:DURation {duration_s * 1e12}",  # a float, as the script formats it
            f"HIST1:BCOUnt {bin_count}",
            "HIST1:BWID 100",
            "HIST1:FLUSh",
            "REC:PLAY",
        ):
            assert not is_error(await tc.ask(command))
        assert tc.wire.record.number == 1 and tc.wire.record.pwid_ps == 50_000_000_000
        started = time.monotonic()
        # Polling REC:STAGe? is the documented exchange itself.
        while (await tc.ask("REC:STAGe?")).upper() == "PLAYING":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert time.monotonic() - started >= duration_s * 0.5
        assert ast.literal_eval(await tc.ask("HIST1:DATA?")) == [0] * bin_count


async def test_idq_example_counters_read_in_one_request() -> None:
    async with served_id1000() as tc:
        for detector in range(4):
            tc.world.set_detector_enabled(detector, True)
        assert not is_error(await tc.ask("INPU1:COUN:MODE CYCL;INTE 1000;RESEt"))
        blocks = ["STARt", "INPU1", "INPU2", "INPU3", "INPU4", "TSCO6", "TSCO24"]
        answer = await tc.ask(";:".join(f"{block}:COUNter?" for block in blocks))
        counts = dict(zip(blocks, (int(line) for line in answer.splitlines()), strict=True))
        assert counts["INPU1"] > 0 and counts["STARt"] == 0 and counts["TSCO24"] == 0


async def test_idq_example_timestamp_acquisition_commands() -> None:
    async with served_id1000() as tc:
        for command in (
            "REC:TRIG:ARM:MODE MANUal",
            "REC:ENABle ON",
            "REC:STOP",
            "REC:NUM INF",
            f"REC:PWID {int(1e12 * 0.2)};PPER {int(1e12 * (0.2 + 40e-8))}",
        ):
            assert not is_error(await tc.ask(command))
        for channel in (1, 2):
            assert not is_error(await tc.ask(f"RAW{channel}:REF:LINK NONE"))
            assert not is_error(await tc.ask(f"RAW{channel}:ERRORS:CLEAR"))
            if (await tc.ask(f"RAW{channel}:SEND?")).strip().upper() != "ON":
                assert not is_error(await tc.ask(f"RAW{channel}:SEND ON"))
        assert not is_error(await tc.ask("REC:PLAY"))
        assert (await tc.ask("REC:STAGe?")).strip().upper() == "PLAYING"
        try:
            number_of_record: int | None = int(await tc.ask("REC:NUMber?"))
        except ValueError:
            number_of_record = None  # INF, as the script expects
        assert number_of_record is None
        assert tc.wire.streaming and tc.wire.raw_send == [True, True, False, False]
        assert not is_error(await tc.ask("REC:STOP"))
        for channel in (1, 2):
            assert not is_error(await tc.ask(f"RAW{channel}:SEND OFF"))
            assert int(await tc.ask(f"RAW{channel}:ERRORS?")) == 0
        assert not tc.wire.streaming


async def test_id900_lab_driver_configure_input_and_count() -> None:
    """The long-form messages of MSLNZ's ID900 driver, with its reply checks."""
    async with served_id1000() as tc:
        command = (
            "INPUT2:ENABLE ON;COUPLING AC;EDGE FALLING;THRESHOLD 0.25V;SELECT UNSHAPED;"
            "RESYNCPOLICY MANUAL;:INPUT2:COUNTER:INTEGRATIONTIME 500;MODE CYCLE;"
            ":DELAY2:INPORT:LINK INPU2;:DELAY2:VALUE 2500"
        )
        assert not is_error(await tc.ask(command))
        assert not is_error(await tc.ask("DEVICE:CONFIGURATION:LOAD INIT"))
        assert await tc.ask("INPUT2:COUNTER:RESET") == "Counter value set to 0 "
        assert await tc.ask("INPUT2:HIRES:ERROR:CLEAR") == "Cleared Highres errors"
        assert await tc.ask(":HIST1:FLUSH") == "Flushed Histogram!"
        assert is_error(await tc.ask("INPUT2:EDGE UPWARDS"))
        assert is_error(await tc.ask("INPUT2:NONSENSE 1"))
        state = tc.wire.inputs[1]
        assert (state.coupling, state.edge, state.threshold_v) == ("AC", "FALLING", 0.25)
        assert (state.resync, state.integration_ms) == ("MANUAL", 500)
        assert await tc.twin.get_channel_delay_ps(1) == 2500
