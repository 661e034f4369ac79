"""Files that hold secrets (pre-shared keys, key-store keys): private to their owner.

A secret file that its group or others may read is refused, with the command that fixes it,
before a byte is read: a key left world-readable on a shared lab PC is not a secret.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from labctl.interfaces.errors import ConfigError

PRIVATE_FILE_MODE = 0o600


def check_private(path: str | Path, *, field: str) -> None:
    """ConfigError naming ``field`` when ``path`` is missing or open to group/others."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(
            f"cannot read: {exc.strerror or exc}", file=str(path), field=field
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"secret file is open to group/others (mode {stat.S_IMODE(mode):04o}); "
            f"make it private: chmod 600 {path}",
            file=str(path),
            field=field,
        )


def read_secret_file(path: str | Path, *, field: str) -> bytes:
    """The bytes of a private secret file (see :func:`check_private`)."""
    check_private(path, field=field)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read: {exc.strerror or exc}", file=str(path), field=field
        ) from None


def create_private(path: str | Path) -> None:
    """Create ``path`` empty with mode 0600 if missing; tighten it to 0600 if it exists."""
    path = Path(path)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE_MODE))
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_FILE_MODE:
        path.chmod(PRIVATE_FILE_MODE)
