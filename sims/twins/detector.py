"""SimDetector: Bob's four single-photon detectors (an SNSPD rack) as a twin on the world."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from labctl.interfaces.instrument import Health
from sims.twins.base import SettingCheck, SimTwin, check_number
from sims.twins.world_api import DetectorWorld

DETECTOR_NAMES = ("Z0", "Z1", "X0", "X1")
BIAS_RANGE_UA = (0.0, 40.0)
TRIGGER_RANGE_MV = (-1000.0, 1000.0)
MAX_INTEGRATION_S = 3600.0


def _check_channels(setting: str, value: Any) -> list[int]:
    """Settings check: distinct world detector indices (0..3) or names (Z0, Z1, X0, X1)."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{setting}: expected a non-empty list of detectors, got {value!r}")
    out: list[int] = []
    for item in value:
        if isinstance(item, str) and item in DETECTOR_NAMES:
            out.append(DETECTOR_NAMES.index(item))
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < 4:
            out.append(item)
        else:
            raise ValueError(f"unknown detector {item!r} (0..3 or Z0, Z1, X0, X1)")
    if len(set(out)) != len(out):
        raise ValueError(f"a detector is listed twice in {value!r}")
    return out


class SimDetector(SimTwin[DetectorWorld]):
    """Twin of a multi-channel SNSPD system; channel i drives world detector ``channels[i]``."""

    model: ClassVar[str] = "labctl SimDetector"
    settings_checks: ClassVar[dict[str, SettingCheck]] = {
        "channels": _check_channels,
        "bias_ua": check_number(*BIAS_RANGE_UA),
        "trigger_level_mv": check_number(*TRIGGER_RANGE_MV),
    }

    def __init__(
        self,
        name: str,
        world: DetectorWorld,
        *,
        timeout_s: float = 2.0,
        channels: Sequence[int] = (0, 1, 2, 3),
        bias_ua: float = 12.0,
        trigger_level_mv: float = 150.0,
    ) -> None:
        super().__init__(name, world, timeout_s=timeout_s)
        self._detectors = list(channels)
        n = len(self._detectors)
        states = world.snapshot()["detectors"]
        self._enabled = [bool(states[d]["enabled"]) for d in self._detectors]
        self._bias_ua = [float(bias_ua)] * n
        self._trigger_mv = [float(trigger_level_mv)] * n

    @property
    def n_channels(self) -> int:
        """How many detector channels this rack has."""
        return len(self._detectors)

    @property
    def detectors(self) -> list[str]:
        """The world detector behind each channel (Z0, Z1, X0, X1)."""
        return [DETECTOR_NAMES[d] for d in self._detectors]

    def _channel(self, command: str, channel: int) -> int:
        """The world detector index of ``channel``, or InstrumentFault."""
        self._check_index(command, "channel", channel, len(self._detectors))
        return self._detectors[channel]

    async def set_enabled(self, channel: int, enabled: bool) -> None:
        """Arm or disarm one channel."""
        await self._link("set_enabled")
        detector = self._channel("set_enabled", channel)
        if not isinstance(enabled, bool):
            raise self._refuse("set_enabled", f"enabled must be true or false, got {enabled!r}")
        self.world.set_detector_enabled(detector, enabled)
        self._enabled[channel] = enabled

    async def get_enabled(self, channel: int) -> bool:
        """True when the channel is armed."""
        await self._link("get_enabled")
        self._channel("get_enabled", channel)
        return self._enabled[channel]

    async def set_bias_ua(self, channel: int, bias_ua: float) -> None:
        """Set one channel's bias current in microamperes (0..40 uA)."""
        await self._link("set_bias_ua")
        self._channel("set_bias_ua", channel)
        self._check_range("set_bias_ua", "bias_ua", bias_ua, *BIAS_RANGE_UA)
        self._bias_ua[channel] = float(bias_ua)

    async def get_bias_ua(self, channel: int) -> float:
        """One channel's bias current in microamperes."""
        await self._link("get_bias_ua")
        self._channel("get_bias_ua", channel)
        return self._bias_ua[channel]

    async def set_trigger_level_mv(self, channel: int, level_mv: float) -> None:
        """Set one channel's discriminator level in millivolts (-1000..1000 mV)."""
        await self._link("set_trigger_level_mv")
        self._channel("set_trigger_level_mv", channel)
        self._check_range("set_trigger_level_mv", "level_mv", level_mv, *TRIGGER_RANGE_MV)
        self._trigger_mv[channel] = float(level_mv)

    async def get_trigger_level_mv(self, channel: int) -> float:
        """One channel's discriminator level in millivolts."""
        await self._link("get_trigger_level_mv")
        self._channel("get_trigger_level_mv", channel)
        return self._trigger_mv[channel]

    async def get_count_rates_hz(self, integration_s: float) -> list[float]:
        """Count rate of every channel over ``integration_s`` of sim time (advances the clock)."""
        await self._link("get_count_rates_hz")
        self._check_range(
            "get_count_rates_hz", "integration_s", integration_s, 1e-9, MAX_INTEGRATION_S
        )
        if integration_s <= 0.0:
            raise self._refuse("get_count_rates_hz", "integration_s must be > 0")
        rates = self.world.detector_count_rates_hz(float(integration_s))
        return [float(rates[d]) for d in self._detectors]

    async def is_latched(self, channel: int) -> bool:
        """True when the channel is latched and counts nothing."""
        await self._link("is_latched")
        return bool(self.world.is_latched(self._channel("is_latched", channel)))

    async def reset_latch(self, channel: int) -> None:
        """Cycle the bias of one channel so a latched detector counts again."""
        await self._link("reset_latch")
        self.world.reset_latch(self._channel("reset_latch", channel))

    async def snapshot(self) -> dict[str, Any]:
        """Identity and every channel's detector, state, bias and trigger level."""
        await self._link("snapshot")
        return {
            **self._identity(),
            "n_channels": self.n_channels,
            "channels": [
                {
                    "detector": DETECTOR_NAMES[d],
                    "enabled": self._enabled[i],
                    "bias_ua": self._bias_ua[i],
                    "trigger_level_mv": self._trigger_mv[i],
                    "latched": bool(self.world.is_latched(d)),
                }
                for i, d in enumerate(self._detectors)
            ],
        }

    async def safe_state(self) -> None:
        """Disarm every channel (the world's detectors stop counting)."""
        for channel in range(self.n_channels):
            await self.set_enabled(channel, False)

    async def health(self) -> Health:
        """Not ok when any channel is latched; readings say which channels are armed."""
        await self._link("health")
        readings: dict[str, float | int | str | bool] = {}
        latched = []
        light_w = self.world.detector_light_power_w()
        for i, d in enumerate(self._detectors):
            readings[f"ch{i}_enabled"] = self._enabled[i]
            # The bias line's measured current: the set bias plus any photocurrent (light on
            # the detector, e.g. blinding); a disarmed channel carries no bias.
            per_w = self.world.settings.detectors[d].photocurrent_a_per_w
            bias_ua = self._bias_ua[i] if self._enabled[i] else 0.0
            readings[f"ch{i}_bias_ua"] = bias_ua
            readings[f"ch{i}_current_ua"] = bias_ua + per_w * light_w[d] * 1e6
            readings[f"ch{i}_latched"] = bool(self.world.is_latched(d))
            if readings[f"ch{i}_latched"]:
                latched.append(f"channel {i} ({DETECTOR_NAMES[d]})")
        if latched:
            return Health(ok=False, detail=f"latched: {', '.join(latched)}", readings=readings)
        return Health(ok=True, detail="ok", readings=readings)
