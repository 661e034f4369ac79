"""Port numbers of a 1xN optical switch: the check its drivers share.

A switch driver declares its port settings (``port``, ``parking_port``) against the largest
unit its protocol can address; the unit at hand has ``n_ports`` outputs, numbered
1..n_ports. The same range is checked twice: on the station entry, once the entry's
``n_ports`` is known (``validate_switch_settings``), and on every switch, through the
driver's ``_declared_limits`` (``port_limits``). Errors name the instrument, the setting,
the value and the range, as ``Setting.check`` words them.
"""

from __future__ import annotations

import functools
from typing import Any

from labctl.instrument.base import DriverBase, validate_config_settings
from labctl.interfaces.build import InstrumentSpec

PORT_KEYS = ("port", "parking_port")
"""Settings that name a port: 1..n_ports of the unit at hand."""


def port_limits(key: str, n_ports: int) -> tuple[float, float] | None:
    """``(1, n_ports)`` for a setting that names a port; None for any other setting."""
    return (1, n_ports) if key in PORT_KEYS else None


def validate_switch_settings(
    driver: type[DriverBase], spec: InstrumentSpec, *, default_n_ports: int
) -> dict[str, Any]:
    """The entry's settings checked as declared, then its ports against its ``n_ports``.

    Unknown keys and bad values are ConfigError naming the entry's field; returns the
    settings as the declared checks gave them.
    """
    validators = driver.config_validators(spec.name)
    validated = validate_config_settings(spec, validators)
    n_ports: int = validated.get("n_ports", default_n_ports)
    # Port numbers again, now against the size this station file gives.
    sized = {
        key: functools.partial(
            driver.declared(key).check, spec.name, limits=port_limits(key, n_ports)
        )
        for key in PORT_KEYS
    }
    validate_config_settings(spec, sized, handled_elsewhere=validators.keys() - sized.keys())
    return validated
