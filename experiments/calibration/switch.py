"""Optical switch path check: insertion loss of Bob's port and crosstalk of every other port.

Bob's detectors count (dead-time corrected, dark subtracted) with the switch on each port in
turn. Bob's port must carry the light: its rate against the rate the known link (without
the switch) predicts for Alice's design photon numbers is the insertion loss; every other
port's leak into Bob's receiver relative to Bob's port is its crosstalk.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.calibration.common import CalibrationFailed, RoutineResult, Session
from experiments.calibration.photons import dead_times, link_transmittance
from labctl.interfaces.units import PS_PER_S, ps_to_seconds


async def calibrate_switch(session: Session) -> RoutineResult:
    """Insertion loss and crosstalk per port; fails when the light is on the wrong port."""
    await session.require("laser", "detectors", "tagger", "switch")
    cfg = session.settings.section("switch")
    run = session.run
    switch = session.get("switch")
    det = session.get("detectors")
    names = session.detector_names()
    channel_of = session.tagger_channel_of()
    bob_port = session.bob_port()
    alice = session.alice
    with run.progress.task("switch", total=switch.n_ports + 2) as bar:
        if not session.dark_rates_hz:
            await session.get("laser").set_output(False)
            for ch in range(det.n_channels):
                await det.set_enabled(ch, True)
            dark = await det.get_count_rates_hz(cfg["integration_s"])
            session.dark_rates_hz = dict(zip(names, dark, strict=True))
        bar.advance()
        await session.light_on()
        times, chans, _ = await session.raw_tags(0.002)
        dead_by_ch = await dead_times(session, times, chans)
        period = alice.period_ps
        dead = [
            ps_to_seconds(max(round(dead_by_ch[channel_of[n]] / period) - 1, 0) * period)
            if not math.isnan(dead_by_ch[channel_of[n]])
            else 0.0
            for n in names
        ]
        bar.advance()
        dataset = run.dataset("cal_switch", setpoints=["port"], measured=["rate_hz", "signal_hz"])
        signal: dict[int, float] = {}
        seconds: dict[int, float] = {}
        for port in range(1, switch.n_ports + 1):
            await switch.set_port(port)
            # A bright port needs a short look; only a dim one (darks, crosstalk) a long one.
            seconds[port] = cfg["bob_integration_s"]
            rates = await det.get_count_rates_hz(seconds[port])
            if sum(rates) < 100.0 * max(sum(session.dark_rates_hz.values()), 1.0):
                seconds[port] = cfg["integration_s"]
                rates = await det.get_count_rates_hz(seconds[port])
            corrected = [
                r / max(1.0 - r * (0.0 if math.isnan(t) else t), 1e-9)
                for r, t in zip(rates, dead, strict=True)
            ]
            signal[port] = sum(corrected) - sum(session.dark_rates_hz[n] for n in names)
            dataset.add(port=port, rate_hz=float(sum(rates)), signal_hz=signal[port])
            bar.advance()
        await switch.set_port(bob_port)
    dark_total = sum(session.dark_rates_hz.values())

    def noise(port: int) -> float:
        return 5.0 * math.sqrt(max(dark_total, 1.0) / seconds[port])

    lit = [p for p in signal if signal[p] > noise(p)]
    if not lit:
        raise CalibrationFailed(
            f"no light at Bob's detectors on any switch port (best {max(signal.values()):.0f} Hz "
            f"over {dark_total:.0f} Hz of darks): laser off or fiber cut"
        )
    brightest = max(lit, key=lambda p: signal[p])
    if brightest != bob_port:
        raise CalibrationFailed(
            f"switch on the wrong port: Bob's light comes through port {brightest}, "
            f"not the configured Bob port {bob_port} (calibration.link.bob_port)"
        )
    t_line = link_transmittance(session, with_switch=False)
    efficiency = float(session.settings.require("link", "detector_efficiency"))
    mu = np.array(alice.intensity_mu)
    probability = np.array(alice.intensity_probability)
    per_pulse = float(np.sum(probability * 4.0 * -np.expm1(-mu * t_line * efficiency / 4.0)))
    expected_hz = per_pulse * PS_PER_S / alice.period_ps
    insertion_db = -10.0 * math.log10(signal[bob_port] / expected_hz)
    crosstalk: dict[str, float | None] = {}
    problems = []
    for port, value in signal.items():
        if port == bob_port:
            continue
        if value <= noise(port) / 5.0:
            crosstalk[str(port)] = None  # below what the darks let us see
            continue
        db = 10.0 * math.log10(value / signal[bob_port])
        crosstalk[str(port)] = db
        if db > cfg["max_crosstalk_db"]:
            problems.append(f"port {port} crosstalk {db:.1f} dB > {cfg['max_crosstalk_db']:g} dB")
    if insertion_db > cfg["max_insertion_loss_db"]:
        limit = cfg["max_insertion_loss_db"]
        problems.append(f"port {bob_port} insertion loss {insertion_db:.2f} dB > {limit:g} dB")
    values = {
        "bob_port": bob_port,
        "insertion_loss_db": insertion_db,
        "crosstalk_db": crosstalk,
        "signal_hz": {str(p): v for p, v in signal.items()},
    }
    passed = not problems
    worst = max((v for v in crosstalk.values() if v is not None), default=None)
    reason = (
        f"port {bob_port} insertion loss {insertion_db:.2f} dB, worst crosstalk "
        + ("below the dark-count floor" if worst is None else f"{worst:.1f} dB")
        if passed
        else "; ".join(problems)
    )
    return RoutineResult("switch", session.name_of("switch"), passed, reason, values, "cal_switch")
