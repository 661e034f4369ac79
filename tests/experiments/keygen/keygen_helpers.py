"""Shared helpers of the key-generation tests: a station file in a temp folder, runs on it."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from experiments.keygen.acquisition import LinearClockMap
from experiments.keygen.plan import generate_key
from experiments.sync.alice import alice_of
from labctl.link.block import RawBlock
from labctl.qkd.sifting import Detections
from labctl.runner.engine import RunEngine, RunResult
from labctl.station import Station, load_config
from labctl.store.calibration import Calibration, CalibrationStore

ROOT = Path(__file__).resolve().parents[3]


def write_config(
    tmp_path: Path,
    qkd: dict[str, Any] | None = None,
    faults: list[dict[str, Any]] | None = None,
    *,
    calibrated: bool = True,
    world: dict[str, Any] | None = None,
    trust: dict[str, Any] | None = None,
) -> Path:
    """configs/sim.yaml copied under tmp_path/configs (so runs and key stores land in tmp).

    ``calibrated``: the calibration store holds every routine key depends on, with the
    world's true values (as ``truth_clock_map`` stands in for synchronization); ``world``
    is merged into the world's settings section by section.
    """
    data = yaml.safe_load((ROOT / "configs" / "sim.yaml").read_text(encoding="utf-8"))
    data["qkd"] = {"block_pulses": 100_000_000, "block_interval_s": 1.0, **(qkd or {})}
    if faults:
        data["instruments"]["laser"].setdefault("settings", {})["faults"] = faults
    for section, values in (world or {}).items():
        data["world"]["settings"].setdefault(section, {}).update(values)
    if trust is not None:
        data["trust"] = trust
    folder = tmp_path / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sim.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    if calibrated:
        calibrate_from_truth(path)
    return path


def calibrate_from_truth(config_path: Path, valid_s: float = 86400.0) -> None:
    """Store a passed calibration of every routine key depends on, from the world's truth.

    Tests that run key generation without the (slow) calibration routines stand on this;
    the values are what the routines would find on this world.
    """
    config = load_config(config_path)
    station = Station.from_config(config)
    world = station.world
    truth = world.truth
    settings = world.settings
    alice = alice_of(station)
    store = CalibrationStore(Path(config.storage.calibration_store))
    detectors = {
        name: {"dark_count_rate_hz": rate}
        for name, rate in zip(("Z0", "Z1", "X0", "X1"), truth.dark_count_rate_hz, strict=True)
    }
    ports = range(1, settings.switch.n_ports + 1)
    values: dict[str, tuple[str, dict[str, Any]]] = {
        "delays": ("tagger-bob", {}),
        "detectors": ("detectors", detectors),
        "polarization": ("pc-bob", {"qber": settings.receiver.misalignment}),
        "mean_photon_number": (
            "laser",
            {
                "mu": dict(zip(alice.intensity_names, alice.intensity_mu, strict=True)),
                "transmittance": truth.transmittance,
                "detector_efficiency": float(np.mean(truth.detector_efficiency)),
            },
        ),
        "switch": (
            "switch",
            {
                "bob_port": settings.switch.bob_port,
                "crosstalk_db": {
                    str(p): settings.switch.crosstalk_db
                    for p in ports
                    if p != settings.switch.bob_port
                },
            },
        ),
    }
    for kind, (instrument, entry) in values.items():
        store.save(Calibration(instrument, kind, entry, 0.0, valid_s, {"source": "world truth"}))


def truth_clock_map(world: Any) -> LinearClockMap:
    """The exact clock map from the world's hidden truth (tests only; plans synchronize)."""
    truth = world.truth
    return LinearClockMap(
        truth.bob_offset_ps + truth.fiber_delay_ps,
        truth.period_ps,
        truth.bob_frequency_offset_ppm * 1000.0,
    )


async def run_keygen(config_path: Path, duration_s: float, **kwargs: Any) -> RunResult:
    """generate_key under a RunEngine on the config's station, synchronized from truth."""
    config = load_config(config_path)
    station = Station.from_config(config)
    async with station:
        plan = functools.partial(generate_key, clock_map=truth_clock_map(station.world), **kwargs)
        engine = RunEngine(station, runs_dir=Path(config.storage.runs_dir))
        return await engine.run(plan, plan_name="keygen-test", duration_s=duration_s)


def store_rows(path: Path) -> list[tuple[str, int, bytes]]:
    """(key_id, n_bits, key bytes) of every key in a store file, read with plain sqlite3."""
    import sqlite3

    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key_id, n_bits, key FROM keys ORDER BY key_id").fetchall()
    return [(str(k), int(n), bytes(b)) for k, n, b in rows]


U8 = np.ndarray
ETA = 0.3  # channel x detector efficiency
QBER = 0.005


class HashSource:
    """Alice's record as a counter-based hash of the pulse index (basis, bit, class)."""

    MU = (0.5, 0.1, 0.0)
    PROB = (0.8, 0.15, 0.05)

    @staticmethod
    def _hash(idx: np.ndarray) -> np.ndarray:
        h = idx.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(31)
        return h * np.uint64(0xBF58476D1CE4E5B9)

    def choices(self, pulse_index: np.ndarray) -> tuple[U8, U8, U8]:
        h = self._hash(pulse_index)
        basis = ((h >> np.uint64(40)) & np.uint64(1)).astype(np.uint8)
        bit = ((h >> np.uint64(41)) & np.uint64(1)).astype(np.uint8)
        u = ((h >> np.uint64(44)) % np.uint64(100)).astype(np.int64)
        intensity = np.where(u < 80, 0, np.where(u < 95, 1, 2)).astype(np.uint8)
        return basis, bit, intensity

    def intensities(self) -> list[tuple[float, float]]:
        return list(zip(self.MU, self.PROB, strict=True))

    def release(self, first_pulse: int, pulses: int) -> None:
        """Nothing is kept per block."""

    def one_shot(self, first_pulse: int, pulses: int) -> bool:
        """A hash of the pulse index never repeats."""
        return True


def make_block(block: int, pulses: int, seed: int) -> RawBlock:
    """Bob's detections of pulses [block*pulses, (block+1)*pulses): efficiency ETA, QBER errors.

    2e7 pulses is about the smallest block whose finite-key bound leaves key here.
    """
    rng = np.random.default_rng(seed)
    first = block * pulses
    idx = np.arange(first, first + pulses, dtype=np.int64)
    basis, bit, intensity = HashSource().choices(idx)
    mu = np.asarray(HashSource.MU)[intensity]
    detected = rng.random(pulses) < 1.0 - np.exp(-ETA * mu) + 2e-6
    idx, basis, bit = idx[detected], basis[detected], bit[detected]
    bob_basis = rng.integers(0, 2, idx.size).astype(np.uint8)
    flip = rng.random(idx.size) < QBER
    bob_bit = np.where(bob_basis == basis, bit ^ flip, rng.integers(0, 2, idx.size))
    det = Detections.create(idx, bob_basis, bob_bit.astype(np.uint8))
    return RawBlock(block, first, pulses, det, 0.0, pulses / 1e9, idx.size, 0)
