"""Throughput of the simulated optical world; prints one JSON object.

    python benchmarks/sim_throughput.py [--cpu-s 3] [--long-sim-s 100] [--previous-rev bb8f3ae]

Figures:
- events_per_cpu_s: Bob's tags per CPU-second (time.process_time) with the full detector
  model (signal clicks, dark counts, dead time, afterpulses, jitter, tagger clock with
  offset/ppm/wander) at a high click rate (SNSPDs at 50 km, 4 x 5 MHz per detector, dead time
  biting), and the same for the GYS link, each with a ratio against the 20 M/s target,
  against the previous compiled path (sims/world as of ``--previous-rev``, loaded from git
  into this process under another package name: bulk numpy draws + numba loops) and against
  the pure-numpy path (``compiled_kernels: false``), measured in alternating rounds in this
  process so that load from other work hits all alike.
- sim_s_per_wall_s (and per CPU second) for the default world and for GYS at 1 GHz / 50 km
  (both taggers read), with a ratio against a dense per-pulse reference measured in the same
  process (one uniform draw per pulse, no detector model at all).
- peak RSS after 10 s and after 100 s of simulated GYS time, each in a fresh process, to
  show that memory does not grow with duration (batches stream).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sims.world import World

TARGET_EVENTS_PER_S = 20.0e6
TARGET_GYS_REALTIME = 10.0

FULL_MODEL: dict[str, Any] = {
    "fiber": {"length_km": 50.0},
    "detectors": {"afterpulse_probability": 0.01, "afterpulse_decay_ns": 100.0},
    "taggers": {
        "bob": {
            "offset_ps": 1_234_567,
            "frequency_offset_ppm": 2.5,
            "wander_amplitude_ps": 50.0,
            "wander_period_s": 10.0,
        }
    },
}
GYS_50KM: dict[str, Any] = {
    "fiber": {"length_km": 50.0, "loss_db_per_km": 0.21},
    "detectors": {"efficiency": 0.045, "dark_count_probability_per_pulse": 4.25e-7},
    "receiver": {"misalignment": 0.033, "optical_loss_db": 0.0},
    "switch": {"insertion_loss_db": 0.0},
}


PREVIOUS_REV = "bb8f3ae"
"""Last commit of sims/world before the kernels drew their own randomness."""
_PREVIOUS_PACKAGE = "sim_world_previous"


def load_previous_world(rev: str) -> Any | None:
    """The World class of sims/world at git ``rev``, imported as another package (or None).

    The files come from ``git show`` into a temporary folder with ``sims.world`` renamed, so
    the old and the new world run side by side in this process (sims.clock is shared).
    """
    repo = Path(__file__).resolve().parent.parent
    try:
        listing = subprocess.run(
            ["git", "ls-tree", "--name-only", rev, "sims/world/"],
            cwd=repo, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except OSError:  # no git here: the numpy path remains the only baseline
        return None
    if listing.returncode != 0 or not listing.stdout.strip():
        return None
    root = Path(tempfile.mkdtemp(prefix="sim_world_previous_"))
    package = root / _PREVIOUS_PACKAGE
    package.mkdir()
    for name in listing.stdout.split():
        if not name.endswith(".py"):
            continue
        text = subprocess.run(
            ["git", "show", f"{rev}:{name}"],
            cwd=repo, capture_output=True, text=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        (package / Path(name).name).write_text(text.replace("sims.world", _PREVIOUS_PACKAGE))
    sys.path.insert(0, str(root))
    return importlib.import_module(_PREVIOUS_PACKAGE).World


def events_per_cpu_s(
    settings: dict[str, Any], cpu_budget_s: float, world_class: Any = World
) -> tuple[float, float]:
    """Bob's tags per CPU second and sim seconds covered per CPU second."""
    world = world_class.from_settings(settings)
    world.start_stream("bob")
    world.read_batch("bob")  # warm-up: tables, first slice (and compilation)
    n_tags = 0
    start_cpu, start_sim = time.process_time(), world.clock.now_s()
    while time.process_time() - start_cpu < cpu_budget_s:
        n_tags += len(world.read_batch("bob"))
    cpu_s = time.process_time() - start_cpu
    return n_tags / cpu_s, (world.clock.now_s() - start_sim) / cpu_s


def against_baselines(
    settings: dict[str, Any], cpu_budget_s: float, previous: Any | None, rounds: int = 3
) -> dict[str, float]:
    """Events and sim s per CPU s: compiled kernels, the previous compiled path, numpy path.

    The variants alternate in short rounds so that load from other work on the shared
    machine hits all alike; each figure is the best round.
    """
    variants: dict[str, tuple[Any, bool]] = {"new": (World, True), "numpy": (World, False)}
    if previous is not None:
        variants["previous"] = (previous, True)
    best = {name: (0.0, 0.0) for name in variants}
    for _ in range(rounds):
        for name, (world_class, compiled) in variants.items():
            figures = events_per_cpu_s(
                {**settings, "compiled_kernels": compiled}, cpu_budget_s / rounds, world_class
            )
            best[name] = max(best[name], figures)
    result = {
        "events_per_cpu_s": best["new"][0],
        "sim_s_per_cpu_s": best["new"][1],
        "numpy_events_per_cpu_s": best["numpy"][0],
        "ratio_vs_numpy": best["new"][0] / best["numpy"][0],
    }
    if previous is not None:
        result["previous_events_per_cpu_s"] = best["previous"][0]
        result["ratio_vs_previous"] = best["new"][0] / best["previous"][0]
    return result


def dense_reference_sim_s_per_cpu_s(settings: dict[str, Any], cpu_budget_s: float) -> float:
    """The naive way: one uniform per pulse against its click probability, nothing else."""
    world = World.from_settings(settings)
    rng = np.random.default_rng(1)
    mean = world.optics.mean_photons_at_bob().max()
    p_click = float(-np.expm1(-mean * world.detectors.efficiencies().max()))
    pulses_per_step = 10_000_000
    pulses = 0
    start = time.process_time()
    while time.process_time() - start < cpu_budget_s:
        np.flatnonzero(rng.random(pulses_per_step) < p_click)
        pulses += pulses_per_step
    return pulses / world.settings.source.rate_hz / (time.process_time() - start)


def sim_s_per_wall_s(settings: dict[str, Any], wall_budget_s: float) -> dict[str, float]:
    """Stream both taggers for a wall-clock budget; sim seconds per wall and per CPU second."""
    world = World.from_settings(settings)
    world.start_stream("alice")
    world.start_stream("bob")
    world.read_batch("bob")
    tags = 0
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    start_sim = world.clock.now_s()
    while time.perf_counter() - start_wall < wall_budget_s:
        tags += len(world.read_batch("bob"))
        while world.taggers["alice"].has_batch():
            world.read_batch("alice")
    wall_s = time.perf_counter() - start_wall
    cpu_s = time.process_time() - start_cpu
    sim_s = world.clock.now_s() - start_sim
    return {
        "sim_s_per_wall_s": sim_s / wall_s,
        "sim_s_per_cpu_s": sim_s / cpu_s,
        "bob_tags_per_sim_s": tags / sim_s,
    }


def _run_for(sim_s: float) -> None:
    """Child process: stream GYS for ``sim_s`` of sim time, then print peak RSS in MiB."""
    world = World.from_settings(GYS_50KM)
    world.start_stream("alice")
    world.start_stream("bob")
    while world.clock.now_s() < sim_s:
        world.read_batch("bob")
        while world.taggers["alice"].has_batch():
            world.read_batch("alice")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mib": peak_kib / 1024.0, "sim_s": world.clock.now_s()}))


def peak_rss_mib(sim_s: float) -> float:
    """Peak RSS of a fresh process that simulated ``sim_s`` seconds of GYS."""
    out = subprocess.run(
        [sys.executable, __file__, "--child-sim-s", str(sim_s)],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"])


def numba_version() -> str:
    """The installed numba version (only called when the compiled kernels loaded)."""
    import numba

    return str(numba.__version__)


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-s", type=float, default=3.0, help="CPU budget per throughput figure")
    parser.add_argument("--long-sim-s", type=float, default=100.0, help="long RSS run, sim s")
    parser.add_argument(
        "--previous-rev", default=PREVIOUS_REV, help="git revision of the previous sims/world"
    )
    parser.add_argument("--child-sim-s", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_sim_s is not None:
        _run_for(args.child_sim_s)
        return
    previous = load_previous_world(args.previous_rev)
    full = against_baselines(FULL_MODEL, 2.0 * args.cpu_s, previous)
    gys_events = against_baselines(GYS_50KM, 2.0 * args.cpu_s, previous)
    events = full["events_per_cpu_s"]
    default = sim_s_per_wall_s({}, args.cpu_s)
    gys = sim_s_per_wall_s(GYS_50KM, args.cpu_s)
    dense_gys = dense_reference_sim_s_per_cpu_s(GYS_50KM, args.cpu_s)
    rss_short = peak_rss_mib(10.0)
    rss_long = peak_rss_mib(args.long_sim_s)
    result = {
        "benchmark": "sim_throughput",
        "kernels": "numba " + numba_version() if World.from_settings({}).compiled else "numpy",
        "events_per_cpu_s": round(events),
        "events_ratio_vs_target_20M": round(events / TARGET_EVENTS_PER_S, 3),
        "previous_path_rev": args.previous_rev if previous is not None else None,
        "previous_path_events_per_cpu_s": round(full.get("previous_events_per_cpu_s", 0.0)),
        "events_ratio_vs_previous_path": round(full.get("ratio_vs_previous", 0.0), 2),
        "numpy_path_events_per_cpu_s": round(full["numpy_events_per_cpu_s"]),
        "events_ratio_vs_numpy_path": round(full["ratio_vs_numpy"], 2),
        "full_model_sim_s_per_cpu_s": round(full["sim_s_per_cpu_s"], 4),
        "gys_events_per_cpu_s": round(gys_events["events_per_cpu_s"]),
        "gys_events_ratio_vs_target_20M": round(
            gys_events["events_per_cpu_s"] / TARGET_EVENTS_PER_S, 3
        ),
        "gys_previous_path_events_per_cpu_s": round(
            gys_events.get("previous_events_per_cpu_s", 0.0)
        ),
        "gys_events_ratio_vs_previous_path": round(gys_events.get("ratio_vs_previous", 0.0), 2),
        "gys_numpy_path_events_per_cpu_s": round(gys_events["numpy_events_per_cpu_s"]),
        "gys_events_ratio_vs_numpy_path": round(gys_events["ratio_vs_numpy"], 2),
        "default_sim_s_per_wall_s": round(default["sim_s_per_wall_s"], 4),
        "default_sim_s_per_cpu_s": round(default["sim_s_per_cpu_s"], 4),
        "default_bob_tags_per_sim_s": round(default["bob_tags_per_sim_s"]),
        "gys_50km_1ghz_sim_s_per_wall_s": round(gys["sim_s_per_wall_s"], 3),
        "gys_50km_1ghz_sim_s_per_cpu_s": round(gys["sim_s_per_cpu_s"], 3),
        "gys_50km_1ghz_ratio_vs_target_10x": round(
            gys["sim_s_per_wall_s"] / TARGET_GYS_REALTIME, 3
        ),
        "gys_50km_bob_tags_per_sim_s": round(gys["bob_tags_per_sim_s"]),
        "gys_dense_reference_sim_s_per_cpu_s": round(dense_gys, 4),
        "gys_ratio_vs_dense_reference": round(gys["sim_s_per_cpu_s"] / dense_gys, 2),
        "peak_rss_mib_10s_sim": round(rss_short, 1),
        f"peak_rss_mib_{args.long_sim_s:g}s_sim": round(rss_long, 1),
        "rss_ratio_long_vs_10s": round(rss_long / rss_short, 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "note": "one process, one core; the 2-core machine is shared with other work",
    }
    assert all(math.isfinite(v) for v in result.values() if isinstance(v, float))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
