"""QKD protocol math: sifting, decoy/finite-key estimation, Cascade, verification, PA, auth.

Each piece is usable on its own (e.g. from a notebook); see the module docstrings for the
paper and equation each one implements.
"""

from labctl.qkd.auth.channel import (
    AuthenticatedChannel,
    FrameStream,
    MemoryTransport,
    memory_pair,
    tcp_pair,
)
from labctl.qkd.cascade.protocol import (
    CascadeAlice,
    CascadeBob,
    CascadeOutcome,
    CascadeStats,
    reconcile,
)
from labctl.qkd.cascade.schedule import CascadeSchedule
from labctl.qkd.errors import (
    AuthenticationError,
    ChannelClosed,
    ChannelError,
    ChannelTimeout,
    MessageFormatError,
    QkdError,
    ReconciliationError,
    VerificationError,
)
from labctl.qkd.estimation.decoy import (
    DecoyBounds,
    IntensityStats,
    intensity_stats,
    two_decoy_bounds,
    vacuum_weak_decoy_bounds,
)
from labctl.qkd.estimation.entropy import binary_entropy
from labctl.qkd.estimation.finite_key import (
    BasisCounts,
    DecoyProtocol,
    FiniteKeyResult,
    secret_key_length,
)
from labctl.qkd.estimation.keyrate import (
    gllp_rate,
    max_distance_km,
    model_key_rate,
    optimal_mu,
    plob_bound,
)
from labctl.qkd.estimation.model import GYS, ChannelModel
from labctl.qkd.privacy.amplify import privacy_amplify, random_seed, toeplitz_hash
from labctl.qkd.secret import SecretBits
from labctl.qkd.sifting import Detections, SiftedKey, announce, answer, sift_alice, sift_bob
from labctl.qkd.verification import make_tag, tag_length, tags_match, verify

__all__ = [
    "GYS",
    "AuthenticatedChannel",
    "AuthenticationError",
    "BasisCounts",
    "CascadeAlice",
    "CascadeBob",
    "CascadeOutcome",
    "CascadeSchedule",
    "CascadeStats",
    "ChannelClosed",
    "ChannelError",
    "ChannelModel",
    "ChannelTimeout",
    "DecoyBounds",
    "DecoyProtocol",
    "Detections",
    "FiniteKeyResult",
    "FrameStream",
    "IntensityStats",
    "MemoryTransport",
    "MessageFormatError",
    "QkdError",
    "ReconciliationError",
    "SecretBits",
    "SiftedKey",
    "VerificationError",
    "announce",
    "answer",
    "binary_entropy",
    "gllp_rate",
    "intensity_stats",
    "make_tag",
    "max_distance_km",
    "memory_pair",
    "model_key_rate",
    "optimal_mu",
    "plob_bound",
    "privacy_amplify",
    "random_seed",
    "reconcile",
    "secret_key_length",
    "sift_alice",
    "sift_bob",
    "tag_length",
    "tags_match",
    "tcp_pair",
    "toeplitz_hash",
    "two_decoy_bounds",
    "vacuum_weak_decoy_bounds",
    "verify",
]
