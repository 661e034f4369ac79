"""What a start document says about the code and the config (secrets redacted)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

import labctl

_SECRET = re.compile(r"(password|passwd|secret|token|api_key|private_key|psk)", re.IGNORECASE)


def code_version() -> dict[str, str]:
    """labctl's version and, from a git checkout, ``git describe --always --dirty``."""
    version = {"labctl": labctl.__version__}
    repo = Path(labctl.__file__).resolve().parent.parent
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return version
    if described.returncode == 0 and described.stdout.strip():
        version["git"] = described.stdout.strip()
    return version


REDACTED = "***redacted***"
_COPY_HEADER = (
    "# Copy of the station file with its secrets replaced by '***redacted***' (labctl):\n"
    "# resume uses the original while it is unchanged; give secrets by file (token_file,\n"
    "# password_file) so that this copy alone can rebuild the station.\n"
)


def _is_secret_key(key: object) -> bool:
    """A config key holding a secret value (a ``*_file`` key holds a path, not a secret)."""
    return isinstance(key, str) and bool(_SECRET.search(key)) and not key.endswith("_file")


def _redact_values(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if _is_secret_key(key) and item is not None:
                out[key], changed = REDACTED, True
            else:
                out[key], inner = _redact_values(item)
                changed = changed or inner
        return out, changed
    if isinstance(value, list):
        items = [_redact_values(item) for item in value]
        return [i for i, _ in items], any(c for _, c in items)
    return value, False


def redact_station_text(text: str) -> str:
    """The station file text for the run folder: verbatim, unless it holds a secret value.

    Secret values (``mqtt.password``, ``mqtt.commands.token``, any key naming a password,
    token, secret, private key or PSK) are replaced by ``***redacted***`` and the file is
    re-serialised (comments are lost then; the header says why). Paths to secret files stay.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # not ours to fix: the run will fail on it with file and line
    redacted, changed = _redact_values(data)
    if not changed:
        return text
    return _COPY_HEADER + yaml.safe_dump(redacted, sort_keys=False, allow_unicode=True)


def redact(value: Any) -> Any:
    """A copy of a config tree with credentials replaced by ``"***"`` (documents go to MQTT)."""
    if isinstance(value, dict):
        return {
            key: "***" if isinstance(key, str) and _SECRET.search(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value
