"""One malloc arena per ``labctl`` process (glibc), unless the user chose otherwise.

glibc gives each thread that allocates its own arena (up to 8 per core). The key plan's
post-processing, the event loop and the instrument threads each free large numpy buffers
block after block; each arena keeps its freed memory for reuse by its own thread, so the
process holds a block's worth of freed buffers per arena. With one arena the freed memory
is reused by whichever thread allocates next: the 2-minute main job's peak RSS drops from
about 524 to 460 MiB at the same wall time (benchmarks/README.md, memory). Threads here
spend little time in malloc, so the shared arena's lock costs nothing measurable.

``MALLOC_ARENA_MAX`` in the environment wins: glibc reads it itself and this leaves it be.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_ARENA_MAX = -8
"""mallopt parameter number of M_ARENA_MAX (glibc's malloc.h)."""


def use_one_malloc_arena() -> bool:
    """Cap glibc's malloc arenas at one; True when the cap was set.

    Call it before threads start: a thread that already has an arena keeps it. Elsewhere
    than glibc (musl, macOS) and when ``MALLOC_ARENA_MAX`` is set it does nothing.
    """
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return False
    return bool(libc.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(1)))
