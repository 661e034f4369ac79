"""The dense node store: closed-form ranges and paths equal an explicit tree walk."""

import numpy as np
import pytest

from labctl.qkd.cascade.nodes import NodeStore


def _walk(length: int) -> dict[int, tuple[int, int]]:
    """Heap id -> [start, end) by recursive proportional halving, nodes of >= 2 bits."""
    nodes: dict[int, tuple[int, int]] = {}

    def visit(h: int, depth: int, i: int) -> None:
        s, e = (i * length) >> depth, ((i + 1) * length) >> depth
        if e - s < 2:
            return
        nodes[h] = (s, e)
        visit(2 * h, depth + 1, 2 * i)
        visit(2 * h + 1, depth + 1, 2 * i + 1)

    visit(1, 0, 0)
    return nodes


@pytest.mark.parametrize("length", [2, 3, 5, 11, 64, 100, 257])
def test_children_partition_parent_and_halves_differ_by_at_most_one(length: int) -> None:
    nodes = _walk(length)
    for h, (s, e) in nodes.items():
        left = nodes.get(2 * h)
        right = nodes.get(2 * h + 1)
        mid = s + ((e - s) // 2 if left is None and right is None else 0)
        if left is not None:
            mid = left[1]
        elif right is not None:
            mid = right[0]
        assert s < mid < e and abs((mid - s) - (e - mid)) <= 1
        assert h < 2 ** int(np.ceil(np.log2(length)))  # fits the store's slots


@pytest.mark.parametrize(("n", "k"), [(1000, 64), (1000, 100), (1001, 500), (37, 37), (50, 7)])
def test_node_range_and_paths_match_the_tree(n: int, k: int) -> None:
    store = NodeStore(n, (k,))
    blocks = -(-n // k)
    for b in range(blocks):
        length = min(k, n - b * k)
        tree = _walk(length)
        heaps = np.array(sorted(tree), dtype=np.int64)
        if heaps.size == 0:
            continue
        zeros = np.zeros(heaps.size, dtype=np.int64)
        s, e = store.node_range(zeros, zeros + b, heaps)
        assert [(int(x) - b * k, int(y) - b * k) for x, y in zip(s, e, strict=True)] == [
            tree[int(h)] for h in heaps
        ]
        # Record every node even, toggle one bit: exactly the nodes holding it turn odd.
        ids = store.node_id(zeros, zeros + b, heaps)
        store.record(ids, np.zeros(ids.size, dtype=np.bool_))
        bit = length // 3
        store.toggle_paths(np.zeros(1, dtype=np.int64), np.array([b * k + bit]))
        _, odd = store.known_odd(ids)
        holding = [tree[int(h)][0] <= bit < tree[int(h)][1] for h in heaps]
        assert odd.tolist() == holding
        _, _, h, s, e = store.minimal_odd()
        deepest = max((int(x) for x, hold in zip(heaps, holding, strict=True) if hold), default=0)
        assert h.tolist() == [deepest] and int(e[0] - s[0]) in (2, 3)
        store.toggle_paths(np.zeros(1, dtype=np.int64), np.array([b * k + bit]))
        assert store.minimal_odd()[0].size == 0


def test_bad_frame_is_named() -> None:
    with pytest.raises(ValueError, match="NodeStore"):
        NodeStore(0, (4,))
