"""Progress bars never show more steps done than the total."""

from __future__ import annotations

import io

from labctl.progress import RunProgress


def test_a_count_past_its_total_grows_the_total() -> None:
    out = io.StringIO()
    progress = RunProgress(file=out, enabled=True)
    with progress.task("blocks", total=4) as task:
        for _ in range(5):
            task.advance()
        assert task.total == 5 and task.completed == 5
    assert progress.tasks == []
    assert "5/4" not in out.getvalue()
