"""One glibc malloc arena per labctl process: threads share it (counted by malloc_info)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.cli.malloc_arenas import use_one_malloc_arena

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")

REPO = Path(__file__).resolve().parents[2]

# Four threads allocate (below the mmap threshold, so from an arena) and stay alive while
# malloc_info writes one <heap nr=...> element per arena to a file.
_PROBE = """
import ctypes, ctypes.util, sys, threading
from labctl.cli.malloc_arenas import use_one_malloc_arena
capped = use_one_malloc_arena() if sys.argv[1] == "cap" else None
held, ready, done = [], threading.Barrier(5), threading.Event()
def work():
    held.append([bytearray(64 * 1024) for _ in range(8)])
    ready.wait()
    done.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
ready.wait()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p
stream = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
done.set()
for t in threads:
    t.join()
print(capped)
"""


def _heaps(tmp_path: Path, mode: str) -> tuple[int, str]:
    """(arenas in use, what the cap returned) in a fresh process."""
    report = tmp_path / f"malloc-{mode}.xml"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(report)],
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return report.read_text().count("<heap nr="), done.stdout.strip()


def test_threads_share_one_arena_once_capped(tmp_path: Path) -> None:
    free, _ = _heaps(tmp_path, "free")
    capped, said = _heaps(tmp_path, "cap")
    assert free > 1  # each thread got its own arena
    assert capped == 1 and said == "True"


def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert use_one_malloc_arena() is False
