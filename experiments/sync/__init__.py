"""Alice-Bob timing synchronization: lock Bob's clock onto Alice's pulses, then track it.

``await synchronize(run)`` (a plan step) or ``await acquire_sync(tagger, alice, clock,
settings)`` return a ``SyncResult``; ``SyncTracker(result).update(batch)`` keeps phase and
frequency locked from a subsample of every later batch and maps its tags onto pulse indices
when they are read (``TrackedBatch.pulse_index``); overflowed batches are counted, not
measured.
"""

from experiments.sync.acquire import acquire_sync, bob_states
from experiments.sync.alice import (
    AlicePattern,
    AlicePublic,
    SourceDesign,
    TransmitterAlice,
    alice_of,
)
from experiments.sync.model import SyncError, SyncResult
from experiments.sync.plan import synchronize
from experiments.sync.settings import SyncSettings
from experiments.sync.tracker import SyncTracker, TrackedBatch, relock

__all__ = [
    "AlicePattern",
    "AlicePublic",
    "SourceDesign",
    "SyncError",
    "SyncResult",
    "SyncSettings",
    "SyncTracker",
    "TrackedBatch",
    "TransmitterAlice",
    "acquire_sync",
    "alice_of",
    "bob_states",
    "relock",
    "synchronize",
]
