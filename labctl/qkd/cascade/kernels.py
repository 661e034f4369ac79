"""Compiled (numba) loops for Cascade: the public shuffles and Bob's per-round local work.

numba is a dependency, so these are the production path; the numpy code beside them runs
only when asked for (``compiled=False`` on the Cascade classes: the tests' oracle).
uint64 constants stay uint64 (mixing them with Python ints would promote to float64
inside numba).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np


def load() -> ModuleType:
    """The compiled kernels module (imported on first use: numba compiles at import)."""
    from labctl.qkd.cascade import _jit as _cascade_jit

    return _cascade_jit


def splitmix_stream_seed(seed: int, pass_index: int) -> np.uint64:
    """64-bit stream key of one pass's shuffle (distinct passes give unrelated streams)."""
    mask = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + pass_index * 0xD1B54A32D192ED03 + 1) & mask
    return np.uint64(z)
