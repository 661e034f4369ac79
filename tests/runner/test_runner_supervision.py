"""Supervised calls: retries with backoff, reconnect after ConnectionLost, permanent faults."""

from __future__ import annotations

import pytest

from labctl.interfaces import (
    ConnectionLost,
    Health,
    InstrumentFault,
    InstrumentTimeout,
    LifecycleMixin,
    ProtocolError,
)
from labctl.runner.supervision import RetryPolicy, supervised_call
from sims.clock import VirtualClock


class FlakyTestInstrument(LifecycleMixin):
    """Fails its first ``failures`` reads with the given error; counts reconnects."""

    def __init__(self, failures: list[Exception]) -> None:
        self.name = "flaky"
        self.failures = list(failures)
        self.connects = 0
        self.closes = 0
        self.setpoint_applied = 0

    async def connect(self) -> None:
        """Reconnect and re-apply the setpoint, as drivers do."""
        self.connects += 1
        self.setpoint_applied += 1

    async def close(self) -> None:
        """Count closes."""
        self.closes += 1

    async def snapshot(self) -> dict[str, int]:
        """Nothing."""
        return {}

    async def safe_state(self) -> None:
        """Nothing to switch off."""

    async def health(self) -> Health:
        """Healthy."""
        return Health(True)

    async def read_power_mw(self) -> float:
        """Fail while failures remain, then answer 1.5."""
        if self.failures:
            raise self.failures.pop(0)
        return 1.5


async def test_transient_errors_retry_with_backoff_and_reconnect() -> None:
    clock = VirtualClock()
    inst = FlakyTestInstrument(
        [
            InstrumentTimeout("no answer", instrument="flaky"),
            ConnectionLost("peer closed", instrument="flaky"),
            ProtocolError("garbled", instrument="flaky"),
        ]
    )
    policy = RetryPolicy(retries=3, first_delay_s=1.0, factor=2.0)
    value = await supervised_call(inst.read_power_mw, timeout_s=1.0, policy=policy, clock=clock)
    assert value == 1.5
    assert clock.now_s() == pytest.approx(1.0 + 2.0 + 4.0)  # exponential backoff
    assert (inst.closes, inst.connects, inst.setpoint_applied) == (1, 1, 1)


async def test_permanent_fault_is_not_retried() -> None:
    inst = FlakyTestInstrument([InstrumentFault("overheated", instrument="flaky")])
    with pytest.raises(InstrumentFault, match="overheated"):
        await supervised_call(inst.read_power_mw, timeout_s=1.0, clock=VirtualClock())
    assert inst.failures == [] and inst.connects == 0


async def test_retries_exhausted_raise_the_last_error() -> None:
    inst = FlakyTestInstrument([InstrumentTimeout(f"t{i}", instrument="flaky") for i in range(5)])
    with pytest.raises(InstrumentTimeout, match="t2"):
        await supervised_call(
            inst.read_power_mw,
            timeout_s=1.0,
            policy=RetryPolicy(retries=2, first_delay_s=0.0),
            clock=VirtualClock(),
        )


async def test_hung_call_becomes_instrument_timeout() -> None:
    import asyncio

    async def hang() -> None:
        await asyncio.sleep(60)

    with pytest.raises(InstrumentTimeout, match=r"hang \[hang\]: timeout: no answer within 0.05 s"):
        await supervised_call(hang, timeout_s=0.05, policy=RetryPolicy(retries=0))
