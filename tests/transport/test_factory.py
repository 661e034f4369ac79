"""make_transport: the right class per kind, and bad specs rejected with a precise message."""

from __future__ import annotations

from typing import Any

import pytest

from labctl.interfaces.build import Source, TransportSpec
from labctl.interfaces.errors import ConfigError
from labctl.transport import (
    SerialTransport,
    TcpTransport,
    Transport,
    VisaTransport,
    ZmqTransport,
    make_transport,
    parse_host_port,
)


def _spec(kind: str, address: str, timeout_s: float = 2.0, **options: Any) -> TransportSpec:
    return TransportSpec(kind=kind, address=address, timeout_s=timeout_s, options=options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "cls", "resource"),
    [
        (_spec("tcp", "127.0.0.1:7001"), TcpTransport, "tcp://127.0.0.1:7001"),
        (_spec("tcp", "[::1]:7001"), TcpTransport, "tcp://[::1]:7001"),
        (_spec("serial", "/dev/ttyUSB0", baudrate=115200), SerialTransport, "/dev/ttyUSB0"),
        (_spec("serial", "socket://127.0.0.1:7000"), SerialTransport, "socket://127.0.0.1:7000"),
        (_spec("serial", "loop://"), SerialTransport, "loop://"),
        (
            _spec("visa", "TCPIP::127.0.0.1::5000::SOCKET", read_termination="\r"),
            VisaTransport,
            "TCPIP::127.0.0.1::5000::SOCKET",
        ),
        (_spec("zmq", "tcp://127.0.0.1:5555"), ZmqTransport, "tcp://127.0.0.1:5555"),
        (_spec("zmq", "ipc:///tmp/id1000"), ZmqTransport, "ipc:///tmp/id1000"),
    ],
)
def test_builds_the_transport_for_each_kind(
    spec: TransportSpec, cls: type[Transport], resource: str
) -> None:
    link = make_transport(spec, instrument="dut")
    assert isinstance(link, cls)
    assert isinstance(link, Transport)
    assert link.resource == resource
    assert link.instrument == "dut"
    assert link.timeout_s == spec.timeout_s
    assert not link.is_open


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            _spec("tcp", "127.0.0.1"),
            "instruments.laser.transport.address: instrument 'laser': bad tcp address: "
            "expected host:port, got '127.0.0.1'",
        ),
        (
            _spec("tcp", "127.0.0.1:http"),
            "instruments.laser.transport.address: instrument 'laser': bad tcp address: "
            "port must be a number 1..65535, got 'http' in '127.0.0.1:http'",
        ),
        (
            _spec("tcp", "tcp://127.0.0.1:80"),
            "instruments.laser.transport.address: instrument 'laser': bad tcp address: "
            "expected host:port without a scheme or path, got 'tcp://127.0.0.1:80'",
        ),
        (
            _spec("serial", "ttyUSB0"),
            "instruments.laser.transport.address: instrument 'laser': bad serial address "
            "'ttyUSB0': expected a device path such as /dev/ttyUSB0, COM3, "
            "socket://host:port or loop://",
        ),
        (
            _spec("serial", "socket://127.0.0.1"),
            "instruments.laser.transport.address: instrument 'laser': bad serial address "
            "'socket://127.0.0.1': expected host:port, got '127.0.0.1'",
        ),
        (
            _spec("visa", "TCPIP::127.0.0.1::SOCKET"),
            "instruments.laser.transport.address: instrument 'laser': bad VISA resource "
            "'TCPIP::127.0.0.1::SOCKET': Could not parse 'TCPIP::127.0.0.1::SOCKET'. The syntax "
            "is 'TCPIP[board]::host address::port::SOCKET' (port part is mandatory).",
        ),
        (
            _spec("zmq", "tcp://127.0.0.1:99999"),
            "instruments.laser.transport.address: instrument 'laser': bad zmq address "
            "'tcp://127.0.0.1:99999': port must be a number 1..65535, got '99999' in "
            "'127.0.0.1:99999'",
        ),
        (
            _spec("tcp", "127.0.0.1:7001", timeout_s=0),
            "instruments.laser.transport.timeout_s: instrument 'laser': timeout_s must be a "
            "positive finite number of seconds, got 0",
        ),
        (
            _spec("serial", "/dev/ttyS0", parity="X"),
            "instruments.laser.transport.options: instrument 'laser': parity must be one of "
            "['E', 'M', 'N', 'O', 'S'], got 'X'",
        ),
        (
            _spec("visa", "TCPIP::127.0.0.1::5000::SOCKET", read_termination=13),
            "instruments.laser.transport.options: instrument 'laser': read_termination must be "
            "a string such as '\\n', got 13",
        ),
        (
            _spec("tcp", "127.0.0.1:7001", max_reply_bytes=0),
            "instruments.laser.transport.options: instrument 'laser': max_reply_bytes must be "
            "at least 1, got 0",
        ),
    ],
)
def test_bad_spec_is_config_error_with_message(spec: TransportSpec, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_transport(spec, instrument="laser")
    assert str(caught.value) == message


def test_unknown_kind_suggests_the_closest() -> None:
    with pytest.raises(ConfigError) as caught:
        make_transport(_spec("seriall", "/dev/ttyS0"), instrument="epc")
    assert caught.value.field == "instruments.epc.transport.kind"
    assert caught.value.suggestion == "serial"
    assert "unknown transport kind 'seriall' (expected one of serial, tcp, visa, zmq)" in str(
        caught.value
    )


def test_option_typo_names_file_line_and_suggestion() -> None:
    spec = _spec("serial", "/dev/ttyS0", baudrte=9600)
    with pytest.raises(ConfigError) as caught:
        make_transport(spec, instrument="epc", source=Source(file="lab.yaml", line=12))
    assert str(caught.value) == (
        "lab.yaml:12: instruments.epc.transport.options.baudrte: instrument 'epc': unknown "
        "serial transport option 'baudrte' (known: baudrate, bytesize, max_reply_bytes, "
        "open_timeout_s, parity, reconnect, rtscts, stopbits) (did you mean 'baudrate'?)"
    )


def test_driver_options_pass_through_untouched() -> None:
    spec = _spec("zmq", "tcp://127.0.0.1:5555", stream_address="tcp://127.0.0.1:5556")
    with pytest.raises(ConfigError, match="unknown zmq transport option 'stream_address'"):
        make_transport(spec, instrument="tagger")
    link = make_transport(spec, instrument="tagger", driver_options={"stream_address"})
    assert isinstance(link, ZmqTransport)


@pytest.mark.parametrize(
    ("address", "expected"),
    [("localhost:1", ("localhost", 1)), ("[fe80::1]:65535", ("fe80::1", 65535))],
)
def test_parse_host_port(address: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(address) == expected
