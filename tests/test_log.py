"""labctl.log: readable terminal lines, JSON-lines files, and secrets that never get through."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import labctl.secrets as secrets_module
from labctl.log import (
    add_json_file,
    register_secret,
    secrets,
    set_level,
    setup_logging,
    unregister_secret,
)
from labctl.secrets import KEY_BLOCK_BYTES, MASK, SecretRegistry

KEY = bytes(range(0x10, 0x30))  # 32 bytes, as a final key block would be


@pytest.fixture
def terminal() -> Iterator[io.StringIO]:
    """Logging set up onto a string stream; everything ours removed afterwards."""
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    yield stream
    secrets.clear()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_labctl_handler", False):
            root.removeHandler(handler)
            handler.close()


def _json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_terminal_shows_level_and_message(terminal: io.StringIO) -> None:
    logging.getLogger("labctl.test").warning("laser %s at %.1f mW", "alice", 2.5)
    logging.getLogger("labctl.test").debug("hidden at INFO")
    text = terminal.getvalue()
    assert "WARNING" in text and "laser alice at 2.5 mW" in text
    assert "hidden at INFO" not in text
    set_level("DEBUG")
    logging.getLogger("labctl.test").debug("shown at DEBUG")
    assert "shown at DEBUG" in terminal.getvalue()


def test_json_file_gets_one_object_per_line_with_extras(
    terminal: io.StringIO, tmp_path: Path
) -> None:
    path = add_json_file(tmp_path / "deep" / "run.jsonl")
    log = logging.getLogger("labctl.test")
    log.info("qber %.3f", 0.021, extra={"run_id": "r-1", "qber": 0.021})
    try:
        raise ConnectionError("peer went away")
    except ConnectionError:
        log.exception("link broke")
    first, second = _json_lines(path)
    assert first["message"] == "qber 0.021" and first["level"] == "INFO"
    assert first["logger"] == "labctl.test"
    assert first["run_id"] == "r-1" and first["qber"] == 0.021
    assert str(first["ts"]).endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "ConnectionError: peer went away" in str(second["exc"])


def test_registered_key_is_masked_in_every_form(terminal: io.StringIO, tmp_path: Path) -> None:
    path = add_json_file(tmp_path / "log.jsonl")
    register_secret(KEY)
    log = logging.getLogger("labctl.test")
    log.warning("hex %s", KEY.hex())
    log.warning("HEX %s", KEY.hex().upper())
    log.warning("b64 %s", base64.b64encode(KEY).decode())
    log.warning("raw %r", KEY)
    log.info("extra", extra={"block": KEY.hex()})
    try:
        raise ValueError(f"verification failed for {KEY.hex()}")
    except ValueError:
        log.exception("cascade")
    file_text = path.read_text()
    for text in (terminal.getvalue(), file_text):
        assert KEY.hex() not in text and KEY.hex().upper() not in text
        assert base64.b64encode(KEY).decode() not in text
        assert repr(KEY)[2:-1] not in text
    assert file_text.count(MASK) == 6
    unregister_secret(KEY)
    log.warning("after %s", KEY.hex())
    assert KEY.hex() in path.read_text()


def test_text_secret_and_exception_text_are_masked(terminal: io.StringIO) -> None:
    register_secret("correct-horse-battery")
    try:
        raise RuntimeError("login with correct-horse-battery refused")
    except RuntimeError:
        logging.getLogger("labctl.test").exception("broker said no")
    text = terminal.getvalue()
    assert "correct-horse-battery" not in text
    assert f"login with {MASK} refused" in text


def test_registry_counts_registrations_and_rejects_short_values() -> None:
    registry = SecretRegistry()
    registry.register("abcdefgh")
    registry.register("abcdefgh")
    registry.unregister("abcdefgh")
    assert registry.redact("x abcdefgh y") == f"x {MASK} y"
    registry.unregister("abcdefgh")
    assert registry.redact("x abcdefgh y") == "x abcdefgh y"
    with pytest.raises(ValueError, match="too short"):
        registry.register(b"\x01\x02\x03")
    with pytest.raises(TypeError, match="only str or bytes"):
        registry.register(12345678)  # type: ignore[arg-type]


def test_longest_secret_wins_when_one_contains_another() -> None:
    registry = SecretRegistry()
    registry.register("abcdefgh")
    registry.register("abcdefgh-ijkl")
    assert registry.redact("abcdefgh-ijkl!") == f"{MASK}!"


def test_setup_twice_replaces_its_own_handlers_only(terminal: io.StringIO) -> None:
    foreign = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(foreign)
    try:
        setup_logging("INFO", stream=io.StringIO())
        setup_logging("INFO", stream=io.StringIO())
        ours = [h for h in root.handlers if getattr(h, "_labctl_handler", False)]
        assert len(ours) == 1 and foreign in root.handlers
    finally:
        root.removeHandler(foreign)


def test_bad_level_is_named() -> None:
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        setup_logging("LOUD")


def test_key_blocks_are_bounded_oldest_first_and_short_secrets_stay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A run registers every key it stores: the registry must not grow without end.
    monkeypatch.setattr(secrets_module, "MAX_KEY_BLOCKS", 3)
    registry = SecretRegistry()
    psk = bytes(range(100, 132))  # 32 bytes: below KEY_BLOCK_BYTES, never evicted
    registry.register(psk)
    keys = [bytes([i]) * 7 + os.urandom(KEY_BLOCK_BYTES) for i in range(5)]
    for key in keys:
        registry.register(key)
    assert len(registry) == 4  # the PSK and the 3 newest keys
    assert registry.redact(f"old {keys[0].hex()}") == f"old {keys[0].hex()}"
    for key in keys[2:]:
        assert registry.redact(f"k={key.hex()}.") == f"k={MASK}."
    assert registry.redact(f"psk {base64.b64encode(psk).decode()}") == f"psk {MASK}"
    registry.register(keys[0])  # read back from a store: guarded again
    assert registry.redact(keys[0].hex().upper()) == MASK


def test_index_holds_one_anchor_per_form_and_unregister_removes_them() -> None:
    registry = SecretRegistry()
    keys = [os.urandom(KEY_BLOCK_BYTES * 4) for _ in range(50)]
    for key in keys:
        registry.register(key)
    anchors = sum(len(table) for table in registry._anchors.values())
    assert anchors == 4 * 50  # hex, HEX, base64, repr: nothing compiled per key
    line = f"block 7: tag {keys[17].hex()} then {base64.b64encode(keys[42]).decode()}"
    assert registry.redact(line) == f"block 7: tag {MASK} then {MASK}"
    for key in keys:
        registry.unregister(key)
    assert len(registry) == 0 and registry._anchors == {}


def test_qcodes_info_stays_off_the_terminal() -> None:
    import io

    from labctl.log import setup_logging

    out = io.StringIO()
    setup_logging("INFO", stream=out)
    try:
        logging.getLogger("qcodes.dataset").info("Created run with guid quiet-please")
        logging.getLogger("qcodes.dataset").warning("qcodes-warning-shown")
        logging.getLogger("labctl.test").info("labctl-info-shown")
    finally:
        setup_logging("INFO")
    text = out.getvalue()
    assert "quiet-please" not in text
    assert "qcodes-warning-shown" in text and "labctl-info-shown" in text
