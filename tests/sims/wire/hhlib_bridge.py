"""HHLib's C calls carried out by the HydraHarp bridge, for clients built on ctypes.

Programs drive a HydraHarp through PicoQuant's HHLib (``libhh400.so`` / ``hhlib64.dll``),
calling ``HH_<name>(devidx, inputs..., outputs...)`` with ctypes output parameters
(``c_int``, ``c_double``, string buffers) and ``HH_ReadFiFo(devidx, buffer, count,
n_actual)``. ``BridgeHHLib`` offers the same calls: inputs go to the bridge's control
socket as one JSON line (drivers/picoquant/hydraharp.py), the reply's ``values`` fill the
output parameters in order, ``HH_ReadFiFo`` copies records from the bridge's ZMQ stream.
Every call returns HHLib's code (0, or the negative error the bridge answered).
"""

from __future__ import annotations

import ctypes
import json
import socket
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

FIFO_WAIT_MS = 5  # HH_ReadFiFo returns after ~1 ms without data; a few ms here


class BridgeHHLib:
    """``HH_*`` functions over the bridge (blocking; one caller at a time, as HHLib)."""

    def __init__(self, control: str, stream: str, timeout_s: float = 5.0) -> None:
        host, port = control.rsplit(":", 1)
        self._control = socket.create_connection((host, int(port)), timeout=timeout_s)
        self._lines = self._control.makefile("rb")
        self._stream_address = stream
        self._stream: zmq.Socket[bytes] | None = None
        self._pending = np.empty(0, dtype="<u4")
        self.calls: list[str] = []  # names of the calls made, in order
        self.fifo_records = 0  # records handed out by HH_ReadFiFo

    def close(self) -> None:
        """Close the control connection and the stream."""
        self._lines.close()
        self._control.close()
        if self._stream is not None:
            self._stream.close(linger=0)

    def __getattr__(self, name: str) -> Callable[..., int]:
        if not name.startswith("HH_"):
            raise AttributeError(name)
        if name == "HH_ReadFiFo":
            return self._read_fifo

        def call(*args: Any) -> int:
            self.calls.append(name)
            inputs = [a for a in args if not isinstance(a, ctypes._SimpleCData | ctypes.Array)]
            outputs = [a for a in args if isinstance(a, ctypes._SimpleCData | ctypes.Array)]
            request = {"call": name, "args": inputs}
            self._control.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(self._lines.readline())
            if reply["ret"] != 0:
                return int(reply["ret"])
            for out, value in zip(outputs, reply["values"], strict=False):
                if isinstance(out, ctypes.Array):
                    out.value = str(value).encode()
                else:
                    out.value = value
            return 0

        return call

    def _read_fifo(self, devidx: int, buffer: Any, count: int, n_actual: Any) -> int:
        if self._stream is None:  # made in the thread that reads the FiFo
            self._stream = zmq.Context.instance().socket(zmq.PULL)
            self._stream.setsockopt(zmq.LINGER, 0)
            self._stream.connect(self._stream_address)
        if self._pending.size == 0 and self._stream.poll(FIFO_WAIT_MS):
            self._pending = np.frombuffer(self._stream.recv(), dtype="<u4")
        n = min(int(count), int(self._pending.size))
        ctypes.memmove(buffer, self._pending[:n].ctypes.data, 4 * n)
        self._pending = self._pending[n:]
        n_actual.value = n
        self.fifo_records += n
        return 0
