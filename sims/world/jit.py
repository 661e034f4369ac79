"""The world's compiled kernels in one namespace, as ``sims.world.kernels.load()`` hands them out.

``jit_core`` holds the loops over numpy's bulk draws and the shared helpers; ``jit_stream``
the hot path that draws its own counter-based randomness.
"""

from sims.world.jit_core import alice_codes, expand_clicks, gap_positions, tag_stream, tagger_clock
from sims.world.jit_stream import dark_clicks, detector_walk, jitter_stream, signal_stream

__all__ = [
    "alice_codes",
    "dark_clicks",
    "detector_walk",
    "expand_clicks",
    "gap_positions",
    "jitter_stream",
    "signal_stream",
    "tag_stream",
    "tagger_clock",
]
