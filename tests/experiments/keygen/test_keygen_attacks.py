"""Key generation under attack and on untrusted calibrations: alarms, and no key stored."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from experiments.keygen.acquisition import FLOOD_MIN_CLICKS
from experiments.keygen.plan import generate_key
from labctl.runner.engine import RunEngine
from labctl.secrets import SecretRegistry
from labctl.station import Station, load_config
from labctl.store.calibration import CalibrationStore
from labctl.store.events import read_events
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.publisher import MqttPublisher
from labctl.stream.recorder import recording
from labctl.stream.settings import MqttSettings
from tests.experiments.keygen.keygen_helpers import (
    run_keygen,
    store_rows,
    truth_clock_map,
    write_config,
)

# Eve detects a fifth of Alice's photons: Bob's click rate stays near its normal value.
STEALTHY_EVE = {"eve": {"blinding_detection_efficiency": 0.2}}


def _events(path: Path, stream: str) -> list[dict[str, Any]]:
    return [e for e in read_events(path / "events.jsonl") if e.get("stream") == stream]


def _stored(tmp_path: Path) -> list[tuple[str, int, bytes]]:
    alice = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    assert alice == store_rows(tmp_path / "runs" / "keys-bob.sqlite")
    return alice


async def test_blinding_stores_no_key_and_raises_every_blinding_alarm(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        qkd={"block_pulses": 30_000_000},
        faults=[{"kind": "blinding", "at_s": 0.0}],
        world=STEALTHY_EVE,
        trust={"check_probability": 1.0},
    )
    result = await run_keygen(config, duration_s=1.5)
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["secret_bits"] == 0 and _stored(tmp_path) == []
    blocks = [e["data"] for e in _events(result.path, "qkd")]
    assert len(blocks) == 2
    for block in blocks:
        # Faked states: QBER 0, and the finite-key bound would have given key; the gate did not.
        assert block["qber_z"] == 0.0 and block["qber_x"] == 0.0
        assert block["reason"].startswith("key output stopped: detector-current")
    raised = {e["data"]["source"] for e in _events(result.path, "alarm")}
    assert raised == {"detector-current", "dark-counts", "qber-low"}
    trust = summary["trust"]
    assert trust["key_output"] == "stopped" and "detector-current" in trust["reason"]


async def test_blinding_by_an_eve_who_detects_every_photon_bends_the_decoy_statistics(
    tmp_path: Path,
) -> None:
    # Resent after her own detections, Bob's clicks follow 1 - exp(-mu), not a lossy line.
    config = write_config(
        tmp_path, qkd={"block_pulses": 30_000_000}, faults=[{"kind": "blinding", "at_s": 0.0}]
    )
    result = await run_keygen(config, duration_s=0.6)
    assert _stored(tmp_path) == []
    alarms = [e["data"] for e in _events(result.path, "alarm") if e["data"]["action"] == "raised"]
    (decoy,) = [a for a in alarms if a["source"] == "decoy-gains"]
    assert "significantly more than" in decoy["message"]


async def test_failed_calibrations_stop_key_output_with_an_alarm_on_mqtt(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, qkd={"block_pulses": 100_000_000})
    report = {
        "passed": False,
        "routines": {
            "mean_photon_number": {"passed": False, "reason": "signal mu 0.62 off by 24 %"},
            "switch": {"passed": False, "reason": "switch on the wrong port"},
        },
    }
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    try:
        settings = MqttSettings.from_url(mosquitto.url)
        config = load_config(config_path)
        async with (
            recording(settings, "#", client_id="alarm-watch") as rec,
            MqttPublisher(
                settings, lab="sim-lab", node="alice-bob", outbox_dir=tmp_path / "outbox",
                secrets=SecretRegistry(),
            ) as publisher,
        ):  # fmt: skip
            station = Station.from_config(config)
            async with station:
                clock_map = truth_clock_map(station.world)

                async def plan(run: Any) -> Any:
                    return await generate_key(run, clock_map, calibration=report)

                engine = RunEngine(
                    station, runs_dir=Path(config.storage.runs_dir), sinks=[publisher]
                )
                result = await engine.run(plan, plan_name="keygen-untrusted", duration_s=0.5)
            assert await publisher.flush(10)
            run_id = result.path.name
            assert await rec.wait_for(
                lambda: any(d.get("stream") == "alarm" for d in rec.runs.documents.get(run_id, [])),
                10,
            )
            published = [
                d["data"] for d in rec.runs.documents[run_id] if d.get("stream") == "alarm"
            ]
    finally:
        mosquitto.stop()
    assert _stored(tmp_path) == []
    (block,) = [e["data"] for e in _events(result.path, "qkd")]
    assert block["reason"].startswith("key output stopped: calibration: mean_photon_number failed")
    assert published[0]["source"] == "calibration" and published[0]["action"] == "raised"
    assert "switch failed: switch on the wrong port" in published[0]["message"]
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["trust"]["key_output"] == "stopped"
    assert "mean_photon_number failed" in summary["trust"]["reason"]


async def test_blinding_then_intercept_resend_alarmed_and_key_resumes_after(
    tmp_path: Path,
) -> None:
    windows = [(0.5, 1.5), (1.5, 2.5)]  # blinding, then intercept-resend of every pulse
    config = write_config(
        tmp_path,
        faults=[
            {"kind": "blinding", "at_s": windows[0][0], "until_s": windows[0][1]},
            {"kind": "attack", "at_s": windows[1][0], "until_s": windows[1][1], "fraction": 1.0},
        ],
        world=STEALTHY_EVE,
    )
    result = await run_keygen(config, duration_s=5.5)
    blocks = [e["data"] for e in _events(result.path, "qkd")]
    bits = {block: n for _, n, block in _key_blocks(tmp_path)}
    assert (
        sum(bits.values()) == json.loads((result.path / "summary.json").read_text())["secret_bits"]
    )

    def inside(block: dict[str, Any], window: tuple[float, float]) -> bool:
        start = block["started_s"]
        return start < window[1] and start + block["acquired_s"] > window[0]

    in_blinding = [b for b in blocks if inside(b, windows[0])]
    in_attack = [b for b in blocks if inside(b, windows[1])]
    after = [b for b in blocks if b["started_s"] >= windows[1][1]]
    assert in_blinding and in_attack and after
    # Faked states inside the blinding window, QBER ~ 1/4 inside the attack window.
    assert all(b["qber_z"] == 0.0 for b in in_blinding)
    assert all(0.22 < b["qber_x"] < 0.29 for b in in_attack)
    # No key bit from any block acquired inside a window; key again after both.
    assert all(bits.get(b["block"], 0) == 0 for b in in_blinding + in_attack)
    assert any(bits.get(b["block"], 0) > 0 for b in after)
    alarms = [e["data"] for e in _events(result.path, "alarm")]
    raised = {a["source"]: a["raised_s"] for a in alarms if a["action"] == "raised"}
    cleared = {a["source"]: a["cleared_s"] for a in alarms if a["action"] == "cleared"}
    # Blinding: the detector current at the check right after the first blinded block.
    assert windows[0][0] < raised["detector-current"] < windows[0][1]
    assert windows[0][1] <= cleared["detector-current"]
    assert "qber-low" in raised
    # Intercept-resend: as soon as the first attacked block is post-processed.
    assert raised["qber-high"] > windows[1][0]
    assert set(cleared) == set(raised)
    assert json.loads((result.path / "summary.json").read_text())["trust"]["key_output"] == "open"


def _key_blocks(tmp_path: Path) -> list[tuple[str, int, int]]:
    """(key id, bits, block) of every key in Bob's store; Alice's holds the same keys."""
    import sqlite3

    assert _stored(tmp_path) is not None
    with sqlite3.connect(tmp_path / "runs" / "keys-bob.sqlite") as db:
        rows = db.execute("SELECT key_id, n_bits, block FROM keys").fetchall()
    return [(str(k), int(n), int(b)) for k, n, b in rows]


async def test_clicks_above_the_calibrated_light_let_the_block_go(tmp_path: Path) -> None:
    # The light at Bob is twenty times what the stored calibration says Alice sends (as if
    # her power rose, or light came from elsewhere): no passive channel does that. (The
    # ceiling leaves out the detectors' dead time, which at this rate hides almost half.)
    config = write_config(tmp_path, qkd={"block_pulses": 30_000_000})
    store = CalibrationStore(tmp_path / "runs" / "calibration.json")
    (entry,) = [c for c in store.all() if c.kind == "mean_photon_number"]
    dimmer = {name: mu / 20.0 for name, mu in entry.values["mu"].items()}
    store.save(replace(entry, values={**entry.values, "mu": dimmer}, time_s=entry.time_s + 1.0))
    result = await run_keygen(config, duration_s=0.6)
    assert _stored(tmp_path) == []
    (block,) = [e["data"] for e in _events(result.path, "qkd")]
    assert block["detections"] == 0 and block["secret_bits"] == 0
    alarms = [e["data"] for e in _events(result.path, "alarm") if e["data"]["action"] == "raised"]
    (flood,) = [a for a in alarms if a["source"] == "click-rate"]
    assert "the calibrated light allows" in flood["message"]
    clicks, pulses = (int(w) for w in flood["message"].split()[0:4:3])
    assert FLOOD_MIN_CLICKS < clicks and pulses < 30_000_000  # let go early in the block
