"""What a start document says about the code and the config (secrets redacted)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

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
