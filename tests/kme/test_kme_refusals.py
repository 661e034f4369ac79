"""Bad input gets the spec's error (400/401/503 with an Error object); nothing served twice."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

Files = Callable[[str], tuple[str, str, str]]


class Sae:
    """An SAE's HTTPS client (aiohttp, one kept-open connection) with its certificate."""

    def __init__(self, files: Files, name: str | None) -> None:
        ca = files("alice-sae")[2]
        context = ssl.create_default_context(cafile=ca)
        if name is not None:
            cert, key, _ = files(name)
            context.load_cert_chain(cert, key)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))

    async def ask(
        self, method: str, url: str, *, body: Any = None, raw: bytes | None = None, **params: str
    ) -> tuple[int, Any]:
        kw: dict[str, Any] = {"params": params}
        if raw is not None:
            kw["data"] = raw
            kw["headers"] = {"Content-Type": "application/json"}
        elif body is not None:
            kw["json"] = body
        async with self.session.request(method, url, **kw) as reply:
            return reply.status, await reply.json()

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def saes(client_files: Files) -> Any:
    made = {n: Sae(client_files, n) for n in ("alice-sae", "bob-sae", "carol-sae", "eve-sae")}
    yield made
    for sae in made.values():
        await sae.close()


def enc(pair: Any) -> str:
    return f"{pair.alice.url}/api/v1/keys/bob-sae/enc_keys"


def dec(pair: Any) -> str:
    return f"{pair.bob.url}/api/v1/keys/alice-sae/dec_keys"


def is_error(body: Any) -> bool:
    """The spec's Error object: a message string, details (when present) an array of objects."""
    details = body.get("details", [])
    return (
        isinstance(body.get("message"), str)
        and isinstance(details, list)
        and all(isinstance(d, dict) for d in details)
        and set(body) <= {"message", "details"}
    )


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{number: 1", "not JSON"),
        (b'"number"', "must be a JSON object"),
        (b'{"number": "2"}', "number must be an integer"),
        (b'{"number": true}', "number must be an integer"),
        (b'{"size": 256.0}', "size must be an integer"),
        (b'{"size": 255}', "multiple of 8"),
        (b'{"size": 32}', "outside min_key_size"),
        (b'{"number": 0}', "at least 1"),
        (b'{"number": 17}', "exceeds max_key_per_request"),
        (b'{"numbr": 1}', "unknown field"),
        (b'{"additional_slave_SAE_IDs": "carol-sae"}', "array of strings"),
        (b'{"additional_slave_SAE_IDs": ["carol-sae"]}', "max_SAE_ID_count"),
        (b'{"extension_optional": {"a": 1}}', "array of objects"),
    ],
)
async def test_bad_key_requests_get_400(pair: Any, saes: Any, raw: bytes, words: str) -> None:
    status, body = await saes["alice-sae"].ask("POST", enc(pair), raw=raw)
    assert status == 400 and is_error(body), body
    assert words in body["message"]
    # nothing was taken from the pool
    _, st = await saes["alice-sae"].ask("GET", f"{pair.alice.url}/api/v1/keys/bob-sae/status")
    assert st["stored_key_count"] == 31


async def test_bad_query_parameters_get_400(pair: Any, saes: Any) -> None:
    for params in ({"number": "two"}, {"size": "-8"}, {"size": "100"}, {"count": "1"}):
        status, body = await saes["alice-sae"].ask("GET", enc(pair), **params)
        assert status == 400 and is_error(body), (params, body)
    for params in ({"key_ID": "not-a-uuid"}, {}, {"key_ID": str(uuid.uuid4()), "x": "1"}):
        status, body = await saes["bob-sae"].ask("GET", dec(pair), **params)
        assert status == 400 and is_error(body), (params, body)


async def test_unsupported_mandatory_extension_is_named(pair: Any, saes: Any) -> None:
    ext = {"abc_route_type": "direct"}
    status, body = await saes["alice-sae"].ask(
        "POST", enc(pair), body={"extension_mandatory": [ext], "extension_optional": [{"x": 1}]}
    )
    assert status == 400 and is_error(body)
    assert body["details"] == [{"extension_mandatory_unsupported": ext}]
    # optional extensions alone are ignored
    status, body = await saes["alice-sae"].ask(
        "POST", enc(pair), body={"extension_optional": [{"x": 1}]}
    )
    assert status == 200 and len(body["keys"]) == 1


async def test_more_keys_than_the_pool_holds_is_503_and_takes_nothing(pair: Any, saes: Any) -> None:
    got = []
    for _ in range(2):
        status, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 15})
        assert status == 200
        got += body["keys"]
    status, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 2})
    assert status == 503 and is_error(body)
    assert "pool holds 1 keys" in body["message"]
    status, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 1})
    assert status == 200
    got += body["keys"]
    assert len({k["key"] for k in got}) == 31 == len({k["key_ID"] for k in got})
    status, body = await saes["alice-sae"].ask(
        "GET", f"{pair.alice.url}/api/v1/keys/bob-sae/status"
    )
    assert body["stored_key_count"] == 0


async def test_dec_keys_once_only_to_the_named_slave(pair: Any, saes: Any) -> None:
    _, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 2})
    ids = [k["key_ID"] for k in body["keys"]]
    one = {"key_IDs": [{"key_ID": ids[0]}]}
    # a third SAE of Bob's KME: authenticated, but the key is not reserved for it
    status, err = await saes["carol-sae"].ask("POST", dec(pair), body=one)
    assert status == 401 and is_error(err) and ids[0] in err["message"]
    # an SAE of no KME, with a certificate of the right CA
    status, err = await saes["eve-sae"].ask("POST", dec(pair), body=one)
    assert status == 401 and "not an SAE of kme-bob" in err["message"]
    # the master itself at the slave's KME
    status, err = await saes["alice-sae"].ask("POST", dec(pair), body=one)
    assert status == 401
    # wrong master named in the path
    status, err = await saes["bob-sae"].ask(
        "POST", f"{pair.bob.url}/api/v1/keys/carol-sae/dec_keys", body=one
    )
    assert status == 401 and "master_SAE_ID" in err["message"]
    # none of that consumed the reservation: the named slave gets it, once
    status, ok = await saes["bob-sae"].ask("POST", dec(pair), body=one)
    assert status == 200 and ok["keys"] == body["keys"][:1]
    status, err = await saes["bob-sae"].ask("POST", dec(pair), body=one)
    assert status == 400 and err["details"] == [{"key_ID": ids[0], "reason": "already delivered"}]
    # all or nothing: an unknown key_ID among good ones serves none of them
    unknown = str(uuid.uuid4())
    both = {"key_IDs": [{"key_ID": ids[1]}, {"key_ID": unknown}]}
    status, err = await saes["bob-sae"].ask("POST", dec(pair), body=both)
    assert status == 400 and err["details"] == [{"key_ID": unknown, "reason": "unknown"}]
    status, ok = await saes["bob-sae"].ask("GET", dec(pair), key_ID=ids[1])
    assert status == 200 and ok["keys"] == body["keys"][1:]
    # repeated key_ID in one request, and malformed Key IDs objects
    bads: list[dict[str, Any]] = [
        {"key_IDs": [{"key_ID": ids[1]}, {"key_ID": ids[1]}]},
        {"key_IDs": []},
        {"key_IDs": [ids[1]]},
        {"key_IDs": [{"key_ID": 7}]},
        {"key_ID": ids[1]},
    ]
    for bad in bads:
        status, err = await saes["bob-sae"].ask("POST", dec(pair), body=bad)
        assert status == 400 and is_error(err), bad


async def test_wrong_sae_at_enc_keys_and_status(pair: Any, saes: Any) -> None:
    status_url = f"{pair.alice.url}/api/v1/keys/bob-sae/status"
    for who, url in (
        ("eve-sae", status_url),  # certified, bound to no KME
        ("bob-sae", status_url),  # Bob's SAE at Alice's KME
        ("eve-sae", enc(pair)),
    ):
        status, body = await saes[who].ask("GET", url)
        assert status == 401 and is_error(body), (who, url)
    # unknown slave, and a slave on the same KME as the master
    for slave in ("nobody-sae", "alice-sae"):
        status, body = await saes["alice-sae"].ask(
            "GET", f"{pair.alice.url}/api/v1/keys/{slave}/enc_keys"
        )
        assert status == 401 and slave in body["message"]
    # an SAE cannot call the KME-to-KME routes
    status, body = await saes["alice-sae"].ask(
        "POST", f"{pair.bob.url}/peer/v1/reserve", body={"reservations": []}
    )
    assert status == 401


async def test_tls_without_client_certificate_is_refused(pair: Any, client_files: Files) -> None:
    anonymous = Sae(client_files, None)
    try:
        with pytest.raises(aiohttp.ClientError):
            await anonymous.ask("GET", f"{pair.alice.url}/api/v1/keys/bob-sae/status")
    finally:
        await anonymous.close()
    # plain HTTP to the TLS port gets nothing either
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientError):
            url = pair.alice.url.replace("https://", "http://")
            async with plain.get(f"{url}/api/v1/keys/bob-sae/status") as reply:
                await reply.read()


async def test_no_key_material_in_logs(
    pair: Any, saes: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 4, "size": 256})
    ids = [{"key_ID": k["key_ID"]} for k in body["keys"]]
    await saes["bob-sae"].ask("POST", dec(pair), body={"key_IDs": ids})
    await saes["bob-sae"].ask("POST", dec(pair), body={"key_IDs": ids})  # refused: repeat
    await saes["carol-sae"].ask("POST", dec(pair), body={"key_IDs": ids})
    assert "enc_keys: 4 key(s)" in caplog.text  # the log says what happened...
    for key in body["keys"]:
        data = base64.b64decode(key["key"])
        for form in (key["key"], data.hex(), data.hex().upper(), repr(data)[2:-1]):
            assert form not in caplog.text  # ...never with what was handed out


async def test_peer_kme_down_is_503_and_the_bytes_are_never_used(pair: Any, saes: Any) -> None:
    await pair.bob.server.close()
    status, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 1})
    assert status == 503 and "peer KME kme-bob unreachable" in body["message"]
    _, st = await saes["alice-sae"].ask("GET", f"{pair.alice.url}/api/v1/keys/bob-sae/status")
    assert st["stored_key_count"] == 30  # the key allocated for the failed call is gone


async def test_restart_never_serves_the_same_bytes_twice(kit: Any, client_files: Files) -> None:
    from labctl.kme.config import parse_kme_section

    config = parse_kme_section(kit.section(lease_bytes=64))
    stores = kit.stores()
    seen: set[str] = set()
    alice, bob = await kit.start(config, stores)
    a, b = Sae(client_files, "alice-sae"), Sae(client_files, "bob-sae")
    try:
        _, body = await a.ask(
            "POST", f"{alice.url}/api/v1/keys/bob-sae/enc_keys", body={"number": 3}
        )
        first = body["keys"]
        _, got = await b.ask(
            "GET", f"{bob.url}/api/v1/keys/alice-sae/dec_keys", key_ID=first[0]["key_ID"]
        )
        assert got["keys"] == first[:1]
        seen |= {k["key"] for k in first}
        await asyncio.gather(alice.close(), bob.close())
        alice, bob = await kit.start(config, stores)
        _, body = await a.ask(
            "POST", f"{alice.url}/api/v1/keys/bob-sae/enc_keys", body={"number": 3}
        )
        assert not seen & {k["key"] for k in body["keys"]}
        # the restart skipped the rest of the lease: 3 keys + 64 bytes = 5 keys of 32 bytes
        _, st = await a.ask("GET", f"{alice.url}/api/v1/keys/bob-sae/status")
        assert st["stored_key_count"] == 31 - 5 - 3
        # reserved before the restart: still served once; delivered before: never again
        url = f"{bob.url}/api/v1/keys/alice-sae/dec_keys"
        status, got = await b.ask("GET", url, key_ID=first[1]["key_ID"])
        assert status == 200 and got["keys"] == first[1:2]
        status, _ = await b.ask("GET", url, key_ID=first[0]["key_ID"])
        assert status == 400
    finally:
        await a.close()
        await b.close()
        await asyncio.gather(alice.close(), bob.close())


async def test_new_store_keys_join_the_pool_and_low_water_warns(
    pair: Any, saes: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    from labctl.qkd.secret import SecretBits
    from labctl.store.keystore import KeyStore

    status_url = f"{pair.alice.url}/api/v1/keys/bob-sae/status"
    caplog.set_level(logging.WARNING)
    _, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 15})
    _, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 15})
    assert "below its low-water mark: 1 keys of 256 bits left (< 2)" in caplog.text
    # the node keeps writing its store while the KMEs run: new keys join the pool
    bits = SecretBits.from_bytes(os.urandom(64), 512)
    for path in pair.stores:
        with KeyStore(path) as store:
            store.add(bits, key_id="0f0e0d0c-0b0a-4908-8706-050403020100")
    _, st = await saes["alice-sae"].ask("GET", status_url)
    assert st["stored_key_count"] == 1 + 2
    status, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 3})
    assert status == 200
    ids = [{"key_ID": k["key_ID"]} for k in body["keys"]]
    status, got = await saes["bob-sae"].ask("POST", dec(pair), body={"key_IDs": ids})
    assert status == 200 and got == body
    # 30 keys took bytes 0..960 of 1000; keys 0-1 = the 40 old bytes + 24 new, key 2 = new 24..56
    assert base64.b64decode(body["keys"][1]["key"])[8:] == bits.to_bytes()[:24]
    assert base64.b64decode(body["keys"][2]["key"]) == bits.to_bytes()[24:56]


async def test_the_peer_must_present_the_peer_kme_certificate(pair: Any, saes: Any) -> None:
    pair.alice.set_peer_url(pair.alice.url)  # Alice's KME answers in Bob's place
    status, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 1})
    assert status == 503 and "kme-bob" in body["message"] and "certificate" in body["message"]


async def test_odd_bodies_never_stop_the_kme(pair: Any, saes: Any) -> None:
    odd = [
        b"\xff\xfe\x00garbage",
        b"[" * 5000 + b"]" * 5000,
        b'{"number": 1e400}',
        b'{"number": 100000000000000000000000000000}',
        b'{"size": -8}',
        b'{"number": null, "size": null}',
        b"null",
        b"",
    ]
    for raw in odd:
        for url in (enc(pair), dec(pair)):
            who = "alice-sae" if url == enc(pair) else "bob-sae"
            status, body = await saes[who].ask("POST", url, raw=raw)
            assert status == 400 and is_error(body), (raw[:20], url, body)
    status, body = await saes["alice-sae"].ask(
        "POST", enc(pair), raw=b"{" + b" " * (2 << 20) + b"}"
    )
    assert status == 413 and is_error(body)
    status, body = await saes["alice-sae"].ask("PUT", enc(pair), body={})
    assert status == 405 and is_error(body)
    status, body = await saes["alice-sae"].ask("GET", f"{pair.alice.url}/api/v1/nothing")
    assert status == 404 and is_error(body)
    # still serving
    status, body = await saes["alice-sae"].ask("POST", enc(pair), body={"number": 1})
    assert status == 200 and len(body["keys"]) == 1
