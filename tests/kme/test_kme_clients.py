"""Clients nobody here wrote (requests, curl) get the same key at Alice and at Bob over mTLS."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import requests

from labctl.store.keystore import KeyStore

Files = Callable[[str], tuple[str, str, str]]


def session_for(files: Files, sae: str) -> requests.Session:
    cert, key, ca = files(sae)
    session = requests.Session()
    session.cert = (cert, key)
    session.verify = ca
    return session


async def call(session: requests.Session, method: str, url: str, **kw: Any) -> requests.Response:
    # Blocking client in a thread: the KMEs run on this test's event loop. verify is
    # given per call because requests lets REQUESTS_CA_BUNDLE override the session's.
    return await asyncio.to_thread(
        session.request, method, url, timeout=10, verify=session.verify, **kw
    )


async def curl(files: Files, sae: str, url: str, body: dict[str, Any] | None = None) -> Any:
    cert, key, ca = files(sae)
    cmd = ["curl", "-sS", "--fail-with-body", "--cert", cert, "--key", key, "--cacert", ca, url]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def test_status_object_has_the_spec_fields(pair: Any, client_files: Files) -> None:
    with session_for(client_files, "alice-sae") as s:
        reply = await call(s, "GET", f"{pair.alice.url}/api/v1/keys/bob-sae/status")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    status = reply.json()
    assert status == {
        "source_KME_ID": "kme-alice",
        "target_KME_ID": "kme-bob",
        "master_SAE_ID": "alice-sae",
        "slave_SAE_ID": "bob-sae",
        "key_size": 256,
        # 8 stored keys of 1001 bits: 125 whole bytes each = 1000 bytes = 31 keys of 32 bytes
        "stored_key_count": 31,
        "max_key_count": 100_000,
        "max_key_per_request": 16,
        "max_key_size": 8192,
        "min_key_size": 64,
        "max_SAE_ID_count": 0,
    }


async def test_requests_enc_at_alice_dec_at_bob_same_bytes(pair: Any, client_files: Files) -> None:
    with session_for(client_files, "alice-sae") as a, session_for(client_files, "bob-sae") as b:
        enc = await call(
            a,
            "POST",
            f"{pair.alice.url}/api/v1/keys/bob-sae/enc_keys",
            json={"number": 3, "size": 256},
        )
        assert enc.status_code == 200, enc.text
        keys = enc.json()["keys"]
        assert len(keys) == 3 and all(len(base64.b64decode(k["key"])) == 32 for k in keys)
        dec = await call(
            b,
            "POST",
            f"{pair.bob.url}/api/v1/keys/alice-sae/dec_keys",
            json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]},
        )
        assert dec.status_code == 200, dec.text
        assert dec.json()["keys"] == keys
        # GET forms of both calls
        one = (
            await call(
                a,
                "GET",
                f"{pair.alice.url}/api/v1/keys/bob-sae/enc_keys",
                params={"number": "1", "size": "512"},
            )
        ).json()["keys"][0]
        got = await call(
            b,
            "GET",
            f"{pair.bob.url}/api/v1/keys/alice-sae/dec_keys",
            params={"key_ID": one["key_ID"]},
        )
        assert got.json()["keys"] == [one]
    # The bytes are the store's, in store order: the first key is the first 32 bytes.
    with KeyStore(pair.stores[0]) as store:
        first = next(store.keys()).key.to_bytes()
    assert base64.b64decode(keys[0]["key"]) == first[:32]
    assert base64.b64decode(keys[1]["key"]) == first[32:64]


async def test_key_spanning_several_store_keys(pair: Any, client_files: Files) -> None:
    with session_for(client_files, "alice-sae") as a, session_for(client_files, "bob-sae") as b:
        enc = (
            await call(
                a, "POST", f"{pair.alice.url}/api/v1/keys/bob-sae/enc_keys", json={"size": 2048}
            )
        ).json()["keys"]
        dec = (
            await call(
                b,
                "POST",
                f"{pair.bob.url}/api/v1/keys/alice-sae/dec_keys",
                json={"key_IDs": [{"key_ID": enc[0]["key_ID"]}]},
            )
        ).json()["keys"]
    assert dec == enc
    with KeyStore(pair.stores[1]) as store:
        stream = b"".join(k.key.to_bytes()[:125] for k in store.keys())
    assert base64.b64decode(enc[0]["key"]) == stream[:256]  # 125 + 125 + 6 bytes of 3 keys


async def test_bob_as_master_alice_as_slave(pair: Any, client_files: Files) -> None:
    with session_for(client_files, "bob-sae") as b, session_for(client_files, "alice-sae") as a:
        first = (
            await call(a, "POST", f"{pair.alice.url}/api/v1/keys/bob-sae/enc_keys", json={})
        ).json()["keys"]
        enc = await call(
            b, "POST", f"{pair.bob.url}/api/v1/keys/alice-sae/enc_keys", json={"number": 2}
        )
        assert enc.status_code == 200, enc.text
        keys = enc.json()["keys"]
        dec = await call(
            a,
            "POST",
            f"{pair.alice.url}/api/v1/keys/bob-sae/dec_keys",
            json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]},
        )
        assert dec.json()["keys"] == keys
    served = {k["key"] for k in first + keys}
    assert len(served) == 3  # the allocator never hands the same bytes to both directions


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (.ci/run installs it)")
async def test_curl_enc_at_alice_dec_at_bob(pair: Any, client_files: Files) -> None:
    status = await curl(client_files, "alice-sae", f"{pair.alice.url}/api/v1/keys/bob-sae/status")
    assert status["stored_key_count"] == 31
    enc = await curl(
        client_files,
        "alice-sae",
        f"{pair.alice.url}/api/v1/keys/bob-sae/enc_keys?number=2&size=256",
    )
    ids = [k["key_ID"] for k in enc["keys"]]
    dec = await curl(
        client_files,
        "bob-sae",
        f"{pair.bob.url}/api/v1/keys/alice-sae/dec_keys",
        {"key_IDs": [{"key_ID": i} for i in ids]},
    )
    assert dec == enc
    # POST enc_keys with curl and the python client at the other end
    enc2 = await curl(
        client_files,
        "alice-sae",
        f"{pair.alice.url}/api/v1/keys/bob-sae/enc_keys",
        {"number": 1, "size": 128},
    )
    with session_for(client_files, "bob-sae") as b:
        dec2 = await call(
            b,
            "GET",
            f"{pair.bob.url}/api/v1/keys/alice-sae/dec_keys",
            params={"key_ID": enc2["keys"][0]["key_ID"]},
        )
    assert dec2.json() == enc2


async def test_concurrent_masters_get_distinct_keys_and_reservations_batch(
    pair: Any, client_files: Files
) -> None:
    import ssl

    import aiohttp

    def context(sae: str) -> ssl.SSLContext:
        cert, key, ca = client_files(sae)
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(cert, key)
        return ctx

    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context("alice-sae"))) as a,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context("bob-sae"))) as b,
    ):

        async def enc() -> dict[str, str]:
            url = f"{pair.alice.url}/api/v1/keys/bob-sae/enc_keys"
            async with a.post(url, json={"number": 2}) as reply:
                assert reply.status == 200, await reply.text()
                keys: list[dict[str, str]] = (await reply.json())["keys"]
                return {k["key_ID"]: k["key"] for k in keys}

        calls = pair.alice.peer.calls
        got: dict[str, str] = {}
        for part in await asyncio.gather(*(enc() for _ in range(12))):
            got.update(part)
        assert len(got) == 24 and len(set(got.values())) == 24
        assert pair.alice.peer.calls - calls <= 12  # reservations travel in batches
        url = f"{pair.bob.url}/api/v1/keys/alice-sae/dec_keys"
        body = {"key_IDs": [{"key_ID": k} for k in got]}
        body["key_IDs"] = body["key_IDs"][:16]
        async with b.post(url, json=body) as reply:
            dec = (await reply.json())["keys"]
        assert {k["key_ID"]: k["key"] for k in dec} == {k: got[k] for k in list(got)[:16]}
