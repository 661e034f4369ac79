"""Keep freed heap memory in the process between slices (glibc only, once per process).

Every slice allocates and frees arrays of a few MiB. By default glibc serves those with
fresh mmap()s and hands them back on free, so each slice pays page faults that zero the
memory again; that costs as much CPU as the physics. Raising glibc's mmap and trim
thresholds keeps that memory in the heap for reuse. Peak RSS stays what one slice needs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD_BYTES = 256 * 1024 * 1024
_done = False


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed slice buffers; True when it applied (False elsewhere)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _THRESHOLD_BYTES)
    )
    _done = applied
    return applied
