"""With no broker configured, labctl runs one on 127.0.0.1 only and the publisher uses it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from labctl.documents import Document
from labctl.stream.recorder import recording
from labctl.stream.session import open_stream


async def test_default_stream_uses_a_loopback_broker(tmp_path: Path) -> None:
    async with open_stream(None, lab="lab", node="alice", outbox_dir=tmp_path / "ob") as stream:
        assert stream.settings.host == "127.0.0.1"
        listening = [
            c.laddr
            for c in psutil.Process(os.getpid()).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN
        ]
        assert (("127.0.0.1", stream.settings.port)) in [(a.ip, a.port) for a in listening]
        assert all(a.ip == "127.0.0.1" for a in listening if a.port == stream.settings.port)
        assert not any(a.ip in ("0.0.0.0", "::") for a in listening)
        async with recording(stream.settings, "labctl/v1/lab/alice/#") as rec:
            stream.publisher.set_state("running")
            for seq in range(50):
                stream.publisher.emit(Document("event", "r-emb", seq, time.time(), "primary", {}))
            assert await stream.publisher.flush(15)
            assert await rec.wait_for(lambda: len(rec.runs.seqs("r-emb")) == 50, 15)
            assert await rec.wait_for(
                lambda: ("labctl/v1/lab/alice/$state", b"running") in rec.messages, 5
            )
        assert stream.commands is None
