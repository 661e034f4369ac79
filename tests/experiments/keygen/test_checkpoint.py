"""The key plan's commit point and reconciliation of the two key stores on resume.

Real SQLite stores in a temp folder; the states are what a crash at each moment of a
block's commit leaves behind (Bob stored, Alice not; both stored, checkpoint not written).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from experiments.keygen.checkpoint import (
    STATE_KEY,
    CheckpointError,
    Committer,
    FreshKeyAuth,
    KeygenState,
    WatchedKeyStore,
    reconcile,
)
from experiments.keygen.summary import KeySummary
from labctl.link.nodes import BlockResult
from labctl.qkd.secret import SecretBits
from labctl.store.keystore import KeyStore

RUN = "20261207-000000-main"


def _bits(n: int = 64) -> SecretBits:
    return SecretBits.from_bytes(os.urandom((n + 7) // 8), n)


def _result(block: int, key_id: str | None, bits: int) -> BlockResult:
    return BlockResult(
        block=block,
        status="key" if key_id else "no-key",
        reason="stored" if key_id else "bound",
        pulses=1000,
        detections=100,
        sifted_bits=50,
        key_basis_bits=25,
        test_basis_bits=25,
        qber_z=0.02,
        qber_x=0.02,
        disclosed_bits=10,
        ec_efficiency=1.1,
        round_trips=3,
        channel_uses=9,
        secret_bits=bits,
        key_id=key_id,
        acquired_s=1e-6,
    )


class _Ages:
    def run_time_s(self) -> float:
        return 12.5

    def calibration_age_s(self) -> float | None:
        return 3.0


def _committer(state: KeygenState, alice_local: bool = True) -> tuple[Committer, list[Any]]:
    persisted: list[Any] = []
    committed: list[BlockResult] = []

    def on_commit(result: BlockResult) -> dict[str, Any]:
        committed.append(result)
        return {"block": result.block}

    def persist(state: dict[str, Any], event: tuple[str, dict[str, Any]] | None) -> None:
        # A committed block's event travels with the state that counts it.
        assert event is None or event[1]["block"] == state[STATE_KEY]["committed_block"]
        persisted.append(state)

    committer = Committer(
        state,
        KeySummary(RUN, 1e9),
        on_commit,
        persist,
        _Ages(),
        alice_local=alice_local,
        auth=FreshKeyAuth(),
    )
    return committer, [persisted, committed]


def _pair(tmp_path: Path) -> tuple[KeyStore, KeyStore]:
    return KeyStore(tmp_path / "keys-bob.sqlite"), KeyStore(tmp_path / "keys-alice.sqlite")


def test_a_block_commits_only_when_its_key_is_at_both_ends_in_either_order(
    tmp_path: Path,
) -> None:
    committer, (persisted, committed) = _committer(KeygenState())
    committer.acquired(0)
    committer.acquired(1)
    committer.result(_result(0, "k0", 40))  # Bob first: waits for Alice
    assert committed == [] and committer.uncommitted == 1
    committer.stored_at_alice("k0")
    committer.stored_at_alice("k1")  # Alice first: waits for Bob's result
    assert [r.block for r in committed] == [0]
    committer.result(_result(1, "k1", 24))
    committer.result(_result(2, None, 0))  # no key: committed at once
    assert [r.block for r in committed] == [0, 1, 2] and committer.uncommitted == 0
    state = persisted[-1][STATE_KEY]
    assert state["committed_block"] == 2 and state["next_block"] == 3
    assert state["sums"]["blocks"] == 3 and state["sums"]["secret_bits"] == 64
    assert state["calibrated_age_s"] == 3.0 and state["run_time_s"] == 12.5
    assert state["auth"] == {"scheme": "hmac-fresh-key"}
    restored = KeygenState.from_checkpoint(persisted[-1])
    assert restored is not None and restored.sums.blocks_with_key == 2


def test_watched_store_reports_a_key_once_it_is_stored(tmp_path: Path) -> None:
    seen: list[str] = []
    with WatchedKeyStore(tmp_path / "a.sqlite", on_add=seen.append) as store:
        kid = store.add(_bits(), run_id=RUN, block=0)
        assert seen == [kid] and store.run_keys(RUN) == [(kid, 64, 0)]


def test_reconcile_deletes_the_uncommitted_remainder_at_both_ends(tmp_path: Path) -> None:
    bob, alice = _pair(tmp_path)
    committed_ids = []
    for block in range(2):  # committed: at both ends
        key = _bits(40)
        kid = bob.add(key, run_id=RUN, block=block)
        alice.add(key, key_id=kid, run_id=RUN, block=block)
        committed_ids.append(kid)
    bob.add(_bits(), run_id=RUN, block=3)  # killed after Bob stored block 3
    late = _bits()
    kid = bob.add(late, run_id=RUN, block=4)  # killed after both stored, before the commit
    alice.add(late, key_id=kid, run_id=RUN, block=4)
    other = bob.add(_bits(), run_id="another-run", block=3)
    state = KeygenState(next_block=5, committed_block=2)
    state.sums.blocks_with_key, state.sums.secret_bits = 2, 80
    done = reconcile([bob, alice], RUN, state)
    assert done.deleted == {str(bob.path): 2, str(alice.path): 1}
    assert done.key_ids == committed_ids
    assert [k for k, _, _ in bob.run_keys(RUN)] == [k for k, _, _ in alice.run_keys(RUN)]
    assert [r[0] for r in bob.run_keys(RUN)] == committed_ids
    assert bob.run_keys("another-run") == [(other, 64, 3)]  # another run's keys are not touched


def test_reconcile_completes_a_committed_key_missing_at_one_end(tmp_path: Path) -> None:
    bob, alice = _pair(tmp_path)
    key = _bits(48)
    kid = bob.add(key, run_id=RUN, block=0)
    state = KeygenState(next_block=1, committed_block=0)
    state.sums.blocks_with_key, state.sums.secret_bits = 1, 48
    done = reconcile([bob, alice], RUN, state)
    assert done.completed == {str(bob.path): 0, str(alice.path): 1}
    assert alice.get(kid) == key


def test_reconcile_counts_the_bits_a_block_gave_to_the_authentication_pool(
    tmp_path: Path,
) -> None:
    # A block's secret bits are its stored key plus what refilled the Wegman-Carter pool.
    bob, alice = _pair(tmp_path)
    key = _bits(40)
    kid = bob.add(key, run_id=RUN, block=0)
    alice.add(key, key_id=kid, run_id=RUN, block=0)
    state = KeygenState(next_block=1, committed_block=0)
    state.sums.blocks_with_key, state.sums.secret_bits, state.sums.auth_key_bits = 1, 168, 128
    assert reconcile([bob, alice], RUN, state).key_ids == [kid]
    state.sums.auth_key_bits = 0
    with pytest.raises(CheckpointError, match=r"\(40 bits\) but its checkpoint counts 1 \(168"):
        reconcile([bob, alice], RUN, state)


def test_reconcile_refuses_stores_that_do_not_hold_what_the_checkpoint_counts(
    tmp_path: Path,
) -> None:
    bob, alice = _pair(tmp_path)
    state = KeygenState(next_block=3, committed_block=2)
    state.sums.blocks_with_key, state.sums.secret_bits = 1, 64
    with pytest.raises(CheckpointError, match=r"hold 0 committed key\(s\).*counts 1"):
        reconcile([bob, alice], RUN, state)


def test_a_checkpoint_state_is_checked_and_auth_schemes_must_match() -> None:
    assert KeygenState.from_checkpoint({"other": 1}) is None
    assert KeygenState.from_checkpoint(None) is None
    with pytest.raises(CheckpointError, match="committed_block 4 is not before next_block 4"):
        KeygenState.from_checkpoint({STATE_KEY: {"next_block": 4, "committed_block": 4}})
    with pytest.raises(CheckpointError, match="unexpected keyword"):
        KeygenState.from_checkpoint({STATE_KEY: {"next_blok": 4}})
    FreshKeyAuth().resume_from({"scheme": "hmac-fresh-key"})
    with pytest.raises(CheckpointError, match="wegman-carter"):
        FreshKeyAuth().resume_from({"scheme": "wegman-carter", "pool_offset": 10})
