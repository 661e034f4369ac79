"""One writer per store: an advisory lock file beside a run folder, calibration or key store.

``StoreLock(path, what)`` locks ``path`` by holding ``fcntl.flock`` on ``{path}.lock`` (for
a folder: ``{folder}/run.lock``). The lock file records the holder as JSON: pid, host, the
command line and the wall-clock start, so that a refusal can name who holds the store.

Why flock and a record both: flock is atomic and the kernel drops it when its process dies
(even on ``kill -9``), so a crashed run never blocks the next one; the record only tells
people who holds it. A record left by a dead process on this host (flock free, pid gone) is
a stale lock: it is taken over with a warning. A record from another host cannot be
checked (its pid means nothing here, and flock on a network file system may not reach
across hosts), so it is refused, naming the host and the file to remove once that
process is known to be gone.

Releasing unlinks the file while still holding flock; a process that opened the old file
in the meantime sees that its inode is no longer the path's and opens the path again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from labctl.interfaces.errors import LabctlError

log = logging.getLogger(__name__)

FOLDER_LOCK = "run.lock"


class StoreLockedError(LabctlError):
    """The store is held by another live process (the message names it)."""

    def __init__(self, message: str, holder: LockHolder | None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds (or held) a lock: what the lock file records."""

    pid: int
    host: str
    started_wall_ts: float
    command: str

    def describe(self) -> str:
        """``pid 123 on host lab1 (labctl run x.yaml), since 2026-12-06T22:00:00Z``."""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_wall_ts))
        return f"pid {self.pid} on host {self.host} ({self.command}), since {since}"

    @classmethod
    def me(cls) -> LockHolder:
        """This process."""
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "python"
        return cls(os.getpid(), socket.gethostname(), time.time(), command[:200])


def lock_path_of(path: Path) -> Path:
    """The lock file guarding ``path``: ``{folder}/run.lock`` or ``{file}.lock``."""
    path = Path(path)
    return path / FOLDER_LOCK if path.is_dir() else path.with_name(path.name + ".lock")


def _read_holder(handle: int) -> LockHolder | None:
    """The record in an open lock file, or None when empty or unreadable."""
    os.lseek(handle, 0, os.SEEK_SET)
    raw = os.read(handle, 4096)
    try:
        data = json.loads(raw.decode("utf-8"))
        return LockHolder(
            int(data["pid"]),
            str(data["host"]),
            float(data["started_wall_ts"]),
            str(data["command"]),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class StoreLock:
    """An exclusive lock on one store (``what`` names it in messages); ``with`` or release()."""

    def __init__(self, path: Path, what: str) -> None:
        self.target = Path(path)
        self.path = lock_path_of(self.target)
        self.what = what
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"StoreLock({self.what} {self.target}, held={self.held})"

    @property
    def held(self) -> bool:
        """True between acquire() and release()."""
        return self._fd is not None

    def acquire(self) -> StoreLock:
        """Take the lock or raise StoreLockedError naming the holder."""
        if self._fd is not None:
            raise RuntimeError(f"{self!r}: already held")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise self._refusal(holder) from None
            if self._same_file(fd):
                break
            os.close(fd)  # released and unlinked under us: lock the new file instead
        try:
            self._check_record(fd)
            me = LockHolder.me()
            record = json.dumps(
                {
                    "pid": me.pid,
                    "host": me.host,
                    "started_wall_ts": me.started_wall_ts,
                    "command": me.command,
                    "store": str(self.target),
                }
            )
            os.ftruncate(fd, 0)
            os.pwrite(fd, (record + "\n").encode("utf-8"), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _check_record(self, fd: int) -> None:
        """flock is ours: a leftover record is stale (this host) or refused (another host)."""
        holder = _read_holder(fd)
        if holder is None:
            return
        here = socket.gethostname()
        if holder.host != here:
            raise StoreLockedError(
                f"{self.what} {self.target} is locked by {holder.describe()}; that host cannot "
                f"be checked from {here}: remove {self.path} once that process has ended",
                holder,
            )
        if holder.pid != os.getpid() and _pid_alive(holder.pid):
            # Alive but not holding flock: a pid reused since the crash. Still stale.
            log.warning(
                "%s %s: lock record names pid %d (alive, but not holding the lock: pid "
                "reused); taking the lock over",
                self.what,
                self.target,
                holder.pid,
            )
            return
        log.warning(
            "%s %s: taking over a stale lock left by %s (no longer running)",
            self.what,
            self.target,
            holder.describe(),
        )

    def _refusal(self, holder: LockHolder | None) -> StoreLockedError:
        who = holder.describe() if holder is not None else "another process"
        return StoreLockedError(
            f"{self.what} {self.target} is in use by {who}; one run per store "
            f"(lock file {self.path})",
            holder,
        )

    def release(self) -> None:
        """Drop the lock and remove the lock file (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._same_file(fd):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            os.close(fd)  # closing drops flock

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@contextlib.contextmanager
def hold_all(stores: Sequence[tuple[Path, str]]) -> Iterator[list[StoreLock]]:
    """Lock every ``(path, what)`` in order (all or none); release them all on exit."""
    with contextlib.ExitStack() as stack:
        locks = [stack.enter_context(StoreLock(path, what)) for path, what in stores]
        yield locks
