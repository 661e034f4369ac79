"""Single Quantum's own QCoDeS driver (qcodes_contrib_drivers, from PyPI) runs the Eos twin.

The package is used unmodified, in a child process (see qcodes_eos_session.py); the test
serves the twin in its own event loop meanwhile and checks what the twin now holds.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from sims.wire.eos import EosWire
from sims.world import World
from tests.sims.wire.wired import WIRE_WORLD, make_twin

SESSION = Path(__file__).with_name("qcodes_eos_session.py")


async def test_qcodes_contrib_singlequantum_driver_runs_the_twin() -> None:
    world = World.from_settings(WIRE_WORLD)
    twin = make_twin("detector", world)
    async with twin:
        wire = EosWire("detectors", twin)
        await wire.start()
        try:
            host, control_port = wire.endpoints()["control"].rsplit(":", 1)
            counts_port = wire.endpoints()["counts"].rsplit(":", 1)[1]
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SESSION),
                host,
                control_port,
                counts_port,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(child.communicate(), 120.0)
        finally:
            await wire.stop()
        assert child.returncode == 0, err.decode()[-2000:]
        seen = json.loads(out.decode().strip().splitlines()[-1])

        # What the third-party driver read back...
        assert seen["n"] == 4 and seen["period_ms"] == 20
        assert seen["bias_ua"] == [11.0] * 4 and seen["trigger_mv"] == [150.0] * 4
        assert seen["enabled"] is True and len(seen["bias_voltage_mv"]) == 4
        assert seen["counters_shape"] == [5, 3]  # timestamp row + 4 channels, npts=3
        assert len(seen["timing"]) == 3 and len(seen["channel1"]) == 3
        assert seen["auto_cali_finished"] is True
        assert any("10..60000" in message for message in seen["warnings"])
        # ...and what the twin now holds.
        assert wire.period_ms == 20 and wire.system_on
        assert wire.bias_ua == [11.0] * 4 and wire.trigger_mv == [150.0] * 4
        assert wire.dark_counts_target == [100.0] * 4
        for channel in range(4):
            assert await twin.get_enabled(channel)
            assert await twin.get_bias_ua(channel) == 11.0
            assert await twin.get_trigger_level_mv(channel) == 150.0
