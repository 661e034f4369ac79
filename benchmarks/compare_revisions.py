"""One benchmark script on an earlier revision and on this checkout, interleaved, as JSON.

    python benchmarks/compare_revisions.py --previous-rev 3f76055 [--rounds 2] \
        -- benchmarks/drivers.py --seconds 1

The earlier revision is checked out into a temporary git worktree (removed afterwards).
Each round runs the script there and here, one after the other, alternating which goes
first, each a child process with its own tree first on ``PYTHONPATH`` (so ``labctl``,
``drivers``, ``sims`` and ``experiments`` come from that tree) and its own tree as working
folder. A warm-up run of each (numba compiles each tree's kernels into that tree's cache)
is not counted. The script must print one JSON object on stdout; every number in it is
reported per side (the median over rounds) with the ratio this checkout / previous.
Prints one JSON object: the command, both revisions, per-side medians, ratios, every
round's raw output and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _run(tree: Path, script: str, args: list[str], timeout_s: float) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(tree / script), *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"{script} in {tree} exited {done.returncode}:\n{done.stdout[-2000:]}"
            f"{done.stderr[-2000:]}"
        )
    start = done.stdout.find("{")
    if start < 0:
        raise SystemExit(f"{script} in {tree} printed no JSON object:\n{done.stdout[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout[start:])
    return result


def _numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a JSON value by its dotted path (bools and load averages left out)."""
    found: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            if "load_average" not in str(key):
                found.update(_numbers(value, f"{prefix}{key}."))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found.update(_numbers(value, f"{prefix}{i}."))
    elif isinstance(data, int | float) and not isinstance(data, bool):
        found[prefix.rstrip(".")] = float(data)
    return found


def _medians(rounds: list[dict[str, Any]]) -> dict[str, float]:
    per_key: dict[str, list[float]] = {}
    for result in rounds:
        for key, value in _numbers(result).items():
            per_key.setdefault(key, []).append(value)
    return {key: statistics.median(values) for key, values in per_key.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--previous-rev", required=True, help="the earlier revision (git)")
    parser.add_argument("--rounds", type=int, default=2, help="measured runs per side")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per run")
    parser.add_argument("script", help="benchmark script, relative to the repository root")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (after --)")
    options = parser.parse_args()
    args = [a for a in options.args if a != "--"]
    if options.rounds < 1:
        parser.error("--rounds must be >= 1")
    previous_rev = _git("rev-parse", "--short", options.previous_rev)
    current_rev = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="labctl-previous-") as folder:
        previous_tree = Path(folder) / "tree"
        _git("worktree", "add", "--detach", str(previous_tree), previous_rev)
        try:
            sides = {"previous": previous_tree, "current": REPO}
            for tree in sides.values():  # warm-up: compile caches, page cache
                _run(tree, options.script, args, options.timeout_s)
            rounds: dict[str, list[dict[str, Any]]] = {"previous": [], "current": []}
            for i in range(options.rounds):
                order = ["previous", "current"] if i % 2 == 0 else ["current", "previous"]
                for side in order:
                    rounds[side].append(_run(sides[side], options.script, args, options.timeout_s))
        finally:
            _git("worktree", "remove", "--force", str(previous_tree))
    medians = {side: _medians(results) for side, results in rounds.items()}
    ratios = {
        key: round(value / medians["previous"][key], 4)
        for key, value in medians["current"].items()
        if medians["previous"].get(key) not in (None, 0.0)
    }
    print(
        json.dumps(
            {
                "benchmark": "compare_revisions",
                "script": options.script,
                "args": args,
                "previous_rev": previous_rev,
                "current_rev": current_rev + ("+uncommitted" if dirty else ""),
                "rounds": options.rounds,
                "median": medians,
                "ratio_current_to_previous": ratios,
                "raw": rounds,
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
