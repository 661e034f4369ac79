"""Which implementation of the per-event loops a world uses: compiled (numba) or numpy.

Both follow the same physics; the compiled path draws its randomness differently (a counter
hash inside the loops), so the two agree statistically, not tag for tag (tests compare counts,
QBER and dead-time gaps); each path alone gives identical tags for one seed. numba is a
dependency of labctl, but the world still runs without it: ``load()`` then returns None and
the numpy path runs. A world's ``compiled_kernels: false`` setting chooses the numpy path
for that world (the tests' oracle).
"""

from __future__ import annotations

from types import ModuleType

_loaded: ModuleType | None = None
_failed = False


def load() -> ModuleType | None:
    """The compiled kernels module, or None when numba is missing."""
    global _loaded, _failed
    if _loaded is None and not _failed:
        try:
            from sims.world import jit
        except ImportError:  # numba not installed: the numpy path is complete on its own
            _failed = True
            return None
        _loaded = jit
    return _loaded
