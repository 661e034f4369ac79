"""OpticalSwitch conformance: ports counted from 1, refusals, parking on safe state."""

from __future__ import annotations

from typing import Any

from tests.conformance.conformance_checks import expect_refusal


async def test_every_port_round_trips(optical_switch: Any) -> None:
    assert optical_switch.n_ports >= 1
    assert 1 <= optical_switch.parking_port <= optical_switch.n_ports
    for port in range(1, optical_switch.n_ports + 1):
        await optical_switch.set_port(port)
        assert await optical_switch.get_port() == port


async def test_snapshot_reflects_the_port(optical_switch: Any) -> None:
    port = optical_switch.n_ports
    await optical_switch.set_port(port)
    snapshot = await optical_switch.snapshot()
    assert port in [v for v in snapshot.values() if isinstance(v, int)]


async def test_ports_outside_1_to_n_are_refused(optical_switch: Any) -> None:
    await optical_switch.set_port(1)
    await expect_refusal(optical_switch, optical_switch.set_port(0))
    await expect_refusal(optical_switch, optical_switch.set_port(optical_switch.n_ports + 1))
    assert await optical_switch.get_port() == 1


async def test_safe_state_parks(optical_switch: Any) -> None:
    other = 1 if optical_switch.parking_port != 1 else optical_switch.n_ports
    await optical_switch.set_port(other)
    await optical_switch.safe_state()
    assert await optical_switch.get_port() == optical_switch.parking_port
