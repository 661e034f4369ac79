"""A network of trusted nodes: one KME per node over the key of all its QKD links.

The network file (``configs/network-abc.yaml``) names the nodes (KME ID, listen address),
the links (two nodes, the allocator, each end's key store) and the SAEs (their node)::

    network:
      certs_dir: ../runs/net-certs        # labctl kme certs ... --kme kme-a --kme kme-b ...
      ledger_dir: ../runs/net-ledgers     # one ledger per node and link
      key_size_bits: 256                  # and every other setting of the kme: section
      nodes:
        a: {kme_id: kme-a, listen: "127.0.0.1:8551"}
        b: {kme_id: kme-b, listen: "127.0.0.1:8552"}
        c: {kme_id: kme-c, listen: "127.0.0.1:8553"}
      links:
        - id: ab
          nodes: [a, b]
          allocator: a
          stores: {a: ab/keys-alice.sqlite, b: ab/keys-bob.sqlite}
        - {id: bc, nodes: [b, c], allocator: b, stores: {b: ..., c: ...}}
      saes:
        - {sae_id: sae-a, node: a}
        - {sae_id: sae-c, node: c}

Routes are the paths of fewest hops (ties: the link listed first). A node's KME serves its
SAEs on one address: a key for an SAE of the neighbour is a key of their link (as in
:mod:`labctl.kme.engine`), a key for an SAE further away is relayed (:mod:`labctl.kme.relay`).
A relay starts at the master SAE's node and needs each node on the way to be the allocator
of the link it sends over (a network file whose routes cannot relay says so per pair of SAEs
in :meth:`NetworkConfig.relay_gaps`; enc_keys for such a pair answers 400).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import deque
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labctl.interfaces.errors import ConfigError
from labctl.kme.config import KmeConfig, KmeNode, NodeName, SaeBinding
from labctl.kme.engine import Caller, Kme
from labctl.kme.errors import unauthorized
from labctl.kme.ledger import Reservation
from labctl.kme.messages import KeyRequest, Limits
from labctl.kme.relay import RelayMessage
from labctl.station.yaml_lines import LineMap, read_yaml

log = logging.getLogger(__name__)

_SETTINGS = (
    "key_size_bits",
    "min_key_size_bits",
    "max_key_size_bits",
    "max_key_per_request",
    "max_key_count",
    "low_water_keys",
    "lease_bytes",
    "peer_timeout_s",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Link(_Strict):
    """A QKD link: its two nodes, which one picks key material, each end's key store."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")]
    nodes: Annotated[list[NodeName], Field(min_length=2, max_length=2)]
    allocator: NodeName
    stores: dict[NodeName, Annotated[Path, Field(strict=False)]] = Field(
        description="each end's key store (relative to the network file)"
    )

    @model_validator(mode="after")
    def _ends(self) -> Link:
        if self.nodes[0] == self.nodes[1]:
            raise ValueError(f"nodes: a link joins two different nodes, got {self.nodes}")
        if self.allocator not in self.nodes:
            raise ValueError(f"allocator: '{self.allocator}' is not one of {self.nodes}")
        if set(self.stores) != set(self.nodes):
            raise ValueError(
                f"stores: need one store per node {self.nodes}, got {sorted(self.stores)}"
            )
        return self

    def other(self, node: str) -> str:
        """The other end of the link."""
        return self.nodes[1] if node == self.nodes[0] else self.nodes[0]


class NetworkConfig(_Strict):
    """The validated ``network:`` section (see the module docstring)."""

    lab: Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")] = Field(
        default="qkd-network", description="lab name of the MQTT topics (labctl/v1/{lab}/{node})"
    )
    certs_dir: Path = Field(default=Path("kme-certs"), strict=False)
    ledger_dir: Path = Field(default=Path("kme-ledgers"), strict=False)
    key_size_bits: Annotated[int, Field(gt=0)] = 256
    min_key_size_bits: Annotated[int, Field(gt=0)] = 64
    max_key_size_bits: Annotated[int, Field(gt=0)] = 8192
    max_key_per_request: Annotated[int, Field(gt=0, le=100_000)] = 128
    max_key_count: Annotated[int, Field(gt=0)] = 100_000
    low_water_keys: Annotated[int, Field(ge=0)] = 100
    lease_bytes: Annotated[int, Field(ge=0)] = 1024
    peer_timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    nodes: Annotated[dict[NodeName, KmeNode], Field(min_length=2)]
    links: Annotated[list[Link], Field(min_length=1)]
    saes: Annotated[list[SaeBinding], Field(min_length=1)]

    @model_validator(mode="after")
    def _consistent(self) -> NetworkConfig:
        kme_ids = [n.kme_id for n in self.nodes.values()]
        if len(set(kme_ids)) != len(kme_ids):
            raise ValueError(f"nodes: every node needs its own kme_id, got {kme_ids}")
        seen_links: set[frozenset[str]] = set()
        for i, link in enumerate(self.links):
            for node in link.nodes:
                if node not in self.nodes:
                    raise ValueError(
                        f"links.{i}.nodes: '{node}' is not one of {sorted(self.nodes)}"
                    )
            pair = frozenset(link.nodes)
            if pair in seen_links or link.id in {x.id for x in self.links[:i]}:
                raise ValueError(f"links.{i}: link '{link.id}' between {link.nodes} appears twice")
            seen_links.add(pair)
        names: set[str] = set(kme_ids)
        for i, sae in enumerate(self.saes):
            if sae.node not in self.nodes:
                raise ValueError(f"saes.{i}.node: '{sae.node}' is not one of {sorted(self.nodes)}")
            if sae.sae_id in {s.sae_id for s in self.saes[:i]} or sae.common_name in names:
                raise ValueError(f"saes.{i}.sae_id: '{sae.sae_id}' (or its CN) appears twice")
            names.add(sae.common_name)
        unreached = (
            set(self.nodes) - set(self.next_hops(next(iter(self.nodes)))) - {next(iter(self.nodes))}
        )
        if unreached:
            raise ValueError(f"links: nodes {sorted(unreached)} are joined to no other by links")
        # A per-link kme: section is built from these settings: check them the same way.
        for link in self.links:
            self.link_config(link)
        return self

    def links_of(self, node: str) -> list[Link]:
        """The links with an end at ``node``."""
        return [link for link in self.links if node in link.nodes]

    def next_hops(self, node: str) -> dict[str, str]:
        """destination node -> neighbour of ``node`` on a path of fewest hops to it."""
        first: dict[str, str] = {}
        queue = deque([node])
        seen = {node}
        while queue:
            here = queue.popleft()
            for link in self.links_of(here):
                there = link.other(here)
                if there not in seen:
                    seen.add(there)
                    first[there] = there if here == node else first[here]
                    queue.append(there)
        return first

    def route(self, source: str, destination: str) -> list[str]:
        """The nodes from ``source`` to ``destination``, both included."""
        path = [source]
        while path[-1] != destination:
            path.append(self.next_hops(path[-1])[destination])
        return path

    def link_between(self, a: str, b: str) -> Link:
        """The link joining two neighbours."""
        return next(x for x in self.links if set(x.nodes) == {a, b})

    def relay_gaps(self) -> list[str]:
        """Pairs of SAEs whose route cannot relay (a sender that is not its link's allocator)."""
        gaps = []
        for master in self.saes:
            for slave in self.saes:
                path = self.route(master.node, slave.node)
                if len(path) < 3:
                    continue
                for here, there in itertools.pairwise(path):
                    link = self.link_between(here, there)
                    if link.allocator != here:
                        gaps.append(
                            f"{master.sae_id} -> {slave.sae_id}: {here} does not allocate on "
                            f"link {link.id}"
                        )
                        break
        return gaps

    def link_config(self, link: Link) -> KmeConfig:
        """The two-node ``kme:`` section of one link (its ledger named after the link)."""
        data: dict[str, Any] = {name: getattr(self, name) for name in _SETTINGS}
        return KmeConfig.model_validate(
            {
                **data,
                "certs_dir": self.certs_dir,
                "ledger": self.ledger_dir / f"kme-ledger-{link.id}.sqlite",
                "allocator": link.allocator,
                "nodes": {n: self.nodes[n] for n in link.nodes},
                "saes": [s for s in self.saes if s.node in link.nodes],
            },
            strict=False,
        )


def parse_network(data: Any, *, file: str | None = None, lines: LineMap | None = None,
                  base: Path | None = None) -> NetworkConfig:  # fmt: skip
    """Validate a network file's data; ConfigError naming file, line and field."""
    section = data.get("network") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(
            "a network file has a network: mapping with nodes, links and saes",
            file=file,
            field="network",
        )
    try:
        config = NetworkConfig.model_validate(section)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc: list[str | int] = list(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        named = re.match(r"^([a-z_]+(?:\.[a-z0-9_]+)*)(?::|\b)\s*", message)
        if named is not None and message.split(":")[0] == named[1]:
            loc = [*loc, *[int(p) if p.isdigit() else p for p in named[1].split(".")]]
            message = message[named.end() :]
        path = ("network", *loc)
        line = None if lines is None else lines.line_of(path)
        raise ConfigError(
            message, file=file, line=line, field=".".join(str(p) for p in path)
        ) from None
    root = base if base is not None else Path.cwd()

    def anchor(path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() else (root / path).resolve()

    links = [
        link.model_copy(update={"stores": {n: anchor(p) for n, p in link.stores.items()}})
        for link in config.links
    ]
    return config.model_copy(
        update={
            "certs_dir": anchor(config.certs_dir),
            "ledger_dir": anchor(config.ledger_dir),
            "links": links,
        }
    )


def load_network(path: str | Path) -> NetworkConfig:
    """Read and validate a network file."""
    data, lines = read_yaml(path)
    return parse_network(data, file=str(path), lines=lines, base=Path(path).resolve().parent)


class NodeKme:
    """One node's KME over all its links: routes each call to the link towards the other SAE.

    Implements what the server asks of a KME (:class:`labctl.kme.server.KmeApi`).
    """

    def __init__(self, config: NetworkConfig, node: str) -> None:
        self.config = config
        self.node = node
        self.kme_id = config.nodes[node].kme_id
        self.hops = config.next_hops(node)
        self.engines: dict[str, Kme] = {}  # neighbour node -> the KME of that link
        self._peer_by_cn = {config.nodes[n].kme_id: n for n in self.hops.values()}
        self._sae_node = {s.sae_id: s.node for s in config.saes}
        self._local_cns = {s.common_name: s.sae_id for s in config.saes if s.node == node}

    def add_link(self, neighbour: str, engine: Kme) -> None:
        self.engines[neighbour] = engine

    def remote_saes(self, neighbour: str) -> dict[str, str]:
        """SAEs (sae_id -> node) whose route from here goes through ``neighbour``."""
        return {
            s.sae_id: s.node
            for s in self.config.saes
            if s.node != self.node and self.hops.get(s.node) == neighbour
        }

    def kme_ids(self) -> dict[str, str]:
        return {n: entry.kme_id for n, entry in self.config.nodes.items()}

    def forward(self, destination: str) -> Kme | None:
        """This node's KME of the next link towards ``destination``."""
        hop = self.hops.get(destination)
        return None if hop is None else self.engines.get(hop)

    def forward_to_sae(self, sae_id: str) -> Kme | None:
        """This node's KME of the next link towards the node of ``sae_id``."""
        node = self._sae_node.get(sae_id)
        return None if node is None or node == self.node else self.forward(node)

    @property
    def limits(self) -> Limits:
        return next(iter(self.engines.values())).limits

    def identify(self, common_name: str | None) -> Caller:
        if common_name is None:
            raise unauthorized("a client certificate with a CN is required")
        if common_name in self._peer_by_cn:
            return Caller(common_name, is_peer_kme=True)
        sae = self._local_cns.get(common_name)
        if sae is None:
            raise unauthorized(f"certificate CN '{common_name}' is not an SAE of {self.kme_id}")
        return Caller(sae)

    def require_peer(self, caller: Caller) -> None:
        if not caller.is_peer_kme:
            raise unauthorized("only a neighbour KME may call this")

    def _towards(self, sae_id: str, role: str) -> Kme:
        node = self._sae_node.get(sae_id)
        engine = None if node is None or node == self.node else self.forward(node)
        if engine is None:
            raise unauthorized(
                f"{role} '{sae_id}' is not an SAE of another node of the network", **{role: sae_id}
            )
        return engine

    def _from_peer(self, caller: Caller) -> Kme:
        self.require_peer(caller)
        return self.engines[self._peer_by_cn[caller.name]]

    def status(self, caller: Caller, slave: str) -> dict[str, Any]:
        return self._towards(slave, "slave_SAE_ID").status(caller, slave)

    async def enc_keys(self, caller: Caller, slave: str, request: KeyRequest) -> dict[str, Any]:
        return await self._towards(slave, "slave_SAE_ID").enc_keys(caller, slave, request)

    async def dec_keys(self, caller: Caller, master: str, key_ids: list[str]) -> dict[str, Any]:
        return await self._towards(master, "master_SAE_ID").dec_keys(caller, master, key_ids)

    def peer_reserve(self, caller: Caller, reservations: list[Reservation]) -> None:
        self._from_peer(caller).peer_reserve(caller, reservations)

    def peer_allocate(
        self, caller: Caller, master: str, slaves: list[str], number: int, size_bits: int
    ) -> list[Reservation]:
        return self._from_peer(caller).peer_allocate(caller, master, slaves, number, size_bits)

    async def peer_relay(self, caller: Caller, message: RelayMessage) -> None:
        await self._from_peer(caller).peer_relay(caller, message)
