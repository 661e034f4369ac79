"""Give the C heap's free pages back to the OS between units of work (glibc ``malloc_trim``).

A key block allocates ~1e6-element arrays of a slightly different size every time, from
several threads (post-processing runs numpy in worker threads, each with its own glibc
arena). glibc returns freed memory to the OS only from the top of the main heap, so the
free space left between live chunks piles up: ``labctl run configs/sim.yaml`` grew by
megabytes per block with no live object growing, and ``malloc_trim(0)`` gave back about
half of it (``benchmarks/README.md`` "qkd live"). Trimming after each block costs a few
milliseconds of CPU and keeps RSS at the live set plus one block's churn.

Elsewhere than glibc (macOS, musl) :func:`trim_heap` does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time
from typing import Any

_lock = threading.Lock()
_libc: Any = None
_resolved = False


def _malloc_trim() -> Any:
    """libc's ``malloc_trim`` when this process runs on glibc, else None (looked up once)."""
    global _libc, _resolved
    if not _resolved:
        _resolved = True
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _libc = libc.malloc_trim
                _libc.argtypes = [ctypes.c_size_t]
                _libc.restype = ctypes.c_int
            except (OSError, AttributeError):
                _libc = None
    return _libc


class HeapTrimmer:
    """Calls :func:`trim_heap` at most once per ``min_interval_s`` of wall time.

    With several blocks finishing at once (workers), one trim serves them all: it walks
    every arena, so trimming more often than blocks finish only costs CPU.
    """

    def __init__(self, min_interval_s: float = 0.5) -> None:
        if min_interval_s < 0.0:
            raise ValueError(f"HeapTrimmer: min_interval_s must be >= 0, got {min_interval_s}")
        self.min_interval_s = min_interval_s
        self.trims = 0
        """How many times the heap was actually trimmed."""
        self._last_s = -float("inf")

    def maybe_trim(self) -> bool:
        """Trim unless the last trim was less than ``min_interval_s`` ago; True if trimmed."""
        now_s = time.monotonic()
        if now_s - self._last_s < self.min_interval_s:
            return False
        self._last_s = now_s
        if trim_heap():
            self.trims += 1
            return True
        return False


def trim_heap() -> bool:
    """Return free heap pages of every malloc arena to the OS; False where unsupported."""
    trim = _malloc_trim()
    if trim is None:
        return False
    with _lock:  # glibc locks each arena itself; this only keeps two trims from overlapping
        trim(0)
    return True
