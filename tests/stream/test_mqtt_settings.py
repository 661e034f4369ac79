"""The mqtt config section: URLs, credentials, TLS files, command auth; errors name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.interfaces.errors import ConfigError
from labctl.stream.settings import settings_from_config


def test_absent_section_means_embedded() -> None:
    assert settings_from_config(None).embedded
    assert settings_from_config({"outbox_dir": "ob"}, "/x").outbox_dir == Path("/x/ob")


def test_full_section(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2-hunter2\n")
    (tmp_path / "tok").write_text("a-command-token-of-length\n")
    for name in ("ca.crt", "c.crt", "c.key"):
        (tmp_path / name).write_text("x")
    s = settings_from_config(
        {
            "url": "mqtts://broker.lab:8884",
            "username": "alice",
            "password_file": "pw",
            "tls": {"ca_file": "ca.crt", "cert_file": "c.crt", "key_file": "c.key"},
            "commands": {"mode": "hmac", "token_file": "tok"},
        },
        tmp_path,
    )
    assert (s.host, s.port, s.username, s.password) == (
        "broker.lab",
        8884,
        "alice",
        "hunter2-hunter2",
    )
    assert s.tls is not None and s.tls.ca_file == tmp_path / "ca.crt"
    assert s.commands is not None and s.commands.mode == "hmac"
    assert "hunter2" not in repr(s) and "command-token" not in repr(s.commands)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"url": "http://x"}, "mqtt.url"),
        ({"url": "mqtt://u:p@x:1"}, "mqtt.url"),
        ({"url": "mqtt://x:99999"}, "mqtt.url"),
        ({"url": "mqtt://x", "tls": {}}, "mqtt.tls"),
        ({"url": "mqtts://x", "tls": {"ca_file": "missing.pem"}}, "mqtt.tls.ca_file"),
        ({"url": "mqtts://x", "tls": {"colour": 1}}, "mqtt.tls.colour"),
        ({"url": "mqtt://x", "password_file": "nope"}, "mqtt.password_file"),
        ({"url": "mqtt://x", "pasword": "p"}, "mqtt.pasword"),
        ({"url": "mqtt://x", "keepalive_s": 0}, "mqtt.keepalive_s"),
        ({"username": "u"}, "mqtt.username"),
        ({"url": "mqtt://x", "commands": {"token": "short"}}, "mqtt.commands.token"),
        ({"url": "mqtt://x", "commands": {"mode": "pgp", "token": "x" * 20}}, "mqtt.commands.mode"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, section: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_config(section, tmp_path)
    assert info.value.field == field


def test_embedded_port_and_telemetry_interval_are_settings() -> None:
    settings = settings_from_config({"embedded_port": 18830, "telemetry_interval_s": 0.5})
    assert settings.embedded and settings.embedded_port == 18830
    assert settings.telemetry_interval_s == 0.5
    with pytest.raises(ConfigError, match="embedded_port"):
        settings_from_config({"url": "mqtt://h:1883", "embedded_port": 18830})
    with pytest.raises(ConfigError, match="embedded_port"):
        settings_from_config({"embedded_port": 70000})
