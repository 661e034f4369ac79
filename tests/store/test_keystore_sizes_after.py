"""KeyStore.sizes_after: a reader follows the store by row without reading key bits."""

from __future__ import annotations

import os
from pathlib import Path

from labctl.qkd.secret import SecretBits
from labctl.store.keystore import KeyStore


def test_sizes_after_lists_new_rows_in_order(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "keys.sqlite") as store:
        first = store.add(SecretBits.from_bytes(os.urandom(4), 30))
        second = store.add(SecretBits.from_bytes(os.urandom(8), 64))
        rows = store.sizes_after(0)
        assert [(k, n) for _, k, n in rows] == [(first, 30), (second, 64)]
        third = store.add(SecretBits.from_bytes(os.urandom(2), 9))
        assert [(k, n) for _, k, n in store.sizes_after(rows[-1][0])] == [(third, 9)]
        assert store.sizes_after(10**9) == []


def test_discard_never_lets_a_row_number_be_given_again(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    with KeyStore(path) as store:
        kept = store.add(SecretBits.from_bytes(os.urandom(4), 32), run_id="r", block=0)
        late = store.add(SecretBits.from_bytes(os.urandom(4), 32), run_id="r", block=1)
        seen = store.sizes_after(0)[-1][0]  # a reader saw the row that is then discarded
        assert store.discard([late, "not-a-key"]) == 1
        assert store.run_keys("r") == [(kept, 32, 0)]
    with KeyStore(path) as store:  # the floor is on disk, not in the process
        new = store.add(SecretBits.from_bytes(os.urandom(4), 32), run_id="r", block=2)
        assert [k for _, k, _ in store.sizes_after(seen)] == [new]
        assert store.ids() == [kept, new]
