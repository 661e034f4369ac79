"""MQTT connection settings, parsed from the ``mqtt`` section of a station config.

Keys: ``url`` (``mqtt://host:port`` or ``mqtts://host:port``; absent = embedded broker),
``username``, ``password`` or ``password_file``, ``tls`` (``ca_file``, ``cert_file``,
``key_file``), ``client_id`` (the prefix of the publisher's client id: each process
appends its pid and a random suffix), ``keepalive_s``, ``outbox_dir``, ``commands`` (``mode``:
``token`` or ``hmac``; ``token`` or ``token_file``). Relative files are resolved against the
config file's folder.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from labctl.interfaces.errors import ConfigError

_KEYS = {
    "url", "username", "password", "password_file", "tls", "client_id", "keepalive_s",
    "outbox_dir", "commands", "embedded_port", "telemetry_interval_s",
}  # fmt: skip
_TLS_KEYS = {"ca_file", "cert_file", "key_file", "insecure"}
_CMD_KEYS = {"mode", "token", "token_file", "max_skew_s"}


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS material: CA to trust, and an optional client certificate and key."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False  # skip hostname check (self-signed lab brokers by IP)

    def context(self) -> ssl.SSLContext:
        """A client SSL context (TLS >= 1.2) with these files loaded."""
        ctx = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.insecure:
            ctx.check_hostname = False
        if self.cert_file is not None:
            key = str(self.key_file) if self.key_file is not None else None
            ctx.load_cert_chain(str(self.cert_file), key)
        return ctx


@dataclass(frozen=True, slots=True)
class CommandAuth:
    """How remote commands prove they are authorised: a shared token or an HMAC of it."""

    mode: str = "token"  # "token": payload carries it; "hmac": HMAC-SHA256 over the request
    secret: str = ""
    max_skew_s: float = 30.0

    def __repr__(self) -> str:  # never print the secret
        return f"CommandAuth(mode={self.mode!r}, secret=<{len(self.secret)} chars>)"


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Everything a client needs to reach the broker."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: TlsSettings | None = None
    client_id: str | None = None
    keepalive_s: int = 10
    outbox_dir: Path | None = None
    commands: CommandAuth | None = None
    embedded: bool = False  # no broker URL configured: labctl starts one on 127.0.0.1
    embedded_port: int = 0  # the embedded broker's port; 0 = any free port
    telemetry_interval_s: float = 2.0  # health readings on tele/... this often; 0 = off

    @property
    def url(self) -> str:
        """The broker URL (without credentials)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def __repr__(self) -> str:  # passwords never reach logs
        return f"MqttSettings(url={self.url!r}, username={self.username!r})"

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> MqttSettings:
        """Settings for a bare ``mqtt://host:port`` or ``mqtts://host:port`` URL."""
        host, port, tls = parse_url(url, "mqtt.url")
        if tls and "tls" not in kwargs:
            kwargs["tls"] = TlsSettings()
        return cls(host=host, port=port, **kwargs)


def parse_url(url: str, where: str) -> tuple[str, int, bool]:
    """Split a broker URL into host, port and whether it is TLS."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"broker URL {url!r} must look like mqtt://host:port", field=where)
    if parts.username or parts.password:
        raise ConfigError("put credentials in username/password, not in the URL", field=where)
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"broker URL {url!r} has an invalid port", field=where) from None
    return parts.hostname, port, tls


def _read_secret_file(value: Any, base: Path, where: str) -> str:
    path = _path(value, base, where)
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", field=where) from None
    if not text:
        raise ConfigError(f"{path} is empty", field=where)
    return text


def _path(value: Any, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a file path", field=where)
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _check_keys(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in section:
        if key not in allowed:
            raise ConfigError(
                f"unknown key; allowed: {', '.join(sorted(allowed))}", field=f"{where}.{key}"
            )


def _commands(raw: Any, base: Path) -> CommandAuth:
    if not isinstance(raw, Mapping):
        raise ConfigError("must be a mapping", field="mqtt.commands")
    _check_keys(raw, _CMD_KEYS, "mqtt.commands")
    mode = raw.get("mode", "token")
    if mode not in ("token", "hmac"):
        raise ConfigError("must be 'token' or 'hmac'", field="mqtt.commands.mode")
    if "token_file" in raw:
        secret = _read_secret_file(raw["token_file"], base, "mqtt.commands.token_file")
    else:
        secret = raw.get("token", "")
    if not isinstance(secret, str) or len(secret) < 16:
        raise ConfigError(
            "a command token of at least 16 characters is required (token or token_file)",
            field="mqtt.commands.token",
        )
    skew = raw.get("max_skew_s", 30.0)
    if not isinstance(skew, int | float) or skew <= 0:
        raise ConfigError("must be a positive number", field="mqtt.commands.max_skew_s")
    return CommandAuth(mode=mode, secret=secret, max_skew_s=float(skew))


def settings_from_config(
    section: Mapping[str, Any] | None, config_dir: str | Path = "."
) -> MqttSettings:
    """Validate the ``mqtt`` config section; no ``url`` (or no section) means embedded."""
    if section is None:
        return MqttSettings(embedded=True)
    if not isinstance(section, Mapping):
        raise ConfigError("must be a mapping", field="mqtt")
    _check_keys(section, _KEYS, "mqtt")
    base = Path(config_dir)
    url = section.get("url")
    if url is None:
        extra = {"username", "password", "password_file", "tls"} & set(section)
        if extra:
            raise ConfigError(
                "credentials and TLS need a broker url (the embedded broker is loopback-only)",
                field=f"mqtt.{sorted(extra)[0]}",
            )
        host, port, tls_on = "127.0.0.1", 0, False
    elif not isinstance(url, str):
        raise ConfigError("must be a string", field="mqtt.url")
    else:
        host, port, tls_on = parse_url(url, "mqtt.url")
    username = section.get("username")
    if username is not None and not isinstance(username, str):
        raise ConfigError("must be a string", field="mqtt.username")
    if "password" in section and "password_file" in section:
        raise ConfigError("give password or password_file, not both", field="mqtt.password")
    password = section.get("password")
    if "password_file" in section:
        password = _read_secret_file(section["password_file"], base, "mqtt.password_file")
    if password is not None and (not isinstance(password, str) or username is None):
        raise ConfigError("a password needs a username and must be a string", field="mqtt")
    tls: TlsSettings | None = None
    raw_tls = section.get("tls")
    if raw_tls is not None or tls_on:
        if not tls_on:
            raise ConfigError("tls needs an mqtts:// URL", field="mqtt.tls")
        raw_tls = raw_tls or {}
        if not isinstance(raw_tls, Mapping):
            raise ConfigError("must be a mapping", field="mqtt.tls")
        _check_keys(raw_tls, _TLS_KEYS, "mqtt.tls")
        files = {
            k: _path(raw_tls[k], base, f"mqtt.tls.{k}")
            for k in ("ca_file", "cert_file", "key_file")
            if k in raw_tls
        }
        for key, path in files.items():
            if not path.is_file():
                raise ConfigError(f"file {path} does not exist", field=f"mqtt.tls.{key}")
        if ("cert_file" in files) != ("key_file" in files):
            raise ConfigError("cert_file and key_file go together", field="mqtt.tls")
        tls = TlsSettings(insecure=bool(raw_tls.get("insecure", False)), **files)
    keepalive = section.get("keepalive_s", 10)
    if not isinstance(keepalive, int) or not 1 <= keepalive <= 3600:
        raise ConfigError("must be an integer 1..3600", field="mqtt.keepalive_s")
    outbox = section.get("outbox_dir")
    commands = section.get("commands")
    embedded_port = section.get("embedded_port", 0)
    if isinstance(embedded_port, bool) or not isinstance(embedded_port, int):
        raise ConfigError("must be an integer 0..65535", field="mqtt.embedded_port")
    if not 0 <= embedded_port <= 65535:
        raise ConfigError("must be an integer 0..65535", field="mqtt.embedded_port")
    if embedded_port and url is not None:
        raise ConfigError("only for the embedded broker (no url)", field="mqtt.embedded_port")
    interval = section.get("telemetry_interval_s", 2.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
        raise ConfigError("must be a number >= 0", field="mqtt.telemetry_interval_s")
    return MqttSettings(
        host=host,
        port=port,
        username=username,
        password=password,
        tls=tls,
        client_id=section.get("client_id"),
        keepalive_s=keepalive,
        outbox_dir=_path(outbox, base, "mqtt.outbox_dir") if outbox is not None else None,
        commands=_commands(commands, base) if commands is not None else None,
        embedded=url is None,
        embedded_port=embedded_port,
        telemetry_interval_s=float(interval),
    )
