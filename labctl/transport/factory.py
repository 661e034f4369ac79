"""Build a transport from a config's TransportSpec, rejecting bad addresses up front.

A typo in an address or option should stop ``labctl check``, not surface as a timeout an
hour into a run, so everything that can be checked without the instrument is checked here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection
from typing import Any

from pyvisa import rname

from labctl.interfaces.build import Source, TransportSpec
from labctl.interfaces.errors import ConfigError
from labctl.transport.base import Transport
from labctl.transport.core import DEFAULT_MAX_REPLY_BYTES, check_timeout_s
from labctl.transport.recovery import ReconnectPolicy
from labctl.transport.serialport import SerialTransport
from labctl.transport.tcp import TcpTransport
from labctl.transport.visa import VisaTransport
from labctl.transport.zmq_req import ZmqTransport
from labctl.transport.zmq_sub import Pattern, ZmqSubscriber

COMMON_OPTIONS = frozenset({"max_reply_bytes", "open_timeout_s", "reconnect"})
KIND_OPTIONS: dict[str, frozenset[str]] = {
    "tcp": frozenset(),
    "serial": frozenset({"baudrate", "bytesize", "parity", "stopbits", "rtscts"}),
    "visa": frozenset({"read_termination", "write_termination"}),
    "zmq": frozenset(),
}
SERIAL_URL_SCHEMES = frozenset({"socket", "loop", "rfc2217", "spy", "hwgrep", "alt"})
ZMQ_SCHEMES = frozenset({"tcp", "ipc", "inproc"})
_WINDOWS_PORT = re.compile(r"^COM\d+$", re.IGNORECASE)


def parse_host_port(address: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[ipv6]:port``) into host and port; ValueError if malformed."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected host:port, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if "/" in host:
        raise ValueError(f"expected host:port without a scheme or path, got {address!r}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port must be a number 1..65535, got {port_text!r} in {address!r}")
    return host, int(port_text)


def make_transport(
    spec: TransportSpec,
    *,
    instrument: str,
    source: Source | None = None,
    driver_options: Collection[str] = (),
) -> Transport:
    """Build the (unopened) transport ``spec`` describes; ConfigError naming what is wrong.

    ``driver_options`` lists option keys the driver reads itself (e.g. a second stream
    address); any other key this transport does not know is reported as a typo.
    """

    def fail(field: str, message: str, suggestion: str | None = None) -> ConfigError:
        return _config_error(instrument, source, f"transport.{field}", message, suggestion)

    builder = _BUILDERS.get(spec.kind)
    if builder is None:
        raise fail(
            "kind",
            f"unknown transport kind {spec.kind!r} (expected one of "
            f"{', '.join(sorted(_BUILDERS))})",
            _closest(str(spec.kind), _BUILDERS),
        )
    try:
        timeout_s = check_timeout_s(spec.timeout_s, "timeout_s")
    except ValueError as exc:
        raise fail("timeout_s", str(exc)) from None
    known = COMMON_OPTIONS | KIND_OPTIONS[spec.kind]
    for key in spec.options:
        if key not in known and key not in driver_options:
            raise fail(
                f"options.{key}",
                f"unknown {spec.kind} transport option {key!r} (known: "
                f"{', '.join(sorted(known | set(driver_options)))})",
                _closest(key, known | set(driver_options)),
            )
    options = {key: value for key, value in spec.options.items() if key in known}
    if "reconnect" in options:
        try:
            options["reconnect"] = ReconnectPolicy.from_options(options["reconnect"])
        except (ValueError, TypeError) as exc:
            raise fail("options.reconnect", str(exc)) from None
    try:
        return builder(spec.address, instrument, timeout_s, options)
    except _AddressError as exc:
        raise fail("address", str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise fail("options", str(exc)) from None


def make_subscriber(
    address: str,
    *,
    instrument: str,
    field: str = "transport.options.stream_address",
    source: Source | None = None,
    timeout_s: float = 2.0,
    pattern: Pattern = "sub",
    topics: tuple[bytes, ...] = (b"",),
    rcvhwm: int = 1000,
    max_message_bytes: int = DEFAULT_MAX_REPLY_BYTES,
) -> ZmqSubscriber:
    """Build an (unopened) stream receiver; ConfigError naming ``field`` if arguments are bad."""
    try:
        check_zmq_address(address)
        return ZmqSubscriber(
            address,
            instrument=instrument,
            timeout_s=timeout_s,
            pattern=pattern,
            topics=topics,
            rcvhwm=rcvhwm,
            max_message_bytes=max_message_bytes,
        )
    except (ValueError, TypeError) as exc:
        raise _config_error(instrument, source, field, str(exc), None) from None


def _config_error(
    instrument: str, source: Source | None, field: str, message: str, suggestion: str | None
) -> ConfigError:
    return ConfigError(
        f"instrument '{instrument}': {message}",
        file=None if source is None else source.file,
        line=None if source is None else source.line,
        field=f"instruments.{instrument}.{field}",
        suggestion=suggestion,
    )


class _AddressError(ValueError):
    """The address does not fit the transport kind."""


def _closest(word: str, candidates: Collection[str]) -> str | None:
    matches = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _tcp(address: str, instrument: str, timeout_s: float, options: dict[str, Any]) -> Transport:
    try:
        host, port = parse_host_port(address)
    except ValueError as exc:
        raise _AddressError(f"bad tcp address: {exc}") from None
    return TcpTransport(host, port, instrument=instrument, timeout_s=timeout_s, **options)


def _serial(address: str, instrument: str, timeout_s: float, options: dict[str, Any]) -> Transport:
    scheme, sep, rest = address.partition("://")
    if sep:
        if scheme not in SERIAL_URL_SCHEMES:
            raise _AddressError(
                f"bad serial address {address!r}: unknown URL scheme {scheme!r} (expected a "
                f"device path or one of {', '.join(s + '://' for s in sorted(SERIAL_URL_SCHEMES))})"
            )
        if scheme in ("socket", "rfc2217"):
            try:
                parse_host_port(rest.split("?", 1)[0])
            except ValueError as exc:
                raise _AddressError(f"bad serial address {address!r}: {exc}") from None
    elif not (address.startswith("/") or _WINDOWS_PORT.match(address)):
        raise _AddressError(
            f"bad serial address {address!r}: expected a device path such as /dev/ttyUSB0, "
            "COM3, socket://host:port or loop://"
        )
    return SerialTransport(address, instrument=instrument, timeout_s=timeout_s, **options)


def _visa(address: str, instrument: str, timeout_s: float, options: dict[str, Any]) -> Transport:
    try:
        rname.parse_resource_name(address)
    except rname.InvalidResourceName as exc:
        raise _AddressError(f"bad VISA resource {address!r}: {exc}") from None
    return VisaTransport(address, instrument=instrument, timeout_s=timeout_s, **options)


def _zmq(address: str, instrument: str, timeout_s: float, options: dict[str, Any]) -> Transport:
    check_zmq_address(address)
    return ZmqTransport(address, instrument=instrument, timeout_s=timeout_s, **options)


def check_zmq_address(address: str) -> None:
    """Raise ValueError unless ``address`` is a ZMQ endpoint a socket can connect to."""
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in ZMQ_SCHEMES:
        raise _AddressError(
            f"bad zmq address {address!r}: expected tcp://host:port, ipc://path or inproc://name"
        )
    if not rest:
        raise _AddressError(f"bad zmq address {address!r}: nothing after {scheme}://")
    if scheme == "tcp":
        try:
            parse_host_port(rest)
        except ValueError as exc:
            raise _AddressError(f"bad zmq address {address!r}: {exc}") from None


_BUILDERS: dict[str, Callable[[str, str, float, dict[str, Any]], Transport]] = {
    "tcp": _tcp,
    "serial": _serial,
    "visa": _visa,
    "zmq": _zmq,
}
