"""Drive an Eos with Single Quantum's QCoDeS driver (qcodes_contrib_drivers), unmodified.

Run as ``python qcodes_eos_session.py HOST CONTROL_PORT COUNTS_PORT``; prints one JSON
object with what the driver read. It runs in its own process because the driver's reader
threads never end (they spin on a closed socket), which a test process must not inherit.

The instrument class always opens the counts stream on port 12345; tests bind free ports
only, so the one number is redirected through the module's own CommunicationHandler.
Everything else is the package's code, called through its public parameters and methods.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import qcodes_contrib_drivers.drivers.SingleQuantum.SingleQuantum as sq

HOST, CONTROL_PORT, COUNTS_PORT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
_HANDLER = sq.CommunicationHandler


def _counts_port_redirected(root: Any, log: Any, address: str, control: int, _: int) -> Any:
    return _HANDLER(root, log, address, control, COUNTS_PORT)


sq.CommunicationHandler = _counts_port_redirected


class _Warnings(logging.Handler):
    """Collects the driver's error reports (it logs them as warnings)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _settled(read: Callable[[], Any], expected: Any, timeout_s: float = 5.0) -> Any:
    """The driver reads a cache its thread fills: poll until the published value is in."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        value = read()
    return value


def main() -> None:
    warnings = _Warnings()
    logging.getLogger().addHandler(warnings)
    eos = sq.WebSQControlqcode("eos", address=HOST, port=CONTROL_PORT)
    n = int(eos.number_of_detectors())
    eos.measurement_periode(20)
    period = _settled(eos.measurement_periode, 20)
    eos.bias_current([11.0] * n)
    bias = _settled(eos.bias_current, [11.0] * n)
    eos.trigger_level([150.0] * n)
    triggers = _settled(eos.comm.get_trigger_level, [150.0] * n)
    eos.detectors()  # its get_cmd sends DetectorEnable true
    enabled = _settled(lambda: eos.comm.talk.get_label("DetectorEnable")["value"], True)
    voltages = eos.bias_voltage()
    eos.npts(3)
    counters = eos.counters()
    timing = eos.timing()
    channel1 = eos.channel1()
    eos.comm.set_dark_counts_auto_iv([100] * n)
    eos.comm.auto_cali_bias_currents()
    finished = _settled(eos.comm.auto_cali_finished, True)
    eos.measurement_periode(5)  # below the 10 ms minimum: the system publishes an error
    _settled(lambda: any("10..60000" in m for m in warnings.messages), True)
    print(
        json.dumps(
            {
                "n": n,
                "period_ms": period,
                "bias_ua": bias,
                "trigger_mv": triggers,
                "enabled": enabled,
                "bias_voltage_mv": voltages,
                "counters_shape": list(counters.shape),
                "timing": [float(t) for t in timing],
                "channel1": [float(c) for c in channel1],
                "auto_cali_finished": finished,
                "warnings": warnings.messages,
            }
        ),
        flush=True,
    )
    os._exit(0)  # the driver's threads never end; nothing else needs closing


if __name__ == "__main__":
    main()
