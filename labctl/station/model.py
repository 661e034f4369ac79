"""The station file as a validated pydantic model: lab, node, world, instruments, MQTT, storage.

Every model forbids unknown fields so that a typo is an error (with a suggestion), never a
silently ignored setting. Sections owned by other packages (runner, calibration, sync, qkd,
trust, twin_serve) stay free-form dicts here; their owners validate them.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from labctl.interfaces.build import InstrumentSpec, Source, TransportSpec

ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$"
CLASS_PATH_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
_TCP_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[^\s:]+):(?P<port>\d+)$")

# Ids appear in MQTT topics (labctl/v1/{lab}/{node}/tele/{instrument}/...), hence the charset.
Ident = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=63)]
ClassPath = Annotated[
    str,
    Field(
        pattern=CLASS_PATH_PATTERN,
        description="Importable class as 'package.module:Class', e.g. 'sims.twins:SimLaser'.",
    ),
]
PackageName = Annotated[
    str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$", max_length=200)
]
# Paths are relative to the config file; lax so notebooks can pass pathlib.Path objects.
FilePath = Annotated[Path, Field(strict=False)]


class _Strict(BaseModel):
    """Base of every config model: unknown fields and silent type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class TransportConfig(_Strict):
    """How to reach a real instrument (see labctl.interfaces.build.TransportSpec)."""

    kind: Literal["visa", "serial", "tcp", "zmq"]
    address: Annotated[str, Field(min_length=1)]
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_address(self) -> TransportConfig:
        """Reject addresses the transport kind could never open."""
        if self.kind == "tcp":
            match = _TCP_ADDRESS.match(self.address)
            if match is None or not 0 < int(match["port"]) < 65536:
                raise ValueError(f"tcp address must be 'host:port', got '{self.address}'")
        elif self.kind == "zmq" and "://" not in self.address:
            raise ValueError(
                f"zmq address must be an endpoint like 'tcp://host:port', got '{self.address}'"
            )
        elif self.kind == "visa" and "::" not in self.address:
            raise ValueError(
                "visa address must be a VISA resource like 'TCPIP::host::port::SOCKET', "
                f"got '{self.address}'"
            )
        return self

    def to_spec(self) -> TransportSpec:
        """The transport part of an InstrumentSpec."""
        return TransportSpec(
            kind=self.kind, address=self.address, timeout_s=self.timeout_s, options=self.options
        )


class InstrumentConfig(_Strict):
    """One instrument: which class builds it, how to reach it, and its settings."""

    class_path: ClassPath = Field(alias="class")
    transport: TransportConfig | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class WorldConfig(_Strict):
    """The simulated world shared by all twins of a station."""

    class_path: ClassPath = Field(alias="class")
    settings: dict[str, Any] = Field(default_factory=dict)


class TlsConfig(_Strict):
    """TLS files for an mqtts:// broker; paths are relative to the config file."""

    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    insecure: bool = Field(
        default=False, description="Skip the host name check (self-signed lab brokers by IP)"
    )

    @model_validator(mode="after")
    def _cert_with_key(self) -> TlsConfig:
        """A client certificate is useless without its key, and the other way round."""
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class CommandsConfig(_Strict):
    """How remote cmd/ messages prove they are authorised (labctl.stream checks the rest)."""

    mode: Literal["token", "hmac"] = "token"
    token: SecretStr | None = None
    token_file: FilePath | None = None
    max_skew_s: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="after")
    def _one_token(self) -> CommandsConfig:
        """token and token_file are alternatives."""
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        return self


class MqttConfig(_Strict):
    """The MQTT broker; leave out ``url`` (or the whole section) for an embedded one.

    The keys are those labctl.stream.settings reads; it validates the finer rules (token
    length, credentials only with a url) when a run connects.
    """

    url: str | None = Field(
        default=None, description="mqtt://host:port or mqtts://host:port; omit for embedded"
    )
    username: str | None = None
    password: SecretStr | None = None
    password_file: FilePath | None = None
    tls: TlsConfig | None = None
    client_id: str | None = None
    keepalive_s: Annotated[int, Field(ge=1, le=3600)] = 10
    outbox_dir: FilePath | None = None
    commands: CommandsConfig | None = None
    embedded_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=0, description="port of the embedded broker (no url); 0 = any free port"
    )
    telemetry_interval_s: Annotated[float, Field(ge=0)] = Field(
        default=2.0, description="instrument health readings on tele/... every so often; 0 = off"
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        """Accept only mqtt:// and mqtts:// URLs with a host (port optional)."""
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"url must start with mqtt:// or mqtts://, got '{value}'")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"port is not a number in '{value}'") from None
        if not parts.hostname:
            raise ValueError(f"url has no host: '{value}'")
        if parts.username or parts.password:
            raise ValueError("put credentials in username/password, not in the url")
        if port == 0:
            raise ValueError(f"port must be 1..65535 in '{value}'")
        return value

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        """password and password_file are alternatives."""
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    @property
    def embedded(self) -> bool:
        """True when labctl must start its own broker on 127.0.0.1."""
        return self.url is None

    @property
    def host(self) -> str:
        """Broker host name (127.0.0.1 for the embedded broker)."""
        if self.url is None:
            return "127.0.0.1"
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int | None:
        """Broker port: the URL's, else 8883 for mqtts and 1883 for mqtt; None if embedded."""
        if self.url is None:
            return None
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def use_tls(self) -> bool:
        """True for an mqtts:// broker."""
        return self.url is not None and self.url.startswith("mqtts://")

    def read_password(self) -> str | None:
        """The broker password, from the config or its password_file (stripped)."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
        return None


class StorageConfig(_Strict):
    """Where runs, calibrations and keys are kept; relative paths follow the config file."""

    runs_dir: FilePath = Path("runs")
    calibration_store: FilePath = Path("calibration.json")
    key_store: FilePath = Path("keys.sqlite")
    key_store_key_file: FilePath | None = Field(
        default=None,
        description=(
            "Private file (mode 0600) with the 32-byte key (raw or hex) that encrypts the "
            "key store's bits with AES-256-GCM; omit for a plain store (also 0600)."
        ),
    )


class LoggingConfig(_Strict):
    """Terminal log level and an optional JSON-lines log file."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    json_file: FilePath | None = None


class StationConfig(_Strict):
    """A whole station file, validated."""

    lab: Ident
    node: Ident
    world: WorldConfig | None = None
    instruments: dict[Ident, InstrumentConfig] = Field(default_factory=dict)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    runner: dict[str, Any] = Field(default_factory=dict)
    calibration: dict[str, Any] = Field(default_factory=dict)
    sync: dict[str, Any] = Field(default_factory=dict)
    qkd: dict[str, Any] = Field(default_factory=dict)
    trust: dict[str, Any] = Field(default_factory=dict)
    alice: dict[str, Any] = Field(default_factory=dict)
    twin_serve: dict[str, Any] = Field(default_factory=dict)
    kme: dict[str, Any] = Field(default_factory=dict)
    allowed_packages: list[PackageName] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Packages besides 'drivers' and 'sims' whose classes this file may name "
            "(a lab's own drivers); nothing else is imported."
        ),
    )
    schedule: dict[str, Any] = Field(default_factory=dict)

    _file: str | None = PrivateAttr(default=None)
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw(cls, data: Any, handler: ModelWrapValidatorHandler[StationConfig]) -> Any:
        """Keep the sections as written, for owners that parse them themselves."""
        model = handler(data)
        if isinstance(data, dict) and isinstance(model, StationConfig):
            model._raw = copy.deepcopy(data)
        return model

    @property
    def file(self) -> str | None:
        """The station file this config was loaded from (None when built in Python)."""
        return self._file

    @property
    def config_dir(self) -> Path:
        """The folder relative paths of this config are taken from (cwd without a file)."""
        return Path.cwd() if self._file is None else Path(self._file).resolve().parent

    def raw_section(self, name: str) -> Any:
        """A top-level section exactly as written (a copy; None when absent)."""
        return copy.deepcopy(self._raw.get(name))

    def source_of(self, *path: str | int) -> Source:
        """File and line of a config item (its nearest ancestor when not in the file)."""
        line = None
        for end in range(len(path), -1, -1):
            line = self._lines.get(tuple(path[:end]))
            if line is not None:
                break
        return Source(file=self._file, line=line)

    def instrument_spec(self, name: str) -> InstrumentSpec:
        """The InstrumentSpec handed to the class factory of instrument ``name``."""
        entry = self.instruments[name]
        return InstrumentSpec(
            name=name,
            class_path=entry.class_path,
            settings=dict(entry.settings),
            transport=None if entry.transport is None else entry.transport.to_spec(),
            source=self.source_of("instruments", name),
        )

    def world_spec(self) -> InstrumentSpec | None:
        """The spec of the simulated world, or None for a station without one."""
        if self.world is None:
            return None
        return InstrumentSpec(
            name="world",
            class_path=self.world.class_path,
            settings=dict(self.world.settings),
            source=self.source_of("world"),
        )
