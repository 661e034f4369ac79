"""Verification tags: equal keys match, a single flipped bit is caught."""

import numpy as np
import pytest

from labctl.qkd.errors import VerificationError
from labctl.qkd.secret import SecretBits
from labctl.qkd.verification import VerificationTag, make_tag, tag_length, tags_match, verify


def test_tag_length_from_eps_cor() -> None:
    assert tag_length(1e-15) == 50
    assert tag_length(0.5) == 1


def test_equal_keys_match_and_any_single_error_is_caught() -> None:
    rng = np.random.default_rng(0)
    key = rng.integers(0, 2, 5000, dtype=np.uint8)
    tag = VerificationTag.from_bytes(make_tag(SecretBits(key), 1e-12, rng).to_bytes())
    verify(SecretBits(key), tag)
    for pos in rng.choice(5000, 20, replace=False):
        bad = key.copy()
        bad[pos] ^= 1
        assert not tags_match(SecretBits(bad), tag)
    with pytest.raises(VerificationError, match="does not match") as info:
        verify(SecretBits(bad), tag)
    assert "[" not in str(info.value)
