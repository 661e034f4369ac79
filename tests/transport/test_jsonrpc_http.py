"""JSON-RPC over HTTP/1.1 against a scripted loopback server: the exact request bytes, reply
framings (Content-Length, chunked), polite and idle closes, and every failure typed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest

from labctl.interfaces.errors import ConnectionLost, InstrumentTimeout, ProtocolError
from labctl.transport.jsonrpc_http import JsonRpcError, JsonRpcHttpTransport

Reply = Callable[[dict[str, object]], bytes | tuple[float, bytes] | None]


class Scripted:
    """An HTTP peer: records every raw request and answers with ``reply(request_json)``."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                answer = self.reply(json.loads(body))
                if isinstance(answer, tuple):  # (delay, reply): a slow device
                    await asyncio.sleep(answer[0])
                    answer = answer[1]
                if answer is None:
                    await reader.read()  # silent until the client gives up and closes
                    return
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


def http(body: bytes, *, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def result(value: object) -> Reply:
    return lambda req: http(
        json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": value}).encode()
    )


@pytest.fixture
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[Scripted]:
    scripted = Scripted(request.param)
    scripted.server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    yield scripted
    scripted.server.close()


async def opened(peer: Scripted, timeout_s: float = 1.0) -> JsonRpcHttpTransport:
    link = JsonRpcHttpTransport("127.0.0.1", peer.port, instrument="ps", timeout_s=timeout_s)
    await link.open()
    return link


@pytest.mark.parametrize("peer", [result("00:26:32:f0:4c:7a")], indirect=True)
async def test_exact_request_and_keep_alive(peer: Scripted) -> None:
    link = await opened(peer)
    assert await link.call("getSerial") == "00:26:32:f0:4c:7a"
    assert await link.call("setTrigger", [1, 0]) == "00:26:32:f0:4c:7a"
    await link.close()
    body = b'{"jsonrpc":"2.0","id":1,"method":"getSerial","params":[]}'
    assert peer.requests[0] == (
        b"POST /json-rpc HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{peer.port}\r\n".encode()
        + b"Content-Type: application/json\r\nAccept: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + b"Connection: keep-alive\r\n\r\n"
        + body
    )
    assert peer.requests[1].endswith(b'"id":2,"method":"setTrigger","params":[1,0]}')
    assert peer.connections == 1


def chunked(req: dict[str, object]) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": [1, 2, 3]}).encode()
    half = len(body) // 2
    chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        half,
        body[:half],
        len(body) - half,
        body[half:],
    )
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks


@pytest.mark.parametrize("peer", [chunked], indirect=True)
async def test_chunked_replies(peer: Scripted) -> None:
    link = await opened(peer)
    assert await link.call("getData") == [1, 2, 3]
    await link.close()


def polite_close(req: dict[str, object]) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": True}).encode()
    return http(body, extra="Connection: close\r\n")


@pytest.mark.parametrize("peer", [polite_close], indirect=True)
async def test_connection_close_reopens_for_the_next_call(peer: Scripted) -> None:
    link = await opened(peer)
    assert await link.call("isStreaming") is True
    assert await link.call("isStreaming") is True
    await link.close()
    assert peer.connections == 2


def by_method(req: dict[str, object]) -> bytes | None:
    method = req["method"]
    if method == "silent":
        return None
    if method == "wrongId":
        return http(b'{"jsonrpc":"2.0","id":999,"result":0}')
    if method == "notJson":
        return http(b"<html>oops</html>")
    if method == "error":
        return http(
            b'{"jsonrpc":"2.0","id":%d,"error":{"code":-32601,"message":"Method not found"}}'
            % req["id"]
        )
    if method == "noLength":
        return b"HTTP/1.1 200 OK\r\n\r\n{}"
    return result("ok")(req)


@pytest.mark.parametrize("peer", [by_method], indirect=True)
async def test_failures_are_typed_and_the_link_recovers(peer: Scripted) -> None:
    link = await opened(peer, timeout_s=0.3)
    with pytest.raises(JsonRpcError, match=r"ps \[error\]: .*-32601: Method not found"):
        await link.call("error")
    with pytest.raises(ProtocolError, match=r"ps \[wrongId\].*does not match"):
        await link.call("wrongId")
    assert await link.call("fine") == "ok"
    with pytest.raises(ProtocolError, match="not JSON"):
        await link.call("notJson")
    with pytest.raises(ProtocolError, match="Content-Length"):
        await link.call("noLength")
    with pytest.raises(InstrumentTimeout, match=r"ps \[silent\]"):
        await link.call("silent")
    assert await link.call("fine") == "ok"  # a fresh connection after each failure
    await link.close()
    with pytest.raises(ConnectionLost, match=r"ps \[fine\]"):
        await link.call("fine")


@pytest.mark.parametrize("peer", [result(0)], indirect=True)
async def test_peer_gone_is_connection_lost(peer: Scripted) -> None:
    link = await opened(peer)
    assert peer.server is not None
    peer.server.close()
    await peer.server.wait_closed()
    await link.close()
    with pytest.raises(ConnectionLost, match="could not open"):
        await link.open()


async def test_large_bodies_go_out_in_slices() -> None:
    received: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        received.append(len(body))
        req = json.loads(body)
        writer.write(http(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": 0}).encode()))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    link = JsonRpcHttpTransport("127.0.0.1", port, instrument="ps", timeout_s=2.0)
    await link.open()
    payload = "A" * (3 << 20)
    assert await link.call("stream", [payload, -1, [0, 0, 0, 0]]) == 0
    assert received[0] > 3 << 20
    assert link.bytes_sent > 3 << 20
    await link.close()
    server.close()


def late_then_right(req: dict[str, object]) -> bytes | tuple[float, bytes]:
    request_id = int(str(req["id"]))
    if req["method"] == "slow":
        return 0.3, result("slow")(req)
    if req["method"] == "afterLate":  # a late reply to the call before, then this one's
        late = {"jsonrpc": "2.0", "id": request_id - 1, "result": "late"}
        return http(json.dumps(late).encode()) + result("right")(req)
    return result("fine")(req)


@pytest.mark.parametrize("peer", [late_then_right], indirect=True)
async def test_a_call_given_up_on_does_not_answer_the_next(peer: Scripted) -> None:
    link = await opened(peer, timeout_s=2.0)
    # A supervisor's deadline cancels the call while the device is still working on it.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(link.call("slow"), 0.05)
    assert await link.call("fine") == "fine"  # not "slow": a fresh connection
    await asyncio.sleep(0.4)  # the old connection's late reply went nowhere
    assert await link.call("fine") == "fine"
    # A late reply that does arrive on the link before this call's is skipped.
    assert await link.call("afterLate") == "right"
    assert await link.call("fine") == "fine"
    await link.close()
