"""The six instrument interfaces of a QKD optics lab.

Real drivers (``drivers/``) and simulated twins (``sims/``) both implement these, so a
plan never knows which one it drives. Every value carries its unit in its name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from labctl.interfaces.instrument import Instrument
from labctl.interfaces.pattern import PatternMode, PulsePattern
from labctl.interfaces.tags import TagBatch


@runtime_checkable
class Laser(Instrument, Protocol):
    """A laser source (Alice's transmitter or a CW reference)."""

    async def set_output(self, enabled: bool) -> None:
        """Switch the optical output on or off."""
        ...

    async def get_output(self) -> bool:
        """True when light is coming out."""
        ...

    async def set_power_mw(self, power_mw: float) -> None:
        """Set the optical output power in milliwatts."""
        ...

    async def get_power_mw(self) -> float:
        """The output power setpoint in milliwatts."""
        ...

    async def set_wavelength_nm(self, wavelength_nm: float) -> None:
        """Tune the emission wavelength in nanometres."""
        ...

    async def get_wavelength_nm(self) -> float:
        """The emission wavelength in nanometres."""
        ...


@runtime_checkable
class PolarizationController(Instrument, Protocol):
    """A fiber polarization controller driven by per-axis voltages (e.g. squeezers)."""

    @property
    def n_axes(self) -> int:
        """How many independent actuators (4 for an EPC-400)."""
        ...

    @property
    def voltage_range_mv(self) -> tuple[float, float]:
        """The lowest and highest voltage an actuator accepts, in millivolts."""
        ...

    async def set_voltages_mv(self, voltages_mv: Sequence[float]) -> None:
        """Drive every actuator at once, one voltage per axis in millivolts."""
        ...

    async def get_voltages_mv(self) -> list[float]:
        """The voltage on every actuator in millivolts."""
        ...

    async def set_voltage_mv(self, axis: int, voltage_mv: float) -> None:
        """Drive one actuator (axis counted from 0) in millivolts."""
        ...


@runtime_checkable
class SinglePhotonDetector(Instrument, Protocol):
    """A multi-channel single-photon detector system (SNSPD or SPAD rack)."""

    @property
    def n_channels(self) -> int:
        """How many detector channels."""
        ...

    async def set_enabled(self, channel: int, enabled: bool) -> None:
        """Arm (bias) or disarm one channel (counted from 0)."""
        ...

    async def get_enabled(self, channel: int) -> bool:
        """True when the channel is armed and counting."""
        ...

    async def set_bias_ua(self, channel: int, bias_ua: float) -> None:
        """Set the bias current of one channel in microamperes."""
        ...

    async def get_bias_ua(self, channel: int) -> float:
        """The bias current of one channel in microamperes."""
        ...

    async def set_trigger_level_mv(self, channel: int, level_mv: float) -> None:
        """Set the discriminator level of one channel in millivolts."""
        ...

    async def get_trigger_level_mv(self, channel: int) -> float:
        """The discriminator level of one channel in millivolts."""
        ...

    async def get_count_rates_hz(self, integration_s: float) -> list[float]:
        """Count rate of every channel, averaged over ``integration_s`` seconds."""
        ...

    async def is_latched(self, channel: int) -> bool:
        """True when the channel is latched (blinded / stuck normal) and counts nothing."""
        ...

    async def reset_latch(self, channel: int) -> None:
        """Cycle the bias of a latched channel so it counts again."""
        ...


@runtime_checkable
class TimeTagger(Instrument, Protocol):
    """A time-to-digital converter that timestamps detector clicks in picoseconds."""

    @property
    def n_channels(self) -> int:
        """How many input channels."""
        ...

    @property
    def resolution_ps(self) -> int:
        """The timestamp bin width in picoseconds."""
        ...

    async def set_channel_delay_ps(self, channel: int, delay_ps: int) -> None:
        """Add a fixed delay (picoseconds) to every tag of one channel."""
        ...

    async def get_channel_delay_ps(self, channel: int) -> int:
        """The delay added to one channel, in picoseconds."""
        ...

    async def start_stream(self) -> None:
        """Start streaming tags; batches queue until read."""
        ...

    async def stop_stream(self) -> None:
        """Stop streaming tags; anything not yet read is dropped."""
        ...

    async def read_batch(self, timeout_s: float) -> TagBatch:
        """The next batch of tags (may be empty), or InstrumentTimeout after timeout_s."""
        ...

    async def get_count_rates_hz(self, integration_s: float) -> list[float]:
        """Tag rate of every channel over ``integration_s`` seconds."""
        ...


@runtime_checkable
class OpticalSwitch(Instrument, Protocol):
    """A 1xN fiber optical switch."""

    @property
    def n_ports(self) -> int:
        """How many output ports (counted from 1, as on the front panel)."""
        ...

    @property
    def parking_port(self) -> int:
        """The port safe_state() routes to (a dump / beam block)."""
        ...

    async def set_port(self, port: int) -> None:
        """Route the common fiber to ``port`` (1..n_ports)."""
        ...

    async def get_port(self) -> int:
        """The port currently routed."""
        ...


@runtime_checkable
class Transmitter(Instrument, Protocol):
    """Alice's state preparation: the intensity, basis and bit every laser pulse carries.

    The transmitter clocks the pulses (one every ``period_ps``) and drives the modulators
    from a :class:`PulsePattern`. Its marker output gives one pulse every
    ``marker_divider`` pulses (Alice's tagger records it as her clock reference) and a
    frame marker on the first pulse of every pattern played (its position in Alice's
    tagger tells her which pulse carries which state). Pulses outside a pattern carry no
    light (the intensity modulator blocks them).

    ``pattern_mode`` says whether key may be stored: ``STREAMED`` devices play chunks back
    to back without repeating any; ``REPEATING`` devices cycle what they hold, so a block
    longer than ``memory_pulses`` reuses states and is a demonstration only.
    """

    @property
    def memory_pulses(self) -> int:
        """The most pulses one pattern chunk may hold (the device's sequence memory)."""
        ...

    @property
    def upload_pulses(self) -> int:
        """The piece size in which a one-shot pattern is best handed over (at most
        ``memory_pulses``).

        Where it is smaller than the memory, the memory may be filled in pieces before
        ``start()`` (load the first, append the others, then start): they play back to
        back. Devices that take one pattern per load give ``memory_pulses``.
        """
        ...

    @property
    def pattern_mode(self) -> PatternMode:
        """STREAMED (fresh chunks back to back) or REPEATING (the pattern cycles)."""
        ...

    async def set_period_ps(self, period_ps: int) -> None:
        """Set the pulse period in picoseconds."""
        ...

    async def get_period_ps(self) -> int:
        """The pulse period in picoseconds."""
        ...

    async def set_marker_divider(self, divider: int) -> None:
        """Emit a clock marker every ``divider`` pulses."""
        ...

    async def get_marker_divider(self) -> int:
        """Pulses between two clock markers."""
        ...

    async def load_pattern(self, pattern: PulsePattern, *, repeat: bool) -> None:
        """Stop and replace what is played: ``pattern`` from its first pulse on ``start()``,
        cycled when ``repeat`` (public calibration frames), else once."""
        ...

    async def append_pattern(self, pattern: PulsePattern) -> None:
        """Queue a chunk that follows the last one without a gap (STREAMED devices)."""
        ...

    async def start(self) -> None:
        """Start playing the loaded pattern at the next pulse (frame marker on its first)."""
        ...

    async def stop(self) -> None:
        """Stop playing; pulses carry no light until the next ``start()``."""
        ...

    async def is_running(self) -> bool:
        """True while a pattern is being played."""
        ...
