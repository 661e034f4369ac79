"""The scripted transport fails on wrong bytes, on leftovers and on unscripted reads."""

from __future__ import annotations

import pytest

from labctl.interfaces import ConnectionLost, InstrumentTimeout
from labctl.testing.exchange import (
    DISCONNECT,
    SILENCE,
    ExchangeMismatch,
    ScriptedFrames,
    ScriptedTransport,
    expect_exchange,
)
from labctl.transport.base import Transport


async def test_exact_exchange_in_pieces_passes() -> None:
    with expect_exchange([(b"A?\n", b"1\n"), (b"B 2\n", b"")], instrument="dev") as link:
        assert isinstance(link, Transport)
        await link.open()
        assert await link.query(b"A?\n") == b"1"
        await link.write(b"B ")  # one command may arrive in several writes
        await link.write(b"2\n")


async def test_wrong_bytes_fail_at_once() -> None:
    link = ScriptedTransport([(b"A?\n", b"1\n")], instrument="dev")
    await link.open()
    with pytest.raises(ExchangeMismatch, match=r"expected b'A\?\\n', driver sent b'B\?\\n'"):
        await link.write(b"B?\n")


async def test_leftovers_fail() -> None:
    link = ScriptedTransport([(b"A?\n", b"1\n2\n"), (b"C\n", b"")], instrument="dev")
    await link.open()
    assert await link.query(b"A?\n") == b"1"
    with pytest.raises(ExchangeMismatch) as info:
        link.assert_complete()
    assert "1 exchange(s) not performed" in str(info.value)
    assert "never read: [b'2\\n']" in str(info.value)


async def test_extra_command_and_unscripted_read_fail() -> None:
    link = ScriptedTransport([(b"A\n", b"")], instrument="dev")
    await link.open()
    await link.write(b"A\n")
    with pytest.raises(ExchangeMismatch, match="no reply"):
        await link.read_until(b"\n")
    with pytest.raises(ExchangeMismatch, match="after the script ended"):
        await link.write(b"B\n")


async def test_silence_and_disconnect() -> None:
    link = ScriptedTransport([(b"A?\n", SILENCE), (b"B?\n", DISCONNECT)], instrument="dev")
    await link.open()
    with pytest.raises(InstrumentTimeout) as timeout:
        await link.query(b"A?\n", command="A?")
    assert timeout.value.instrument == "dev" and timeout.value.command == "A?"
    with pytest.raises(ConnectionLost):
        await link.query(b"B?\n")
    assert not link.is_open
    with pytest.raises(ConnectionLost, match="not open"):
        await link.write(b"C\n")
    link.assert_complete()


async def test_unsolicited_and_binary_reads() -> None:
    link = ScriptedTransport([(b"", b"\x01\x02"), (b"", b"\x03\x04")], instrument="dev")
    await link.open()
    assert await link.read_exact(3) == b"\x01\x02\x03"
    assert await link.read_exact(1) == b"\x04"
    link.assert_complete()


async def test_message_based_replies_are_whole_messages() -> None:
    link = ScriptedTransport(
        [(b"*IDN?", b"X,Y,Z,1"), (b"SET 1", b"")], instrument="dev", message_based=True
    )
    await link.open()
    assert await link.query(b"*IDN?") == b"X,Y,Z,1"
    assert await link.query(b"SET 1") == b""
    link.assert_complete()


async def test_reopen_drops_stale_bytes_and_counts() -> None:
    link = ScriptedTransport([(b"A?\n", b"1\n")], instrument="dev")
    await link.open()
    await link.write(b"A?\n")
    await link.close()
    await link.open()
    assert (link.open_count, link.close_count) == (2, 1)
    link.assert_complete()  # the unread reply went with the old connection


async def test_scripted_frames() -> None:
    frames = ScriptedFrames([b"f1", SILENCE, DISCONNECT], instrument="tagger")
    with pytest.raises(ConnectionLost):
        await frames.recv(1.0)
    await frames.open()
    assert await frames.recv(1.0) == b"f1"
    with pytest.raises(InstrumentTimeout):
        await frames.recv(1.0)
    with pytest.raises(ConnectionLost):
        await frames.recv(1.0)
    assert not frames.is_open
    frames.assert_complete()


def test_script_steps_are_typed() -> None:
    with pytest.raises(TypeError, match="script step 0"):
        ScriptedTransport([("A", b"")])  # type: ignore[list-item]
