"""WindowCounter: one whole window of sim time a reading, shared by the channels of a look."""

from __future__ import annotations

from collections.abc import Sequence

from sims.wire.counting import WindowCounter


class Rates:
    """A twin's count rates: 4 channels at 10, 20, 30, 40 Hz; remembers every window asked."""

    def __init__(self) -> None:
        self.windows: list[float] = []
        self.refuse = False

    async def __call__(self, window_s: float) -> Sequence[float] | None:
        self.windows.append(window_s)
        return None if self.refuse else [10.0, 20.0, 30.0, 40.0]


async def test_a_look_at_every_channel_counts_one_window() -> None:
    counter, rates = WindowCounter(), Rates()
    assert [await counter.count(rates, 0.5, ch) for ch in range(4)] == [5, 10, 15, 20]
    assert rates.windows == [0.5]


async def test_a_channel_asked_again_or_another_window_counts_anew() -> None:
    counter, rates = WindowCounter(), Rates()
    assert await counter.count(rates, 0.5, 1) == 10
    assert await counter.count(rates, 0.5, 1) == 10  # a new window: changes show
    assert await counter.count(rates, 0.2, 2) == 6
    assert rates.windows == [0.5, 0.5, 0.2]


async def test_a_refusal_counts_nothing() -> None:
    counter, rates = WindowCounter(), Rates()
    rates.refuse = True
    assert await counter.count(rates, 0.5, 0) is None
    rates.refuse = False
    assert await counter.count(rates, 0.5, 0) == 5
    assert rates.windows == [0.5, 0.5]
