"""Station files: valid ones load; every kind of mistake names file, line, field and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from labctl.interfaces import ConfigError
from labctl.station import ConfigErrorGroup, StationConfig, import_classes, load_config

DATA = Path(__file__).parent / "data"


def _load_error(name: str) -> ConfigErrorGroup | ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(DATA / name)
    return info.value


def _import_error(name: str) -> ConfigError:
    config = load_config(DATA / name)
    with pytest.raises(ConfigError) as info:
        import_classes(config)
    return info.value


def test_good_file_loads_with_paths_relative_to_the_file() -> None:
    config = load_config(DATA / "good.yaml")
    assert (config.lab, config.node) == ("test-lab", "alice")
    assert config.storage.runs_dir == (DATA / "out" / "runs").resolve()
    assert config.storage.key_store == (DATA / "keys.sqlite").resolve()
    assert config.mqtt.password_file == (DATA / "secrets" / "mqtt.txt").resolve()
    assert (
        config.mqtt.tls is not None and config.mqtt.tls.ca_file == (DATA / "certs/ca.pem").resolve()
    )
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.use_tls) == (
        "broker.example.org",
        8883,
        True,
    )
    assert config.logging.level == "DEBUG"
    assert config.runner == {"checkpoint_s": 60}


def test_instrument_spec_carries_settings_and_the_line_it_came_from() -> None:
    config = load_config(DATA / "good.yaml")
    spec = config.instrument_spec("laser")
    assert spec.class_path == "tests.station.fake_instruments:FakeLaser"
    assert spec.settings == {"power_mw": 2.5}
    assert spec.transport is None
    assert spec.source.file == str(DATA / "good.yaml")
    assert spec.source.line == 8
    world = config.world_spec()
    assert world is not None and world.settings == {"seed": 7} and world.source.line == 4


def test_misspelled_field_names_line_field_and_suggestion() -> None:
    error = _load_error("typo.yaml")
    [typo] = [e for e in error.errors if e.field.endswith("adress")]  # type: ignore[union-attr]
    assert typo.line == 8
    assert typo.field == "instruments.tagger.transport.adress"
    assert typo.suggestion == "address"
    assert f"{DATA / 'typo.yaml'}:8: instruments.tagger.transport.adress" in str(error)
    assert "did you mean 'address'?" in str(error)


def test_missing_field_points_at_the_entry_that_lacks_it() -> None:
    error = _load_error("missing_field.yaml")
    assert (error.line, error.field) == (6, "instruments.switch.class")
    assert "required field is missing" in str(error)


def test_wrong_type_names_the_value_but_never_a_password() -> None:
    error = _load_error("wrong_type.yaml")
    text = str(error)
    assert "wrong_type.yaml:9: instruments.laser.transport.timeout_s" in text
    assert "got 'fast'" in text
    assert "wrong_type.yaml:11: mqtt.password" in text
    assert "hunter2" not in text


def test_all_problems_are_reported_together_in_file_order() -> None:
    error = _load_error("typo.yaml")
    assert isinstance(error, ConfigErrorGroup)
    assert [e.field for e in error.errors] == [
        "instruments.tagger.transport.address",
        "instruments.tagger.transport.adress",
    ]
    assert "2 problems" in str(error)


def test_unknown_module_is_named() -> None:
    error = _import_error("unknown_module.yaml")
    assert (error.line, error.field) == (7, "instruments.spd.class")
    assert "module 'drivers.nosuchvendor.spd9000' not found" in str(error)


def test_unknown_class_in_existing_module_suggests_the_closest_name() -> None:
    error = _import_error("unknown_class.yaml")
    assert error.line == 5
    assert "module 'tests.station.fake_instruments' has no attribute 'FakeLazer'" in str(error)
    assert error.suggestion == "tests.station.fake_instruments:FakeLaser"


def test_class_without_factory_is_rejected() -> None:
    error = _import_error("no_from_config.yaml")
    assert error.line == 5
    assert "has no from_config" in str(error)


def test_yaml_syntax_error_has_a_line() -> None:
    error = _load_error("bad_yaml.yaml")
    assert error.file == str(DATA / "bad_yaml.yaml")
    assert error.line is not None and 6 <= error.line <= 7
    assert "YAML syntax error" in str(error)


def test_duplicate_key_is_an_error_not_a_silent_override() -> None:
    error = _load_error("duplicate_key.yaml")
    assert (error.line, error.field) == (6, "instruments.laser")
    assert "first given at line 4" in str(error)


def test_ids_must_fit_mqtt_topics() -> None:
    error = _load_error("bad_ids.yaml")
    assert isinstance(error, ConfigErrorGroup)
    by_field = {e.field: e for e in error.errors}
    assert by_field["lab"].line == 1
    assert by_field["instruments.Laser_1"].line == 4
    assert "a-z, 0-9 and '-'" in str(error)


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "absent.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="file is empty"):
        load_config(empty)
    listing = tmp_path / "list.yaml"
    listing.write_text("- lab\n- node\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listing)


@pytest.mark.parametrize(
    ("transport", "message"),
    [
        ({"kind": "tcp", "address": "localhost"}, "tcp address must be 'host:port'"),
        ({"kind": "tcp", "address": "h:70000"}, "tcp address must be 'host:port'"),
        ({"kind": "zmq", "address": "127.0.0.1:5555"}, "zmq address must be an endpoint"),
        ({"kind": "visa", "address": "127.0.0.1"}, "visa address must be a VISA resource"),
        ({"kind": "usb", "address": "x"}, "kind"),
        ({"kind": "tcp", "address": "h:1", "timeout_s": -1}, "greater than 0"),
    ],
)
def test_transport_addresses_are_checked(transport: dict[str, object], message: str) -> None:
    data = {"lab": "l", "node": "n", "instruments": {"x": {"class": "m:C", "transport": transport}}}
    with pytest.raises(ValidationError, match=message):
        StationConfig.model_validate(data)


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"url": "tcp://h:1883"}, "mqtt:// or mqtts://"),
        ({"url": "mqtt://:1883"}, "no host"),
        ({"url": "mqtt://h:port"}, "not a number"),
        ({"url": "mqtt://u:p@h"}, "not in the url"),
        ({"keepalive_s": 0}, "greater than or equal to 1"),
        ({"commands": {"mode": "plain"}}, "'token' or 'hmac'"),
        ({"commands": {"token": "t" * 20, "token_file": "f"}}, "not both"),
        ({"password": "p", "password_file": "f"}, "not both"),
        ({"tls": {"cert_file": "c.pem"}}, "together"),
    ],
)
def test_mqtt_section_is_checked(mqtt: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StationConfig.model_validate({"lab": "l", "node": "n", "mqtt": mqtt})


def test_python_api_builds_the_same_model_without_a_file() -> None:
    config = StationConfig.model_validate(
        {"lab": "l", "node": "n", "instruments": {"laser": {"class": "m:C"}}}
    )
    assert config.file is None
    assert config.mqtt.embedded and config.mqtt.port is None
    assert str(config.instrument_spec("laser").source) == "<api>"


def test_password_stays_out_of_repr_and_reads_from_file(tmp_path: Path) -> None:
    config = StationConfig.model_validate(
        {"lab": "l", "node": "n", "mqtt": {"url": "mqtt://h", "password": "s3cret-pw"}}
    )
    assert "s3cret-pw" not in repr(config)
    assert config.mqtt.read_password() == "s3cret-pw"
    assert config.mqtt.port == 1883
    secret = tmp_path / "pw.txt"
    secret.write_text("from-file\n")
    config_file = tmp_path / "station.yaml"
    config_file.write_text("lab: l\nnode: n\nmqtt:\n  password_file: pw.txt\n")
    assert load_config(config_file).mqtt.read_password() == "from-file"


def test_raw_sections_are_kept_as_written_for_their_owners() -> None:
    config = load_config(DATA / "good.yaml")
    assert config.raw_section("mqtt")["password_file"] == "secrets/mqtt.txt"
    assert config.raw_section("qkd") is None
    assert config.config_dir == DATA
    section = config.raw_section("runner")
    section["checkpoint_s"] = 1  # a copy: changing it leaves the config alone
    assert config.raw_section("runner") == {"checkpoint_s": 60}
    assert config.source_of("runner", "checkpoint_s").line == 25
