"""The Pulse Streamer 8/2's wire format, as its twin (sims/wire/pulsestreamer.py) serves it.

Sequence steps (``<IBhh``: duration ns, digital mask, analog 0, analog 1), the limits of the
device's memory, the binary upload protocol's headers and commands, HTTP/1.1 framing,
JSON-RPC 2.0 error codes and positional parameters, and :func:`decode_pattern`, which
reads a pattern back from a sequence encoded the way the driver encodes one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.interfaces.pattern import PulsePattern

log = logging.getLogger("sims.wire")

STEP_DTYPE = np.dtype([("ticks", "<u4"), ("digi", "u1"), ("ao0", "<i2"), ("ao1", "<i2")])
MEMORY_STEPS = 2_000_000
MAX_HEADER_BYTES = 16384
MAX_BODY_BYTES = 64 << 20  # a full 2e6-step sequence is ~24 MB of base64
MAX_DECODED_PULSES = 1 << 27
BINARY_MAGIC = 0x53504953
BINARY_HEADER = struct.Struct("<4I2Q")
STREAM_HEADER = struct.Struct("<qQ2h4BQ")
UPLOAD_HEADER = struct.Struct("<qQ2h8BI")
COMMAND_STREAM = 0x0
COMMAND_UPLOAD = 0x100
BINARY_ERROR = 1
HTTP_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
}
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
DEVICE_ERROR = -32000


@dataclass(frozen=True, slots=True)
class WireChannels:
    """How patterns sit on the outputs (the driver's mapping, configured the same way)."""

    basis_channel: int = 0
    bit_channel: int = 1
    clock_channel: int = 2
    frame_channel: int = 3
    intensity_levels_v: tuple[float, ...] = (0.8, 0.3, 0.0)

    def codes(self) -> dict[int, int]:
        """Analog-0 code -> intensity class."""
        return {round(0x7FFF * v): k for k, v in enumerate(self.intensity_levels_v)}


class RpcFault(Exception):
    """A JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_pattern(
    steps: npt.NDArray[np.void], channels: WireChannels, name: str
) -> tuple[PulsePattern | None, int | None, int | None]:
    """(pattern, period_ns, marker divider) of a pattern sequence, or (None, ...) if it is
    not one (logged, naming the device ``name``)."""
    ticks = steps["ticks"].astype(np.int64)
    digi = steps["digi"]
    frame_bit = np.uint8(1 << channels.frame_channel)
    period_ns = int(ticks[0])
    if period_ns == 0 or not digi[0] & frame_bit:
        log.warning("%s: sequence does not start with a frame-marked pulse: plays nothing", name)
        return None, None, None
    if np.any(ticks % period_ns):
        log.warning("%s: step durations are not whole pulse periods: plays nothing", name)
        return None, None, None
    counts = ticks // period_ns
    total = int(counts.sum())
    if total > MAX_DECODED_PULSES:
        raise RpcFault(DEVICE_ERROR, f"sequence of {total} pulses is too long to simulate")
    codes = steps["ao0"]
    lookup = channels.codes()
    unknown = {int(c) for c in np.unique(codes)} - set(lookup)
    if unknown:
        log.warning("%s: analog-0 levels match no intensity class: plays nothing", name)
        return None, None, None
    table = np.zeros(1 << 16, dtype=np.uint8)
    for code, klass in lookup.items():
        table[code & 0xFFFF] = klass
    mask = np.repeat(digi, counts)
    intensity = table[np.repeat(codes.view(np.uint16), counts)]
    basis = ((mask >> np.uint8(channels.basis_channel)) & 1).astype(np.uint8)
    bit = ((mask >> np.uint8(channels.bit_channel)) & 1).astype(np.uint8)
    frames = np.flatnonzero(mask & frame_bit)
    if frames.size != 1:
        log.warning("%s: %d frame markers in one sequence: plays nothing", name, frames.size)
        return None, None, None
    markers = np.flatnonzero(mask & np.uint8(1 << channels.clock_channel))
    divider: int | None = None
    if markers.size >= 2:
        gaps = np.diff(markers)
        divider = int(gaps[0])
        if np.any(gaps != divider):
            log.warning("%s: clock markers are not evenly spaced", name)
    return PulsePattern(intensity, basis, bit), period_ns, divider


@dataclass(frozen=True, slots=True)
class Param:
    """One positional JSON-RPC parameter: its JSON type, optional or not."""

    kind: type
    optional: bool = False


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """The request line and the headers the server acts on."""

    method: str
    path: str
    length: int | None
    close: bool


def bind_params(spec: Sequence[Param], params: list[Any]) -> list[Any]:
    required = sum(1 for p in spec if not p.optional)
    if not required <= len(params) <= len(spec):
        raise RpcFault(INVALID_PARAMS, f"Invalid params: expected {required}..{len(spec)} params")
    args: list[Any] = []
    for param, value in zip(spec, params, strict=False):
        if param.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if param.kind is int and isinstance(value, bool):
            raise RpcFault(INVALID_PARAMS, "Invalid params: expected an integer")
        if not isinstance(value, param.kind):
            raise RpcFault(INVALID_PARAMS, f"Invalid params: expected {param.kind.__name__}")
        args.append(value)
    return args


def output_state(state: list[Any]) -> list[int]:
    """``[0, mask, ao0, ao1]`` (the vendor client's form), checked."""
    if len(state) != 4 or any(isinstance(v, bool) or not isinstance(v, int) for v in state):
        raise RpcFault(INVALID_PARAMS, "Invalid params: an output state is [ticks, mask, ao0, ao1]")
    _, mask, ao0, ao1 = state
    if not 0 <= mask <= 0xFF or not all(-0x8000 <= a <= 0x7FFF for a in (ao0, ao1)):
        raise RpcFault(INVALID_PARAMS, "Invalid params: output state out of range")
    return [int(v) for v in state]


def decode_steps(encoded: str) -> npt.NDArray[np.void]:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RpcFault(INVALID_PARAMS, "Invalid params: sequence is not base64") from None
    if not raw or len(raw) % STEP_DTYPE.itemsize:
        raise RpcFault(
            INVALID_PARAMS,
            f"Invalid params: sequence of {len(raw)} bytes is not whole 9-byte steps",
        )
    steps = np.frombuffer(raw, dtype=STEP_DTYPE)
    if steps.size > MEMORY_STEPS:
        raise RpcFault(
            DEVICE_ERROR, f"sequence of {steps.size} steps exceeds the {MEMORY_STEPS}-step memory"
        )
    return steps


def parse_head(head: bytes) -> HttpRequest | tuple[int, str]:
    if len(head) > MAX_HEADER_BYTES:
        return 431, "header too large"
    try:
        text = head.decode("iso-8859-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return 400, "bad header"
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return 400, "bad request line"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return 400, "bad header line"
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return 411, "chunked bodies are not served"
    length: int | None = None
    if "content-length" in headers:
        if not headers["content-length"].isdigit():
            return 400, "bad Content-Length"
        length = int(headers["content-length"])
    connection = headers.get("connection", "").lower()
    close = connection == "close" or (parts[2] == "HTTP/1.0" and connection != "keep-alive")
    return HttpRequest(parts[0], parts[1], length, close)


async def respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, *, close: bool, json_body: bool = False
) -> None:
    content_type = "application/json" if json_body else "text/plain"
    head = (
        f"HTTP/1.1 {status} {HTTP_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    ).encode("ascii")
    writer.write(head + body)
    await writer.drain()


def rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def error_body(request_id: Any, code: int, message: str) -> bytes:
    return dump_json(rpc_error(request_id, code, message))


def dump_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")
