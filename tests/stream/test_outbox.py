"""The durable outbox: order, spill to disk, crash recovery, torn tails, segment cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.stream.outbox import Message, Outbox, encode_frame


def msg(i: int, size: int = 40) -> Message:
    return Message("labctl/v1/l/n/run/r/primary", f'{{"seq":{i}}}'.encode().ljust(size), 1)


def drain(box: Outbox, window: int = 7) -> list[int]:
    """Consume everything like the publisher does (peek a window, commit it)."""
    seqs: list[int] = []
    while batch := box.peek(window):
        seqs += [int(m.payload.split(b":")[1].split(b"}")[0]) for m, _ in batch]
        box.commit(batch[-1][1], len(batch))
    return seqs


def test_fifo_from_memory(tmp_path: Path) -> None:
    box = Outbox(tmp_path, memory_capacity=100)
    for i in range(50):
        box.put(msg(i))
    assert box.pending == 50 and box.spilled == 0
    assert drain(box) == list(range(50))
    assert box.disk_reads == 0 and box.pending == 0


def test_spill_beyond_memory_keeps_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path, memory_capacity=10, segment_bytes=2048)
    for i in range(300):
        box.put(msg(i))
    assert box.spilled == 290
    assert drain(box) == list(range(300))
    assert box.disk_reads == 290
    # Once drained, memory serves again.
    for i in range(300, 305):
        box.put(msg(i))
    assert drain(box) == list(range(300, 305))
    assert box.disk_reads == 290
    # Acknowledged segments were deleted; only the active one is left.
    assert len(list(tmp_path.glob("seg-*.log"))) <= 2


def test_uncommitted_peek_is_repeatable(tmp_path: Path) -> None:
    box = Outbox(tmp_path, memory_capacity=0)
    for i in range(5):
        box.put(msg(i))
    first = box.peek(3)
    again = box.peek(3)  # a failed window is sent again from the same place
    assert [m for m, _ in first] == [m for m, _ in again]
    box.commit(first[-1][1], 3)
    assert drain(box) == [3, 4]


def test_reopen_replays_only_unacknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path, memory_capacity=5, segment_bytes=1024)
    for i in range(100):
        box.put(msg(i))
    done = 0
    while done < 30:
        batch = box.peek(30 - done)
        box.commit(batch[-1][1], len(batch))
        done += len(batch)
    box.close()
    again = Outbox(tmp_path)
    assert again.recovered == 70
    assert drain(again) == list(range(30, 100))


def test_killed_without_close_keeps_everything_put(tmp_path: Path) -> None:
    box = Outbox(tmp_path, memory_capacity=5, fsync_interval_s=3600)
    for i in range(40):
        box.put(msg(i))
    # No close, no sync: what put() wrote is in the kernel, which survives a killed process.
    again = Outbox(tmp_path)
    assert drain(again) == list(range(40))


@pytest.mark.parametrize("cut", [1, 5, 9, 30])
def test_torn_tail_is_ignored(tmp_path: Path, cut: int) -> None:
    box = Outbox(tmp_path)
    for i in range(10):
        box.put(msg(i))
    box.close()
    seg = sorted(tmp_path.glob("seg-*.log"))[-1]
    frame = encode_frame(msg(10))
    with seg.open("ab") as f:
        f.write(frame[:cut])  # a crash in the middle of a write
    again = Outbox(tmp_path)
    assert again.recovered == 10
    again.put(msg(11))  # appended after the cut-off tail, not after the garbage
    assert drain(again) == [*range(10), 11]


def test_corrupt_frame_in_old_segment_ends_that_segment(tmp_path: Path) -> None:
    box = Outbox(tmp_path, memory_capacity=0, segment_bytes=1024)
    for i in range(60):
        box.put(msg(i))
    box.close()
    first = sorted(tmp_path.glob("seg-*.log"))[0]
    data = bytearray(first.read_bytes())
    frame_len = len(encode_frame(msg(0)))
    data[frame_len * 2 + 12] ^= 0xFF  # flip a byte inside the third frame: CRC fails
    first.write_bytes(bytes(data))
    seqs = drain(Outbox(tmp_path))
    per_segment = (1024 + frame_len - 1) // frame_len
    assert seqs[:2] == [0, 1]
    assert seqs[2:] == list(range(per_segment, 60))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="segment_bytes"):
        Outbox("/tmp/never-created-outbox-x", segment_bytes=10)


def test_outbox_files_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "ob"
    box = Outbox(folder, memory_capacity=5, segment_bytes=1024)
    for i in range(50):
        box.put(msg(i))
    batch = box.peek(10)
    box.commit(batch[-1][1], len(batch))
    box.close()
    assert (folder / "cursor").exists() and list(folder.glob("seg-*.log"))
    assert folder.stat().st_mode & 0o777 == 0o700
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
