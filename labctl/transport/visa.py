"""VISA transport over pyvisa with the pure-Python pyvisa-py backend ("@py").

Works for any message-based resource pyvisa-py opens; ``TCPIP::host::port::SOCKET`` is
the one the Santec TSL-570 uses. pyvisa blocks, so it runs in the transport's worker
thread; VisaIOError is mapped onto our typed errors.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from typing import Any

import pyvisa
from pyvisa import constants, errors

from labctl.transport.core import DEFAULT_MAX_REPLY_BYTES
from labctl.transport.recovery import ReconnectPolicy
from labctl.transport.threaded import ThreadedTransport

_TIMEOUT_CODES = {constants.StatusCode.error_timeout}
_OPEN_GRACE_S = 0.5
_managers: dict[str, Any] = {}
_managers_lock = threading.Lock()


def resource_manager(backend: str = "@py") -> Any:
    """The process-wide pyvisa ResourceManager for ``backend`` (closing it would close all)."""
    with _managers_lock:
        if backend not in _managers:
            _managers[backend] = pyvisa.ResourceManager(backend)
        return _managers[backend]


class VisaTransport(ThreadedTransport):
    """A pyvisa resource as a byte link (terminators handled here, not by pyvisa)."""

    def __init__(
        self,
        resource: str,
        *,
        instrument: str,
        timeout_s: float = 2.0,
        open_timeout_s: float | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        reconnect: ReconnectPolicy | Mapping[str, Any] | None = None,
        read_termination: str = "\n",
        write_termination: str = "",
        backend: str = "@py",
    ) -> None:
        for option, value in (
            ("read_termination", read_termination),
            ("write_termination", write_termination),
        ):
            if not isinstance(value, str):
                raise ValueError(f"{option} must be a string such as '\\n', got {value!r}")
        super().__init__(
            instrument=instrument,
            resource=resource,
            timeout_s=timeout_s,
            open_timeout_s=open_timeout_s,
            max_reply_bytes=max_reply_bytes,
            reconnect=reconnect,
        )
        self._read_termination = read_termination
        self._write_termination = write_termination
        self._backend = backend
        self._handle: Any = None

    def _open_blocking(self) -> None:
        try:
            handle = resource_manager(self._backend).open_resource(
                self.resource,
                # Longer than our own deadline, so that ours fires first (InstrumentTimeout).
                open_timeout=int((self._open_timeout_s + _OPEN_GRACE_S) * 1000),
                timeout=int(self.timeout_s * 1000),
            )
        except errors.VisaIOError as exc:
            raise _mapped(exc) from exc
        except Exception as exc:  # pyvisa-py raises a bare Exception("could not connect")
            raise ConnectionError(str(exc)) from exc
        self._handle = handle
        # pyvisa-py reports a refused TCP connect as success; the socket knows better.
        sock = self._socket()
        if sock is not None:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._close_blocking()
                raise ConnectionRefusedError(err, os.strerror(err))
        # Sockets carry no END signal: a termination character is what ends a pyvisa read.
        handle.read_termination = self._read_termination or None
        handle.write_termination = self._write_termination

    def _close_blocking(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()
            except (errors.VisaIOError, OSError):
                pass  # already broken: nothing left to release

    def _write_blocking(self, data: bytes) -> None:
        handle = self._require_handle()
        try:
            handle.timeout = int(self.timeout_s * 1000)
            handle.write_raw(data)
        except errors.VisaIOError as exc:
            raise _mapped(exc) from exc

    def _read_slice(self, max_bytes: int, slice_s: float, stop_byte: int | None) -> bytes:
        handle = self._require_handle()
        try:
            handle.timeout = max(1, int(slice_s * 1000))
            # With the terminator's last byte as termchar pyvisa-py returns at once when it
            # arrives; without one it returns max_bytes or what came before a quiet spell.
            if stop_byte is None:
                handle.set_visa_attribute(constants.ResourceAttribute.termchar_enabled, False)
            else:
                handle.set_visa_attribute(constants.ResourceAttribute.termchar, stop_byte)
                handle.set_visa_attribute(constants.ResourceAttribute.termchar_enabled, True)
            # Filling max_bytes exactly is what read_exact asks for, not worth a warning.
            with handle.ignore_warning(constants.StatusCode.success_max_count_read):
                data, _status = handle.visalib.read(handle.session, max_bytes)
            return bytes(data)
        except errors.VisaIOError as exc:
            if exc.error_code in _TIMEOUT_CODES:
                self._raise_if_peer_closed()
                return b""
            raise _mapped(exc) from exc

    def _raise_if_peer_closed(self) -> None:
        # pyvisa-py treats a closed socket like silence; peek to tell EOF from a quiet peer.
        sock = self._socket()
        if sock is None:
            return
        try:
            peeked = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not peeked:
            raise EOFError("peer closed the connection")

    def _socket(self) -> socket.socket | None:
        handle = self._handle
        if handle is None:
            return None
        session = getattr(handle.visalib, "sessions", {}).get(handle.session)
        sock = getattr(session, "interface", None)
        return sock if isinstance(sock, socket.socket) else None

    def _require_handle(self) -> Any:
        if self._handle is None:
            raise ConnectionResetError("VISA resource is not open")
        return self._handle


def _mapped(exc: errors.VisaIOError) -> OSError:
    """A VisaIOError as the OSError flavour BufferedTransport maps to our typed errors."""
    if exc.error_code in _TIMEOUT_CODES:
        return TimeoutError(exc.description)
    return ConnectionError(f"{exc.abbreviation}: {exc.description}")
