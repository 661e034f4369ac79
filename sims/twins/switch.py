"""SimOpticalSwitch: the 1xN switch in front of Bob's receiver as a twin on the world."""

from __future__ import annotations

from typing import Any, ClassVar

from labctl.interfaces.instrument import Health
from sims.twins.base import SettingCheck, SimTwin, check_int
from sims.twins.world_api import SwitchWorld


class SimOpticalSwitch(SimTwin[SwitchWorld]):
    """Twin of the optical switch: routing away from Bob's port cuts Bob's signal."""

    model: ClassVar[str] = "labctl SimOpticalSwitch"
    settings_checks: ClassVar[dict[str, SettingCheck]] = {"port": check_int(1, 64)}

    def __init__(
        self, name: str, world: SwitchWorld, *, timeout_s: float = 2.0, port: int | None = None
    ) -> None:
        super().__init__(name, world, timeout_s=timeout_s)
        switch = world.settings.switch
        self._n_ports = int(switch.n_ports)
        self._parking_port = int(switch.parking_port)
        self._bob_port = int(switch.bob_port)
        self._port = int(world.switch_port())
        if port is not None:
            if not 1 <= port <= self._n_ports:
                raise ValueError(f"port {port} outside 1..{self._n_ports}")
            world.set_switch_port(port)
            self._port = port

    @property
    def n_ports(self) -> int:
        """How many output ports (counted from 1)."""
        return self._n_ports

    @property
    def parking_port(self) -> int:
        """The dump port safe_state() routes to."""
        return self._parking_port

    @property
    def bob_port(self) -> int:
        """The port wired to Bob's receiver."""
        return self._bob_port

    async def set_port(self, port: int) -> None:
        """Route the common fiber to ``port`` (1..n_ports)."""
        await self._link("set_port")
        self._check_index("set_port", "port", port, self._n_ports, first=1)
        self.world.set_switch_port(port)
        self._port = port

    async def get_port(self) -> int:
        """The port currently routed."""
        await self._link("get_port")
        return self._port

    async def snapshot(self) -> dict[str, Any]:
        """Identity, port count, parking port and the routed port."""
        await self._link("snapshot")
        return {
            **self._identity(),
            "n_ports": self._n_ports,
            "parking_port": self._parking_port,
            "bob_port": self._bob_port,
            "port": self._port,
        }

    async def safe_state(self) -> None:
        """Route to the parking port (nothing reaches Bob's detectors but crosstalk)."""
        await self.set_port(self._parking_port)

    async def health(self) -> Health:
        """Healthy when it answers; reports the routed port."""
        await self._link("health")
        return Health(
            ok=True,
            detail="ok",
            readings={"port": self._port, "to_bob": self._port == self._bob_port},
        )
