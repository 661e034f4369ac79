"""The ``kme:`` section of a station file: the two KMEs of a link, their SAEs, pool and TLS.

One file describes both nodes (like the rest of the station file), so each node's KME finds
its own entry under ``nodes`` and its peer under the other one::

    kme:
      certs_dir: kme-certs          # from `labctl kme certs kme-certs --sae alice-sae ...`
      ledger: kme-ledger.sqlite     # per node: kme-ledger-alice.sqlite, -bob
      allocator: alice              # the one KME that picks key material (see labctl.kme.pool)
      key_size_bits: 256            # default size of a key (Status key_size)
      min_key_size_bits: 64
      max_key_size_bits: 8192
      max_key_per_request: 128
      max_key_count: 100000         # pool size: keys of key_size the KME offers at most
      low_water_keys: 100           # a warning when fewer keys remain
      lease_bytes: 1024             # allocator's durable lease; a restart skips at most this
      nodes:
        alice: {kme_id: kme-alice, listen: "127.0.0.1:8443"}
        bob: {kme_id: kme-bob, listen: "127.0.0.1:8444"}
      saes:
        - {sae_id: alice-sae, node: alice}          # certificate CN = SAE ID unless `cn` is given
        - {sae_id: bob-sae, node: bob, cn: bob-sae}

Errors are :class:`~labctl.interfaces.errors.ConfigError` naming the file, line and field
(``kme.saes.1.node``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labctl.interfaces.errors import ConfigError
from labctl.station.model import StationConfig

_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[^\s:/]+):(?P<port>\d+)$")
# SAE and KME IDs appear in URL paths and certificate CNs: no '/', no spaces.
_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NodeName = Annotated[str, Field(pattern=r"^[a-z0-9-]+$")]
EntityId = Annotated[str, Field(pattern=_ID)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def split_address(text: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port); ValueError when it is not that form."""
    match = _ADDRESS.match(text)
    if match is None or not 0 <= int(match["port"]) < 65536:
        raise ValueError(f"expected 'host:port', got '{text}'")
    return match["host"].strip("[]"), int(match["port"])


class KmeNode(_Strict):
    """One node's KME: its ID (the CN of its certificate) and where it listens."""

    kme_id: EntityId = Field(description="the KME's ID: its certificate's CN and DNS name")
    listen: str = Field(description="host:port the KME binds (port 0 = any free port)")
    url: str | None = Field(
        default=None, description="https://host:port the peer KME dials (default from listen)"
    )

    @model_validator(mode="after")
    def _check_listen(self) -> KmeNode:
        split_address(self.listen)
        if self.url is not None and not self.url.startswith("https://"):
            raise ValueError(f"url must start with https://, got '{self.url}'")
        return self

    def peer_url(self) -> str:
        """The base URL another KME uses to reach this one."""
        if self.url is not None:
            return self.url.rstrip("/")
        host, port = split_address(self.listen)
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"


class SaeBinding(_Strict):
    """An SAE: its ID, the node whose KME serves it, and the CN its certificate carries."""

    sae_id: EntityId
    node: NodeName
    cn: EntityId | None = Field(default=None, description="certificate CN (default: sae_id)")

    @property
    def common_name(self) -> str:
        """The certificate CN that identifies this SAE (its ID unless set)."""
        return self.cn if self.cn is not None else self.sae_id


class KmeConfig(_Strict):
    """The validated ``kme:`` section (see the module docstring for an example)."""

    certs_dir: Path = Field(
        default=Path("kme-certs"),
        strict=False,
        description="ca.pem and {kme_id}.pem/.key (labctl kme certs); relative to the file",
    )
    ledger: Path = Field(
        default=Path("kme-ledger.sqlite"),
        strict=False,
        description="bookkeeping of delivered key, one per node (-alice, -bob)",
    )
    allocator: NodeName = Field(default="alice", description="the node whose KME picks key")
    key_size_bits: Annotated[int, Field(gt=0)] = Field(
        default=256, description="default key size (Status key_size), whole bytes"
    )
    min_key_size_bits: Annotated[int, Field(gt=0)] = 64
    max_key_size_bits: Annotated[int, Field(gt=0)] = 8192
    max_key_per_request: Annotated[int, Field(gt=0, le=100_000)] = 128
    max_key_count: Annotated[int, Field(gt=0)] = Field(
        default=100_000, description="pool size: most keys the KME offers (Status)"
    )
    low_water_keys: Annotated[int, Field(ge=0)] = Field(
        default=100, description="a warning in the log when fewer keys of key_size remain"
    )
    lease_bytes: Annotated[int, Field(ge=0)] = Field(
        default=1024,
        description="key bytes the allocator reserves ahead with one durable write; a "
        "restart skips at most this much (never reuses it)",
    )
    peer_timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        default=5.0, description="limit of one call to the peer KME"
    )
    nodes: dict[NodeName, KmeNode] = Field(description="the two KMEs of the link, by node")
    saes: Annotated[list[SaeBinding], Field(min_length=1)] = Field(
        description="the SAEs and the node whose KME serves each"
    )

    @model_validator(mode="after")
    def _consistent(self) -> KmeConfig:
        """Two nodes, sizes in whole bytes and in order, SAEs on known nodes, unique IDs."""
        if len(self.nodes) != 2:
            raise ValueError(f"nodes: a link has two KMEs, got {sorted(self.nodes)}")
        if self.allocator not in self.nodes:
            raise ValueError(f"allocator: '{self.allocator}' is not one of {sorted(self.nodes)}")
        for name in ("key_size_bits", "min_key_size_bits", "max_key_size_bits"):
            if getattr(self, name) % 8:
                raise ValueError(f"{name}: must be a multiple of 8, got {getattr(self, name)}")
        if not self.min_key_size_bits <= self.key_size_bits <= self.max_key_size_bits:
            raise ValueError(
                "key_size_bits: need min_key_size_bits <= key_size_bits <= max_key_size_bits, got "
                f"{self.min_key_size_bits}, {self.key_size_bits}, {self.max_key_size_bits}"
            )
        kme_ids = [n.kme_id for n in self.nodes.values()]
        if len(set(kme_ids)) != 2:
            raise ValueError(f"nodes: the two KMEs need different kme_id, got {kme_ids}")
        seen_ids: set[str] = set()
        seen_cns: set[str] = set(kme_ids)
        for i, sae in enumerate(self.saes):
            if sae.node not in self.nodes:
                raise ValueError(f"saes.{i}.node: '{sae.node}' is not one of {sorted(self.nodes)}")
            if sae.sae_id in seen_ids:
                raise ValueError(f"saes.{i}.sae_id: '{sae.sae_id}' appears twice")
            if sae.common_name in seen_cns:
                raise ValueError(
                    f"saes.{i}.cn: certificate CN '{sae.common_name}' is already a KME or SAE's"
                )
            seen_ids.add(sae.sae_id)
            seen_cns.add(sae.common_name)
        return self

    def peer_of(self, node: str) -> str:
        """The other node of the link."""
        (other,) = (n for n in self.nodes if n != node)
        return other

    def sae(self, sae_id: str) -> SaeBinding | None:
        """The binding of ``sae_id`` (None when unknown)."""
        return next((s for s in self.saes if s.sae_id == sae_id), None)


def _anchor(config: KmeConfig, base: Path) -> KmeConfig:
    """Relative paths of the section taken from the station file's folder."""

    def resolve(path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() else (base / path).resolve()

    return config.model_copy(
        update={"certs_dir": resolve(config.certs_dir), "ledger": resolve(config.ledger)}
    )


def parse_kme_section(
    data: Any,
    *,
    file: str | None = None,
    base: Path | None = None,
    station: StationConfig | None = None,
) -> KmeConfig:
    """Validate a raw ``kme:`` mapping; ConfigError naming the first bad field (``kme.x.y``)."""
    if not isinstance(data, dict):
        raise ConfigError(
            "the station file has no kme: section (a mapping with nodes and saes)",
            file=file,
            field="kme",
        )
    try:
        config = KmeConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        message = first["msg"].removeprefix("Value error, ")
        # Checks across fields name their field first ("saes.1.node: ..."): point at it.
        named = re.match(r"^([a-z_]+(?:\.[a-z0-9_]+)*): ", message)
        if not loc and named is not None:
            loc = named[1].split(".")
            message = message[named.end() :]
        line = None if station is None else station.source_of("kme", *loc).line
        raise ConfigError(message, file=file, line=line, field=".".join(["kme", *loc])) from None
    return _anchor(config, base if base is not None else Path.cwd())


def load_kme_config(station: StationConfig) -> KmeConfig:
    """The ``kme:`` section of a loaded station file, validated."""
    return parse_kme_section(
        station.raw_section("kme"), file=station.file, base=station.config_dir, station=station
    )


def node_ledger_path(ledger: Path, node: str) -> Path:
    """The ledger of one node: ``kme-ledger.sqlite`` -> ``kme-ledger-alice.sqlite``."""
    return ledger.with_name(f"{ledger.stem}-{node}{ledger.suffix or '.sqlite'}")
