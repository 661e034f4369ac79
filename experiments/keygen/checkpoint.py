"""Key generation's commit point and what a resume continues from.

A block is *committed* when its key (if it gave one) is in both key stores and its ``qkd``
event is recorded; at that moment the run's checkpoint is rewritten (atomically, with the
event log synced first: :meth:`~labctl.runner.context.RunContext.commit`) with a
:class:`KeygenState`: the next block number, the last committed block, the running sums of
the summary and the calibration's age. A crash (kill -9, power cut) at any later moment
loses only what is not committed; ``labctl resume`` continues from the state:

* :func:`reconcile` compares the stores by key id and block: a key of this run from a block
  after the last committed one (stored at Bob only, or at both ends before the checkpoint
  was written) is deleted at both ends, a committed key missing at one end is copied from
  the other, and what is left must match the state's counts, or the resume stops;
* block numbers continue from the state's next block, so no number repeats in a run;
* the summary starts from the state's sums and the stores' committed key ids.

Blocks commit in block order (one classical channel per link in the main job), so "every
block up to ``committed_block``" is the committed set.

The classical channel's authentication may keep state across blocks (a Wegman-Carter key
pool that consumes key). :class:`AuthResume` is the hook: its state is saved with every
commit and handed back on resume. The HMAC channel of the main job keeps none: each
process authenticates under a fresh random key (:class:`FreshKeyAuth`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from experiments.keygen.summary import BlockTotals, KeySummary
from labctl.link.nodes import BlockResult
from labctl.qkd.secret import SecretBits
from labctl.store.keystore import KeyStore, KeyStoreError

STATE_KEY = "keygen"
BLOCK_STREAM = "qkd"  # the stream of each committed block's event
"""The checkpoint state's entry for key generation (other plans may add their own)."""

log = logging.getLogger(__name__)


class AuthResume(Protocol):
    """State the classical channel's authentication must carry over a resume.

    ``snapshot()`` is saved with every commit; a resume passes the last one to
    ``resume_from``. A scheme that spends key (a Wegman-Carter pool) must reserve before it
    spends and snapshot the reservation, so that a resume never spends anything twice: what
    was reserved after the checkpoint is lost, never reused.
    """

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state to persist at a commit."""
        ...

    def resume_from(self, state: dict[str, Any] | None) -> None:
        """Continue after a crash from the last committed snapshot (None: a fresh run)."""
        ...


class FreshKeyAuth:
    """HMAC under a fresh random key per process: nothing to carry over, nothing reused."""

    scheme = "hmac-fresh-key"

    def snapshot(self) -> dict[str, Any]:
        """Only the scheme's name: a resume checks it authenticates the same way."""
        return {"scheme": self.scheme}

    def resume_from(self, state: dict[str, Any] | None) -> None:
        """Refuse a checkpoint written under another scheme (its state would be dropped)."""
        if state is not None and state.get("scheme") != self.scheme:
            raise CheckpointError(
                f"the checkpoint's channel authentication is {state.get('scheme')!r}, this "
                f"run uses {self.scheme!r}: resume it with the scheme that wrote it"
            )


class Ages(Protocol):
    """Run time and calibration age on the run clock (``experiments.keygen.resume``)."""

    def run_time_s(self) -> float:
        """Run-clock seconds the run has been running."""
        ...

    def calibration_age_s(self) -> float | None:
        """Run-clock seconds since the calibration (None: none passed)."""
        ...


class CheckpointError(Exception):
    """A checkpoint or the key stores cannot be resumed from (the message says why)."""


@dataclass
class KeygenState:
    """What a resume of key generation continues from (plain JSON in checkpoint.json)."""

    next_block: int = 0
    """The number the next acquired block gets."""
    committed_block: int = -1
    """Every block up to this one is committed (-1: none)."""
    sums: BlockTotals = field(default_factory=BlockTotals)
    calibrated_age_s: float | None = None
    """Run-clock seconds since the calibration at the last checkpoint (None: none passed)."""
    wall_ts: float = 0.0
    """Wall-clock time of the last checkpoint (time passed since ages the calibration)."""
    run_time_s: float | None = None
    """Run-clock seconds the run had been running at the last checkpoint (all processes)."""
    auth: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The checkpoint's state entry."""
        return {**asdict(self), "sums": asdict(self.sums)}

    @classmethod
    def from_checkpoint(cls, state: Any) -> KeygenState | None:
        """The key-generation state of a run's checkpoint state, or None when it has none."""
        if not isinstance(state, dict) or not isinstance(state.get(STATE_KEY), dict):
            return None
        entry = dict(state[STATE_KEY])
        try:
            sums = BlockTotals(**entry.pop("sums", {}))
            restored = cls(sums=sums, **entry)
        except TypeError as exc:
            raise CheckpointError(f"checkpoint state {STATE_KEY!r}: {exc}") from None
        if restored.committed_block >= restored.next_block:
            raise CheckpointError(
                f"checkpoint state {STATE_KEY!r}: committed_block {restored.committed_block} "
                f"is not before next_block {restored.next_block}"
            )
        return restored


@dataclass(frozen=True)
class Reconciled:
    """What :func:`reconcile` did: uncommitted keys deleted, committed ones completed."""

    deleted: dict[str, int]
    """Per store path: keys of blocks after the last committed one that were deleted."""
    completed: dict[str, int]
    """Per store path: committed keys copied in from the other store."""
    key_ids: list[str]
    """The committed keys of the run, in store order."""


def reconcile(stores: list[KeyStore], run_id: str, state: KeygenState) -> Reconciled:
    """Make the stores hold exactly the committed keys of ``run_id`` (see the module doc).

    Raises CheckpointError when, after that, the stores do not hold what the state counts
    (a key lost at both ends, or stores from another run put back).
    """
    rows = {str(s.path): s.run_keys(run_id) for s in stores}
    deleted: dict[str, int] = {}
    for store in stores:
        late = [k for k, _, b in rows[str(store.path)] if b is None or b > state.committed_block]
        deleted[str(store.path)] = store.discard(late)
    committed = {
        path: [(k, n, b) for k, n, b in found if b is not None and b <= state.committed_block]
        for path, found in rows.items()
    }
    by_id: dict[str, tuple[int, int | None]] = {}
    for found in committed.values():
        for k, n, b in found:
            by_id[k] = (n, b)
    completed: dict[str, int] = {}
    for store in stores:
        have = {k for k, _, _ in committed[str(store.path)]}
        missing = [k for k in by_id if k not in have]
        for kid in missing:
            donor = next(s for s in stores if kid in {k for k, _, _ in committed[str(s.path)]})
            stored = donor.get_stored(kid)
            store.add(stored.key, key_id=kid, run_id=run_id, block=stored.block)
        completed[str(store.path)] = len(missing)
        if missing:
            log.warning(
                "%s: %d committed key(s) completed from the peer store", store.path, len(missing)
            )
    ids = [k for k, _, _ in stores[0].run_keys(run_id)] if stores else []
    bits = sum(n for n, _ in by_id.values())
    blocks = {b for _, b in by_id.values()}
    sums = state.sums
    # What a block fed into the Wegman-Carter pool is part of its secret bits, not of its key.
    stored_bits = sums.secret_bits - sums.auth_key_bits
    if len(by_id) != sums.blocks_with_key or bits != stored_bits or len(blocks) != len(by_id):
        raise CheckpointError(
            f"key stores {', '.join(rows)} hold {len(by_id)} committed key(s) of run {run_id} "
            f"({bits} bits) but its checkpoint counts {sums.blocks_with_key} "
            f"({stored_bits} bits): the stores were changed since; not resuming"
        )
    return Reconciled(deleted, completed, ids)


def calibrated_state(state: KeygenState | None, ages: Ages) -> dict[str, Any]:
    """The checkpoint state right after a calibration: ``state`` (or a fresh one) with the
    calibration's age and the run time updated; committed blocks and sums unchanged."""
    state = state or KeygenState()
    state.calibrated_age_s = ages.calibration_age_s()
    state.run_time_s = ages.run_time_s()
    state.wall_ts = time.time()
    return {STATE_KEY: state.to_json()}


class Committer:
    """Commits blocks in order: when a block's key is at both ends, or it gave none.

    Bob's result arrives from the pipeline (``result``); Alice's store reports each key it
    holds (``stored_at_alice``, wired by :class:`WatchedKeyStore`); whichever comes second
    commits the block: ``on_commit`` (dataset row, link metrics) runs and returns the
    block's ``qkd`` event, then the state and that event are persisted together with
    ``persist`` (the run's ``commit``), so a resume finds both or neither. With
    ``alice_local`` False (Alice in another process) Bob's store and result are the commit.
    """

    def __init__(
        self,
        state: KeygenState,
        summary: KeySummary,
        on_commit: Callable[[BlockResult], dict[str, Any]],
        persist: Callable[[dict[str, Any], tuple[str, dict[str, Any]] | None], None],
        ages: Ages,
        *,
        alice_local: bool,
        auth: AuthResume,
    ) -> None:
        self.state = state
        self.summary = summary
        self._on_commit = on_commit
        self._persist = persist
        self._ages = ages
        self._alice_local = alice_local
        self._auth = auth
        self._waiting: dict[str, BlockResult] = {}
        self._at_alice: set[str] = set()

    def acquired(self, block: int) -> None:
        """Block ``block`` went to post-processing: the next one is numbered after it."""
        self.state.next_block = max(self.state.next_block, block + 1)

    def result(self, result: BlockResult) -> None:
        """Bob finished a block (his store holds its key, if any)."""
        kid = result.key_id
        if kid is None or not self._alice_local:
            self._commit(result)
        elif kid in self._at_alice:
            self._at_alice.remove(kid)
            self._commit(result)
        else:
            self._waiting[kid] = result

    def stored_at_alice(self, key_id: str) -> None:
        """Alice's store holds ``key_id`` (durably)."""
        waiting = self._waiting.pop(key_id, None)
        if waiting is None:
            self._at_alice.add(key_id)
        else:
            self._commit(waiting)

    @property
    def uncommitted(self) -> int:
        """Blocks whose key is at Bob only (a wind-down reconciles them away)."""
        return len(self._waiting)

    def _commit(self, result: BlockResult) -> None:
        self.summary.add(result)
        event = self._on_commit(result)
        self.state.committed_block = max(self.state.committed_block, result.block)
        self.state.next_block = max(self.state.next_block, result.block + 1)
        self._persist(self.snapshot(), (BLOCK_STREAM, event))

    def checkpoint_state(self) -> None:
        """Persist the state now (also at each acquisition: block numbers never repeat)."""
        self._persist(self.snapshot(), None)

    def snapshot(self) -> dict[str, Any]:
        """The checkpoint state as it stands."""
        state = self.state
        state.sums = self.summary.sums
        state.calibrated_age_s = self._ages.calibration_age_s()
        state.run_time_s = self._ages.run_time_s()
        state.wall_ts = time.time()
        state.auth = self._auth.snapshot()
        return {STATE_KEY: state.to_json()}


class WatchedKeyStore(KeyStore):
    """A key store that reports every key it stores (after the write is durable)."""

    def __init__(
        self, path: Path, *, on_add: Callable[[str], None], encryption_key: bytes | None = None
    ) -> None:
        super().__init__(path, encryption_key=encryption_key)
        self._on_add = on_add

    def add(
        self,
        key: SecretBits,
        *,
        key_id: str | None = None,
        run_id: str | None = None,
        block: int | None = None,
    ) -> str:
        """KeyStore.add, then the report."""
        kid = super().add(key, key_id=key_id, run_id=run_id, block=block)
        self._on_add(kid)
        return kid


__all__ = [
    "STATE_KEY",
    "Ages",
    "AuthResume",
    "CheckpointError",
    "Committer",
    "FreshKeyAuth",
    "KeyStoreError",
    "KeygenState",
    "Reconciled",
    "WatchedKeyStore",
    "calibrated_state",
    "reconcile",
]
