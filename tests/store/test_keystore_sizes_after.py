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
