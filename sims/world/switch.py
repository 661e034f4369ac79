"""The 1xN optical switch between the fiber and Bob's receiver."""

from __future__ import annotations

from labctl.interfaces.units import db_to_transmission
from sims.world.settings import SwitchSettings


class SwitchModel:
    """Routes the line to one port; Bob's receiver sits on ``bob_port``."""

    def __init__(self, settings: SwitchSettings) -> None:
        self.settings = settings
        self.port = settings.initial_port

    def set_port(self, port: int) -> None:
        """Route the common fiber to ``port`` (1..n_ports)."""
        if isinstance(port, bool) or not isinstance(port, int):
            raise ValueError(f"set_switch_port: port must be an int, got {port!r}")
        if not 1 <= port <= self.settings.n_ports:
            raise ValueError(f"set_switch_port: port {port} outside 1..{self.settings.n_ports}")
        self.port = port

    @property
    def transmission_to_bob(self) -> float:
        """Power transmission from the fiber into Bob's receiver for the current route."""
        loss_db = self.settings.insertion_loss_db
        if self.port != self.settings.bob_port:
            # Another port is routed: only crosstalk leaks into Bob's port.
            loss_db -= self.settings.crosstalk_db
        return db_to_transmission(loss_db)
