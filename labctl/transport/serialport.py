"""Serial transport over pyserial: device paths (incl. pseudo-terminals), socket://, loop://."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import serial

from labctl.transport.core import DEFAULT_MAX_REPLY_BYTES
from labctl.transport.recovery import ReconnectPolicy
from labctl.transport.threaded import READ_SLICE_S, ThreadedTransport

PARITIES = {
    "N": serial.PARITY_NONE,
    "E": serial.PARITY_EVEN,
    "O": serial.PARITY_ODD,
    "M": serial.PARITY_MARK,
    "S": serial.PARITY_SPACE,
}
BYTESIZES = (5, 6, 7, 8)
STOPBITS = (1, 1.5, 2)


class SerialTransport(ThreadedTransport):
    """An RS-232 style byte link; pyserial runs in the transport's own worker thread."""

    def __init__(
        self,
        url: str,
        *,
        instrument: str,
        timeout_s: float = 2.0,
        open_timeout_s: float | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        reconnect: ReconnectPolicy | Mapping[str, Any] | None = None,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        rtscts: bool = False,
    ) -> None:
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"baudrate must be a positive integer, got {baudrate!r}")
        if bytesize not in BYTESIZES:
            raise ValueError(f"bytesize must be one of {BYTESIZES}, got {bytesize!r}")
        if not isinstance(parity, str) or parity.upper() not in PARITIES:
            raise ValueError(f"parity must be one of {sorted(PARITIES)}, got {parity!r}")
        if stopbits not in STOPBITS:
            raise ValueError(f"stopbits must be one of {STOPBITS}, got {stopbits!r}")
        if not isinstance(rtscts, bool):
            raise ValueError(f"rtscts must be true or false, got {rtscts!r}")
        super().__init__(
            instrument=instrument,
            resource=url,
            timeout_s=timeout_s,
            open_timeout_s=open_timeout_s,
            max_reply_bytes=max_reply_bytes,
            reconnect=reconnect,
        )
        self._settings: dict[str, Any] = {
            "baudrate": baudrate,
            "bytesize": bytesize,
            "parity": PARITIES[parity.upper()],
            "stopbits": stopbits,
            "rtscts": rtscts,
        }
        self._port: serial.SerialBase | None = None

    def _open_blocking(self) -> None:
        try:
            self._port = serial.serial_for_url(
                self.resource,
                timeout=READ_SLICE_S,
                write_timeout=self.timeout_s,
                **self._settings,
            )
        except serial.SerialException as exc:
            # pyserial reports a missing device or a refused socket as SerialException.
            raise ConnectionError(str(exc)) from exc

    def _close_blocking(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (OSError, serial.SerialException):
                pass  # already broken: nothing left to release

    def _write_blocking(self, data: bytes) -> None:
        port = self._require_port()
        try:
            port.write(data)
        except serial.SerialTimeoutException as exc:
            raise TimeoutError(str(exc)) from exc
        except serial.SerialException as exc:
            raise ConnectionError(str(exc)) from exc

    def _read_slice(self, max_bytes: int, slice_s: float, stop_byte: int | None) -> bytes:
        port = self._require_port()
        try:
            # read(1) returns as soon as a byte arrives; a zero-timeout read then takes
            # whatever else is already there. read(max_bytes) would sit out the whole slice,
            # and in_waiting is only a 0/1 guess for socket:// URLs.
            port.timeout = slice_s
            first = port.read(1)
            if not first or max_bytes == 1:
                return bytes(first)
            port.timeout = 0
            return bytes(first) + bytes(port.read(max_bytes - 1))
        except serial.SerialException as exc:
            raise ConnectionError(str(exc)) from exc

    def _require_port(self) -> serial.SerialBase:
        if self._port is None:
            raise ConnectionResetError("serial port is not open")
        return self._port
