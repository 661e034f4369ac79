"""Trusted-node relay A - B - C: three KMEs on loopback TLS, key stores of two links.

The stores here are filled with random keys, the same ids and bits at both ends of a link
(what the node pair leaves); tests/cli/test_cli_kme_network.py runs the same network with
stores written by the key generation pipeline of both links.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from labctl.interfaces.errors import ConfigError
from labctl.kme.certs import make_certs
from labctl.kme.network import NetworkConfig, parse_network
from labctl.kme.relay import RELAY_PATH, RelayMessage
from labctl.kme.service import NetworkKmeService
from labctl.kme.tls import client_context
from labctl.qkd.secret import SecretBits
from labctl.store.keystore import KeyStore

REPO = Path(__file__).resolve().parents[2]
SAES = ("sae-a", "sae-b", "sae-c", "sae-c2", "eve-sae")
KMES = ("kme-a", "kme-b", "kme-c")


@pytest.fixture(scope="module")
def net_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("net-certs")
    make_certs(out, kmes=list(KMES), saes=list(SAES))
    return out


def fill_link(folder: Path, link: str, n_keys: int = 6, n_bits: int = 2048) -> dict[str, Path]:
    ends = {"ab": ("a", "b"), "bc": ("b", "c")}[link]
    paths = {n: folder / link / f"keys-{n}.sqlite" for n in ends}
    keys = [
        (str(uuid.uuid4()), SecretBits.from_bytes(os.urandom(n_bits // 8), n_bits))
        for _ in range(n_keys)
    ]
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        with KeyStore(path) as store:
            for key_id, bits in keys:
                store.add(bits, key_id=key_id)
    return paths


def network_data(certs: Path, folder: Path, **extra: Any) -> dict[str, Any]:
    ab, bc = fill_link(folder, "ab"), fill_link(folder, "bc")
    return {
        "network": {
            "certs_dir": str(certs),
            "ledger_dir": str(folder / "ledgers"),
            "max_key_per_request": 8,
            "low_water_keys": 0,
            "nodes": {n: {"kme_id": f"kme-{n}", "listen": "127.0.0.1:0"} for n in ("a", "b", "c")},
            "links": [
                {
                    "id": "ab",
                    "nodes": ["a", "b"],
                    "allocator": "a",
                    "stores": {k: str(v) for k, v in ab.items()},
                },
                {
                    "id": "bc",
                    "nodes": ["b", "c"],
                    "allocator": "b",
                    "stores": {k: str(v) for k, v in bc.items()},
                },
            ],
            "saes": [
                {"sae_id": "sae-a", "node": "a"},
                {"sae_id": "sae-b", "node": "b"},
                {"sae_id": "sae-c", "node": "c"},
                {"sae_id": "sae-c2", "node": "c"},
            ],
            **extra,
        }
    }


@dataclass
class Net:
    config: NetworkConfig
    nodes: dict[str, NetworkKmeService]
    certs: Path

    def url(self, node: str) -> str:
        return self.nodes[node].url

    def ssl(self, name: str) -> ssl.SSLContext:
        return client_context(self.certs, name)


async def open_network(config: NetworkConfig) -> dict[str, NetworkKmeService]:
    nodes: dict[str, NetworkKmeService] = {}
    try:
        for name in ("a", "b", "c"):
            nodes[name] = await NetworkKmeService.open(config, name)
    except BaseException:
        for service in nodes.values():
            await service.close()
        raise
    for service in nodes.values():
        for end in service.ends:
            service.set_peer_url(end.neighbour, nodes[end.neighbour].url)
    return nodes


@pytest.fixture
async def net(tmp_path: Path, net_certs: Path) -> AsyncIterator[Net]:
    config = parse_network(network_data(net_certs, tmp_path))
    nodes = await open_network(config)
    try:
        yield Net(config, nodes, net_certs)
    finally:
        for service in nodes.values():
            await service.close()


async def ask(
    net: Net, sae: str, node: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        url = f"{net.url(node)}{path}"
        if body is None:
            reply = await session.get(url, ssl=net.ssl(sae))
        else:
            reply = await session.post(url, json=body, ssl=net.ssl(sae))
        async with reply:
            return reply.status, await reply.json(content_type=None)


def store_bytes(path: Path) -> bytes:
    with KeyStore(path) as store:
        return b"".join(store.get(key_id).to_bytes() for _, key_id, _ in store.sizes_after(0))


async def test_relayed_key_is_the_same_at_a_and_c_and_nobody_elses(net: Net) -> None:
    status, body = await ask(net, "sae-a", "a", "/api/v1/keys/sae-c/enc_keys?number=2&size=256")
    assert status == 200, body
    keys = body["keys"]
    assert len(keys) == 2
    ids = [k["key_ID"] for k in keys]
    status, got = await ask(
        net, "sae-c", "c", "/api/v1/keys/sae-a/dec_keys", {"key_IDs": [{"key_ID": i} for i in ids]}
    )
    assert status == 200, got
    assert got["keys"] == keys
    raw = [base64.b64decode(k["key"]) for k in keys]
    assert all(len(r) == 32 for r in raw)
    # C's store of B-C never holds the key: it came padded and was unpadded at C.
    bc_at_c = store_bytes(net.config.links[1].stores["c"])
    assert all(r not in bc_at_c for r in raw)
    # Once: a repeated dec_keys is refused, naming the reason.
    status, again = await ask(net, "sae-c", "c", f"/api/v1/keys/sae-a/dec_keys?key_ID={ids[0]}")
    assert status == 400
    assert again["details"] == [{"key_ID": ids[0], "reason": "already delivered"}]


async def test_no_other_sae_or_kme_gets_a_relayed_key(net: Net) -> None:
    status, body = await ask(net, "sae-a", "a", "/api/v1/keys/sae-c/enc_keys")
    assert status == 200
    key_id = body["keys"][0]["key_ID"]
    query = f"/api/v1/keys/sae-a/dec_keys?key_ID={key_id}"
    # Another SAE of C: reserved for sae-c only (401, nothing served).
    assert (await ask(net, "sae-c2", "c", query))[0] == 401
    # An SAE of B, where the key passed: B's ledgers hold no reservation of it.
    assert (await ask(net, "sae-b", "b", query))[0] == 400
    # A certified SAE bound to no KME; an SAE at the wrong KME.
    assert (await ask(net, "eve-sae", "c", query))[0] == 401
    assert (await ask(net, "sae-c", "a", query))[0] == 401
    # A KME certificate on the SAE routes.
    assert (await ask(net, "kme-b", "c", query))[0] == 401
    # sae-c itself still gets it, once.
    status, got = await ask(net, "sae-c", "c", query)
    assert status == 200 and got["keys"] == body["keys"]


async def test_relay_consumes_both_links_and_neither_kme_serves_the_bytes_again(
    net: Net,
) -> None:
    a, b, c = (net.nodes[n] for n in "abc")
    before = {(n, e.link_id): e.kme.stored_key_count() for n in "abc" for e in net.nodes[n].ends}
    status, body = await ask(net, "sae-a", "a", "/api/v1/keys/sae-c/enc_keys?number=4")
    assert status == 200
    relayed = {base64.b64decode(k["key"]) for k in body["keys"]}
    after = {(n, e.link_id): e.kme.stored_key_count() for n in "abc" for e in net.nodes[n].ends}
    assert before[("a", "ab")] - after[("a", "ab")] == 4
    assert before[("b", "ab")] - after[("b", "ab")] == 4
    # B-C: 4 pads and one 32-byte tag key (one 256-bit key's worth).
    assert before[("b", "bc")] - after[("b", "bc")] == 5
    assert before[("c", "bc")] - after[("c", "bc")] == 5
    # Keys of A-B served to sae-b at B afterwards, and of B-C to sae-c: never a relayed byte,
    # never the B-C bytes used as pads (their XOR would give the relayed keys away).
    served: list[bytes] = []
    for master, node, slave, _slave_node in (
        ("sae-a", "a", "sae-b", "b"),
        ("sae-b", "b", "sae-c", "c"),
    ):
        status, got = await ask(net, master, node, f"/api/v1/keys/{slave}/enc_keys?number=8")
        assert status == 200, got
        served += [base64.b64decode(k["key"]) for k in got["keys"]]
    ab_a = store_bytes(net.config.links[0].stores["a"])
    bc_b = store_bytes(net.config.links[1].stores["b"])
    relayed_offsets = {ab_a.find(r) for r in relayed}
    assert all(ab_a.find(s) not in relayed_offsets for s in served)
    assert all(s not in relayed for s in served)
    # Pads of B-C: the first 4 x 32 + 32 bytes of the B-C pool; served B-C keys start after.
    assert all(bc_b.find(s) >= 5 * 32 or bc_b.find(s) == -1 for s in served)
    assert a.ends[0].counters.by_role["origin"] == 4
    assert {e.link_id: e.counters.by_role["hop"] for e in b.ends} == {"ab": 4, "bc": 0}
    assert c.ends[0].counters.by_role["end"] == 4


async def test_a_tampered_pad_is_refused_at_c(net: Net) -> None:
    """B's message with one bit of the padded key flipped (sent with B's certificate)."""
    b_bc = next(e for e in net.nodes["b"].ends if e.link_id == "bc")
    sent: list[RelayMessage] = []
    real = b_bc.peer.relay

    async def tamper(message: RelayMessage) -> None:
        key = message.keys[0]
        assert key.pad is not None
        flipped = bytes([key.pad[0] ^ 1]) + key.pad[1:]
        bad = RelayMessage(
            message.master,
            message.slave,
            (type(key)(key.key_id, key.size_bits, key.segments, flipped),),
            message.tag_segments,
            message.tag,
        )
        sent.append(bad)
        await real(bad)

    b_bc.peer.relay = tamper  # type: ignore[method-assign]
    status, body = await ask(net, "sae-a", "a", "/api/v1/keys/sae-c/enc_keys")
    assert status == 503, body
    assert "fails authentication" in body["message"]
    assert len(sent) == 1
    assert net.nodes["c"].ends[0].ledger.open_reservations() == 0


async def test_relay_route_refuses_an_sae_that_is_not_a_neighbour_kme(net: Net) -> None:
    status, _body = await ask(
        net, "sae-a", "c", RELAY_PATH, {"master_SAE_ID": "sae-a", "slave_SAE_ID": "sae-c"}
    )
    assert status == 401


async def test_b_down_answers_503_and_wastes_the_material(net: Net) -> None:
    a_ab = net.nodes["a"].ends[0]
    a_ab.peer.base_url = "https://127.0.0.1:9"  # nothing listens there
    count = a_ab.kme.stored_key_count()
    status, _ = await ask(net, "sae-a", "a", "/api/v1/keys/sae-c/enc_keys")
    assert status == 503
    assert a_ab.kme.stored_key_count() == count - 1  # consumed at A, never handed out
    a_ab.peer.base_url = net.url("b")
    status, _body = await ask(net, "sae-a", "a", "/api/v1/keys/sae-c/enc_keys")
    assert status == 200


async def test_status_at_a_for_sae_c_names_c_as_target(net: Net) -> None:
    status, body = await ask(net, "sae-a", "a", "/api/v1/keys/sae-c/status")
    assert status == 200
    assert (body["source_KME_ID"], body["target_KME_ID"]) == ("kme-a", "kme-c")


async def test_relay_from_c_towards_a_is_refused_when_c_does_not_allocate(net: Net) -> None:
    status, body = await ask(net, "sae-c", "c", "/api/v1/keys/sae-a/enc_keys")
    assert status == 400
    assert "allocator" in body["message"]
    assert net.config.relay_gaps() == [
        "sae-c -> sae-a: c does not allocate on link bc",
        "sae-c2 -> sae-a: c does not allocate on link bc",
    ]


async def test_relayed_keys_survive_a_restart_of_c(net: Net) -> None:
    status, body = await ask(net, "sae-a", "a", "/api/v1/keys/sae-c/enc_keys")
    assert status == 200
    await net.nodes["c"].close()
    net.nodes["c"] = await NetworkKmeService.open(net.config, "c")
    net.nodes["b"].set_peer_url("c", net.nodes["c"].url)
    key_id = body["keys"][0]["key_ID"]
    status, got = await ask(net, "sae-c", "c", f"/api/v1/keys/sae-a/dec_keys?key_ID={key_id}")
    assert status == 200 and got["keys"] == body["keys"]


async def test_concurrent_relays_give_distinct_keys(net: Net) -> None:
    replies = await asyncio.gather(
        *(ask(net, "sae-a", "a", "/api/v1/keys/sae-c/enc_keys") for _ in range(8))
    )
    assert all(s == 200 for s, _ in replies)
    keys = [b["keys"][0] for _, b in replies]
    assert len({k["key"] for k in keys}) == 8
    body = {"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]}
    status, got = await ask(net, "sae-c", "c", "/api/v1/keys/sae-a/dec_keys", body)
    assert status == 200 and got["keys"] == keys


def test_network_file_errors_name_the_field(tmp_path: Path, net_certs: Path) -> None:
    data = network_data(net_certs, tmp_path)
    data["network"]["links"][1]["allocator"] = "a"
    with pytest.raises(ConfigError, match=r"network\.links\.1.*allocator: 'a' is not one of"):
        parse_network(data, file="net.yaml")
    data = network_data(net_certs, tmp_path / "2")
    data["network"]["saes"][2]["node"] = "d"
    with pytest.raises(ConfigError, match=r"network\.saes\.2\.node.*'d' is not one of"):
        parse_network(data, file="net.yaml")
    data = network_data(net_certs, tmp_path / "3")
    data["network"]["links"] = data["network"]["links"][:1]
    with pytest.raises(ConfigError, match=r"nodes \['c'\] are joined to no other"):
        parse_network(data, file="net.yaml")
    data = network_data(net_certs, tmp_path / "4")
    data["network"]["nodes"]["a"]["listen"] = "nowhere"
    with pytest.raises(ConfigError, match=r"network\.nodes\.a.*host:port"):
        parse_network(data, file="net.yaml")
    assert json.dumps(data)  # the data stayed plain


async def test_link_states_pool_levels_and_relays_reach_mqtt_as_documented(
    net: Net, tmp_path: Path
) -> None:
    from labctl.stream.mosquitto import Mosquitto
    from labctl.stream.publisher import MqttPublisher
    from labctl.stream.recorder import recording
    from labctl.stream.settings import MqttSettings
    from tests.stream.test_asyncapi_payloads import link_messages, load

    status, body = await ask(net, "sae-a", "a", "/api/v1/keys/sae-c/enc_keys?number=3")
    assert status == 200
    doc = load()
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    try:
        settings = MqttSettings.from_url(broker.url)
        async with recording(settings, "labctl/v1/net/#", client_id="kme-net-check") as rec:
            for name in "abc":
                async with MqttPublisher(
                    settings,
                    lab="net",
                    node=name,
                    outbox_dir=tmp_path / f"outbox-{name}",
                    owns_state=False,
                ) as pub:
                    net.nodes[name].publish_metrics(pub)
                    assert await pub.flush(10)
            # a: ab x3; b: ab x3, bc x3; c: bc x3 (status, key_pool, relay)
            assert await rec.wait_for(lambda: len(rec.messages) >= 12, 10), rec.messages
    finally:
        broker.stop()
    schemas = link_messages(doc)
    seen = {}
    for topic, payload in rec.messages:
        _, _, _, node, _, link_id, metric = topic.split("/")
        data = json.loads(payload)
        import jsonschema

        jsonschema.validate(data, schemas[metric]["payload"])
        seen[(node, link_id, metric)] = data
        for key in body["keys"]:  # no key, no key_ID on the control plane
            assert key["key"].encode() not in payload and key["key_ID"].encode() not in payload
    assert seen[("a", "ab", "relay")]["origin_keys_count"] == 3
    assert seen[("b", "ab", "relay")]["hop_keys_count"] == 3
    assert seen[("c", "bc", "relay")]["end_keys_count"] == 3
    assert seen[("c", "bc", "relay")]["relayed_bits"] == 768
    assert seen[("b", "bc", "status")]["status"] == "ACTIVE"
    pool_a = seen[("a", "ab", "key_pool")]
    assert pool_a["stored_key_count"] == net.nodes["a"].ends[0].kme.stored_key_count()


def test_network_file_error_names_file_and_line(tmp_path: Path) -> None:
    from labctl.kme.network import load_network

    path = tmp_path / "net.yaml"
    path.write_text(
        "network:\n"
        "  nodes:\n"
        '    a: {kme_id: kme-a, listen: "127.0.0.1:8551"}\n'
        '    b: {kme_id: kme-b, listen: "127.0.0.1:8552"}\n'
        "  links:\n"
        "    - id: ab\n"
        "      nodes: [a, b]\n"
        "      allocator: c\n"
        "      stores: {a: x.sqlite, b: y.sqlite}\n"
        "  saes:\n"
        "    - {sae_id: sae-a, node: a}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_network(path)
    assert str(err.value).startswith(f"{path}:8: network.links.0.allocator: 'c' is not one of")
    config = load_network(REPO / "configs" / "network-abc.yaml")
    assert [link.id for link in config.links] == ["ab", "bc"]
    assert config.route("a", "c") == ["a", "b", "c"]
    assert config.relay_gaps() == ["sae-c -> sae-a: c does not allocate on link bc"]


def test_relay_message_round_trip_and_tag() -> None:
    from labctl.kme.ledger import Segment
    from labctl.kme.relay import RelayError, RelayKey, sign, verify

    key = RelayKey("k-1", 256, (Segment("s", 0, 32, 0),), os.urandom(32))
    tag_key = os.urandom(32)
    message = sign(RelayMessage("sae-a", "sae-c", (key,), (Segment("s", 32, 32, 32),)), tag_key)
    again = RelayMessage.from_json(json.loads(json.dumps(message.to_json())))
    assert again == message
    verify(again, tag_key)
    assert key.pad is not None
    flipped = RelayKey("k-1", 256, key.segments, bytes([key.pad[0] ^ 0x80]) + key.pad[1:])
    forged = RelayMessage("sae-a", "sae-c", (flipped,), message.tag_segments, message.tag)
    with pytest.raises(RelayError, match="fails authentication"):
        verify(forged, tag_key)
    with pytest.raises(RelayError, match="fails authentication"):
        verify(message, os.urandom(32))  # another tag key
    with pytest.raises(RelayError, match="degenerate"):
        verify(message, bytes(16) + tag_key[16:])  # hash key 0
    untagged = dict(message.to_json())
    del untagged["tag"]
    with pytest.raises(RelayError, match="need tag"):
        RelayMessage.from_json(untagged)
    assert str(key.pad) not in repr(message) and str(message.tag) not in repr(message)
