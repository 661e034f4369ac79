"""The EPC-400 wire twin speaks the EPC driver manual's protocol byte for byte: raw
requests on the pseudo-terminal, every reply line checked."""

from __future__ import annotations

import pytest

from tests.sims.wire.served import pty_exchange, served

ENDS = (b"Done\r\n", b"Error!\r\n")


async def test_every_documented_command_answers_its_content_line() -> None:
    async with served("polarization_controller") as setup:
        path = setup.serial_path
        exchanges = [
            (b"V2,-1500\r\n", b"Set CH2 DC Voltage at: -1500mV\r\n"),
            (b"VH1\r\n", b"Set CH1 DC Voltage at: 5000mV\r\n"),
            (b"VL3\r\n", b"Set CH3 DC Voltage at: -5000mV\r\n"),
            (b"VZ1\r\n", b"Set CH1 DC Voltage at: 0mV\r\n"),
            (b"V?\r\n", b"Voltage(mV): CH1 +0 CH2 -1500 CH3 -5000 CH4 +0\r\n"),
            (b"F2,7\r\n", b"Set CH2 AC Frequency at: 7Hz\r\n"),
            (b"F?\r\n", b"Frequency(Hz): CH1 000  CH2 007  CH3 000  CH4 000\r\n"),
            (b"M?\r\n", b"Work Mode: DC\r\n"),
            (b"MAC\r\n", b"Set To AC Mode\r\n"),
            (b"WF2\r\n", b"Set AC Waveform at: Triangle\r\n"),
            (b"M?\r\n", b"Work Mode: AC(Triangle)\r\n"),
            (b"WF?\r\n", b"AC Waveform: Triangle\r\n"),
            (b"MDC\r\n", b"Set To DC Mode\r\n"),
            (b"ENVF1\r\n", b"Enable DC Voltage Output at AC Mode\r\n"),
            (b"VF4\r\n", b"Set CH4 output to: Hz (if possible)\r\n"),
            (b"VF?\r\n", b"Hz<->Volt at AC Mode is enabled: CH1-V,CH2-V,CH3-V,CH4-F\r\n"),
            (b"ENVF0\r\n", b"Disable DC Voltage Output at AC Mode\r\n"),
            (b"SAVE\r\n", b"Write Setting to Flash memory\r\n"),
            (b"SN?\r\n", b"Serial Number: LCTWIN0001\r\n"),
            (b"VER?\r\n", b"Version: EPC OEM Driver V2.10\r\n"),
        ]
        for request, line in exchanges:
            assert await pty_exchange(path, request, ends=ENDS) == line + b"Done\r\n", request
        assert await setup.twin.get_voltages_mv() == [0.0, -1500.0, -5000.0, 0.0]
        assert setup.server.mode == "DC" and setup.server.frequency_hz == [0, 7, 0, 0]


@pytest.mark.parametrize("terminator", [b"\r\n", b"\r", b"\n"])
async def test_terminators_and_case_are_accepted(terminator: bytes) -> None:
    async with served("polarization_controller") as setup:
        reply = await pty_exchange(setup.serial_path, b"v4,+1200" + terminator, ends=ENDS)
        assert reply == b"Set CH4 DC Voltage at: 1200mV\r\nDone\r\n"
        assert (await setup.twin.get_voltages_mv())[3] == 1200.0
        reply = await pty_exchange(setup.serial_path, b"m?" + terminator, ends=ENDS)
        assert reply == b"Work Mode: DC\r\nDone\r\n"


async def test_refused_and_unknown_commands_answer_error() -> None:
    async with served("polarization_controller") as setup:
        path = setup.serial_path
        for request in (b"V9,0\r\n", b"V1,5001\r\n", b"F1,101\r\n", b"HELLO\r\n", b"VF7\r\n"):
            assert await pty_exchange(path, request, ends=ENDS) == b"Error!\r\n", request
        assert await setup.twin.get_voltages_mv() == [0.0, 0.0, 0.0, 0.0]


async def test_echoing_firmware_repeats_the_command_first() -> None:
    async with served("polarization_controller", echo=True) as setup:
        reply = await pty_exchange(setup.serial_path, b"V1,250\r\n", ends=ENDS)
        assert reply == b"V1,250\r\nSet CH1 DC Voltage at: 250mV\r\nDone\r\n"
        assert await pty_exchange(setup.serial_path, b"X\r\n", ends=ENDS) == b"X\r\nError!\r\n"
