"""Tektronix AWG5208 arbitrary waveform generator as Alice's transmitter (SCPI, raw socket).

Protocol facts (AWG5200 series programmer manual; qcodes' public AWG5208 driver): SCPI
over a raw TCP socket (or VISA ``TCPIP::host::SOCKET``), LF-terminated; waveforms are
created with ``WLISt:WAVeform:NEW "name",size`` and filled with
``WLISt:WAVeform:DATA "name",start,size,#<block>`` (IEEE 754 single floats, little-endian,
-1..1 of the channel's amplitude) and ``WLISt:WAVeform:MARKer:DATA "name",start,size,
#<block>`` (one byte a sample); ``SOURce<n>:CASSet:WAVeform "name"`` assigns one to a
channel, ``SOURce<n>:RMODe CONTinuous|TRIGgered`` chooses cycling or one play per trigger,
``AWGControl:RUN|STOP`` plays, ``AWGControl:RSTATe?`` answers 0 stopped, 1 waiting for
trigger, 2 running, ``TRIGger:IMMediate ATRigger`` triggers, ``CLOCk:SRATe`` sets the
sample rate (up to 2.5 GS/s), ``SYSTem:ERRor?`` pops the error queue (``0,"No error"``).

How a PulsePattern becomes waveforms (labctl's convention; the lab wires it so):

- one pulse = ``samples_per_pulse`` samples (setting, default 4), so the pulse period is
  ``samples_per_pulse / CLOCk:SRATe``; every sample of a pulse holds its levels;
- channel 1 drives the intensity modulator: class ``k`` (0 = the design's first class)
  at ``1 - k/4`` of full scale (classes 0..7; the modulator's bias and the channel's
  amplitude make those the design's mean photon numbers);
- channel 2 drives the basis/bit modulator: state ``2*basis + bit`` at
  ``-0.75 + 0.5*state`` of full scale (four levels);
- channel 1's marker 1 (byte bit 0) is the clock marker, high on the first sample of every
  ``marker_divider``-th pulse counted from the pattern's first; marker 2 (bit 1) is the
  frame marker on the first pulse. Marker bit positions in ``MARKer:DATA`` are assumed as
  in the .wfmx files qcodes writes (marker m = bit m-1); a cycled pattern whose length is
  not a multiple of the divider breaks the marker rhythm at the wrap.

Mode and memory: the AWG cycles what it holds (``REPEATING``: a block longer than the
pattern reuses states, so key from it is a demonstration only); it holds 2 GSa per
channel (standard memory), ``memory_pulses = 2e9 // samples_per_pulse``. ``repeat=False``
loads run in TRIGgered mode: ``start()`` runs and triggers once. A load replaces the whole
waveform list (``WLISt:WAVeform:DELete ALL``): the AWG is Alice's alone.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from labctl.instrument.base import (
    DriverBase,
    make_transport,
    require_transport,
    validate_config_settings,
    with_default_options,
)
from labctl.instrument.scpi import ScpiLink
from labctl.instrument.settings import Setting
from labctl.instrument.validate import parse_float
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health
from labctl.interfaces.pattern import PatternMode, PulsePattern
from labctl.interfaces.units import PS_PER_S
from labctl.transport.base import Transport

MAX_SAMPLES = 2_000_000_000
SRATE_RANGE_HZ = (1.49e3, 2.5e9)
MAX_CLASSES = 8
CHUNK_SAMPLES = 1 << 22  # samples per DATA command (16 MiB blocks)
WAVE_NAMES = ('"labctl_ch1"', '"labctl_ch2"')
MARKER_DIVIDER_RANGE = (1, 1 << 30)
PERIOD_RANGE_PS = (1, 10**12)
SAMPLES_PER_PULSE_RANGE = (1, 1 << 16)
DEFAULT_SAMPLES_PER_PULSE = 4
DEFAULT_MARKER_DIVIDER = 1000


def intensity_levels(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Channel 1 level of each class code (1 - k/4)."""
    return (1.0 - codes.astype(np.float32) / 4.0).astype(np.float32)


def state_levels(
    basis: npt.NDArray[np.uint8], bit: npt.NDArray[np.uint8]
) -> npt.NDArray[np.float32]:
    """Channel 2 level of each (basis, bit): -0.75 + 0.5 * (2*basis + bit)."""
    state = 2 * basis.astype(np.float32) + bit.astype(np.float32)
    return (-0.75 + 0.5 * state).astype(np.float32)


def ieee_block(payload: bytes) -> bytes:
    """An IEEE 488.2 definite-length block."""
    length = str(len(payload)).encode("ascii")
    return b"#" + str(len(length)).encode("ascii") + length + payload


class AWG5208Transmitter(DriverBase):
    """Driver for the Tektronix AWG5208 as labctl's Transmitter (REPEATING)."""

    model: ClassVar[str] = "Tektronix AWG5208"
    settings = (
        Setting(
            "period_ps",
            "integer",
            PERIOD_RANGE_PS,
            lambda d, ps: d._apply_period(ps),
            read=lambda d: d.get_period_ps(),
        ),
        # The next two are held by the driver, not the AWG: samples_per_pulse is fixed at
        # construction (memory and sample rate follow from it) and marker_divider is
        # written into the next pattern loaded, so neither has anything to re-apply.
        Setting(
            "samples_per_pulse",
            "integer",
            SAMPLES_PER_PULSE_RANGE,
            read=lambda d: d._samples_per_pulse(),
        ),
        Setting(
            "marker_divider",
            "integer",
            MARKER_DIVIDER_RANGE,
            read=lambda d: d.get_marker_divider(),
        ),
    )

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        samples_per_pulse: int = DEFAULT_SAMPLES_PER_PULSE,
        marker_divider: int = DEFAULT_MARKER_DIVIDER,
    ) -> None:
        super().__init__(name, transport)
        self._scpi = ScpiLink(transport, terminator=b"\n")
        self._spp: int = self.declared("samples_per_pulse").check(name, samples_per_pulse)
        self._divider: int = self.declared("marker_divider").check(name, marker_divider)
        self._once = False
        self._loaded = 0

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: samples_per_pulse, period_ps, marker_divider."""
        transport_spec = require_transport(spec, ("tcp", "visa"))
        if transport_spec.kind == "visa":
            transport_spec = with_default_options(
                transport_spec, {"write_termination": "", "read_termination": "\n"}
            )
        validated = validate_config_settings(spec, cls.config_validators(spec.name))
        driver = cls(
            spec.name,
            make_transport(spec, transport_spec),
            samples_per_pulse=validated.pop("samples_per_pulse", DEFAULT_SAMPLES_PER_PULSE),
            marker_divider=validated.pop("marker_divider", DEFAULT_MARKER_DIVIDER),
        )
        for key, value in validated.items():
            driver._remember_declared(key, value)
        return driver

    # -- lifecycle ----------------------------------------------------------------------

    async def _identify(self) -> dict[str, str]:
        reply = await self._scpi.ask("*IDN?")
        fields = [part.strip() for part in reply.split(",")]
        if len(fields) != 4 or fields[0].upper() != "TEKTRONIX" or "AWG52" not in fields[1]:
            raise ProtocolError(
                f"not a Tektronix AWG5200 identity: {reply!r}",
                instrument=self.name,
                command="*IDN?",
            )
        return {"vendor": fields[0], "model": fields[1], "serial": fields[2], "firmware": fields[3]}

    async def snapshot(self) -> dict[str, Any]:
        """Identity and settings (never the pattern)."""
        return {
            "model": self.model,
            **self.identity,
            **await self._declared_snapshot(),
            "memory_pulses": self.memory_pulses,
            "pattern_mode": str(self.pattern_mode),
            "loaded_pulses": self._loaded,
            "repeat": not self._once,
        }

    async def safe_state(self) -> None:
        """Stop playing (the channels go to their stopped levels: no pulses)."""
        await self.stop()

    async def health(self) -> Health:
        """Healthy when the error queue is empty; readings: run state."""
        state = await self._scpi.ask("AWGC:RST?")
        error = await self._scpi.ask("SYST:ERR?")
        ok = error.startswith("0,")
        return Health(
            ok=ok,
            detail="ok" if ok else f"error queue: {error}",
            readings={"run_state": state, "samples_per_pulse": self._spp},
        )

    # -- Transmitter interface ----------------------------------------------------------

    @property
    def memory_pulses(self) -> int:
        """Pulses one pattern may hold: 2 GSa per channel / samples_per_pulse."""
        return MAX_SAMPLES // self._spp

    @property
    def upload_pulses(self) -> int:
        """One waveform per load: the whole memory."""
        return self.memory_pulses

    @property
    def pattern_mode(self) -> PatternMode:
        """The AWG cycles the waveform it holds."""
        return PatternMode.REPEATING

    async def set_period_ps(self, period_ps: int) -> None:
        """Set the sample rate to ``samples_per_pulse`` samples per ``period_ps``."""
        await self._set_declared("period_ps", period_ps)

    async def get_period_ps(self) -> int:
        """The pulse period from the sample rate, picoseconds."""
        reply = await self._scpi.ask("CLOCk:SRATe?")
        rate = parse_float(reply, instrument=self.name, command="CLOCk:SRATe?")
        if rate <= 0:
            raise ProtocolError(
                f"sample rate {rate:g} makes no sense", instrument=self.name, command="CLOCk:SRATe?"
            )
        return round(self._spp * PS_PER_S / rate)

    async def set_marker_divider(self, divider: int) -> None:
        """Clock marker every ``divider`` pulses (written into the next pattern loaded)."""
        self._divider = self.declared("marker_divider").check(self.name, divider)

    async def get_marker_divider(self) -> int:
        """Pulses between two clock markers."""
        return self._divider

    async def load_pattern(self, pattern: PulsePattern, *, repeat: bool) -> None:
        """Stop, replace the waveform list with ``pattern``'s two waveforms, assign them."""
        self._check_pattern("load_pattern", pattern)
        n_samples = len(pattern) * self._spp
        ch1 = np.repeat(intensity_levels(pattern.intensity), self._spp)
        ch2 = np.repeat(state_levels(pattern.basis, pattern.bit), self._spp)
        markers = np.zeros(n_samples, dtype=np.uint8)
        markers[:: self._spp * self._divider] |= 1
        markers[0] |= 2
        mode = "CONTinuous" if repeat else "TRIGgered"
        await self._scpi.send("AWGControl:STOP")
        await self._scpi.send("WLISt:WAVeform:DELete ALL")
        for channel, (name, samples) in enumerate(zip(WAVE_NAMES, (ch1, ch2), strict=True), 1):
            await self._scpi.send(f"WLISt:WAVeform:NEW {name},{n_samples}")
            await self._upload("WLISt:WAVeform:DATA", name, samples.astype("<f4").tobytes(), 4)
            if channel == 1:
                await self._upload("WLISt:WAVeform:MARKer:DATA", name, markers.tobytes(), 1)
            await self._scpi.send(f"SOURce{channel}:CASSet:WAVeform {name}")
            await self._scpi.send(f"SOURce{channel}:RMODe {mode}")
        await self._check("load_pattern")
        self._once, self._loaded = not repeat, len(pattern)

    async def append_pattern(self, pattern: PulsePattern) -> None:
        """Refused: the AWG cycles what it holds, nothing can follow it."""
        raise InstrumentFault(
            "the AWG5208 cycles its waveform (REPEATING): no chunk can follow it",
            instrument=self.name,
            command="append_pattern",
        )

    async def start(self) -> None:
        """Outputs on, run (and trigger once for a pattern loaded without repeat)."""
        await self._scpi.send("OUTPut1:STATe 1")
        await self._scpi.send("OUTPut2:STATe 1")
        await self._scpi.send("AWGControl:RUN")
        if self._once:
            await self._scpi.send("TRIGger:IMMediate ATRigger")
        await self._check("start")

    async def stop(self) -> None:
        """Stop playing."""
        await self._scpi.send("AWGControl:STOP")

    async def is_running(self) -> bool:
        """True while the AWG runs (not stopped, not waiting for its trigger)."""
        reply = await self._scpi.ask("AWGControl:RSTATe?")
        if reply not in ("0", "1", "2"):
            raise ProtocolError(
                f"run state {reply!r} is not 0, 1 or 2",
                instrument=self.name,
                command="AWGControl:RSTATe?",
            )
        return reply == "2"

    # -- internals ----------------------------------------------------------------------

    def _check_pattern(self, command: str, pattern: PulsePattern) -> None:
        if not isinstance(pattern, PulsePattern):
            raise InstrumentFault(
                f"expected a PulsePattern, got {type(pattern).__name__}",
                instrument=self.name,
                command=command,
            )
        if len(pattern) == 0:
            raise InstrumentFault(
                "the pattern holds no pulse", instrument=self.name, command=command
            )
        if len(pattern) > self.memory_pulses:
            raise InstrumentFault(
                f"{len(pattern)} pulses exceed the memory of {self.memory_pulses}",
                instrument=self.name,
                command=command,
            )
        if int(pattern.intensity.max()) >= MAX_CLASSES:
            raise InstrumentFault(
                f"intensity class {int(pattern.intensity.max())} beyond the {MAX_CLASSES} levels",
                instrument=self.name,
                command=command,
            )

    async def _upload(self, header: str, name: str, payload: bytes, width: int) -> None:
        """``header name,start,size,#block`` in chunks of CHUNK_SAMPLES samples."""
        n_samples = len(payload) // width
        for start in range(0, n_samples, CHUNK_SAMPLES):
            size = min(CHUNK_SAMPLES, n_samples - start)
            chunk = payload[start * width : (start + size) * width]
            prefix = f"{header} {name},{start},{size},".encode("ascii")
            await self.transport.write(prefix + ieee_block(chunk) + b"\n", command=header)

    async def _check(self, command: str) -> None:
        """Wait for the AWG, then raise InstrumentFault with its first queued error."""
        await self._scpi.ask("*OPC?")
        error = await self._scpi.ask("SYSTem:ERRor?")
        if not error.startswith("0,"):
            raise InstrumentFault(error, instrument=self.name, command=command)

    async def _samples_per_pulse(self) -> int:
        return self._spp

    async def _apply_period(self, period_ps: int) -> None:
        rate = self._spp * PS_PER_S / period_ps
        if not SRATE_RANGE_HZ[0] <= rate <= SRATE_RANGE_HZ[1]:
            raise InstrumentFault(
                f"{period_ps} ps with {self._spp} samples per pulse needs {rate:g} Sa/s, "
                f"outside {SRATE_RANGE_HZ[0]:g}..{SRATE_RANGE_HZ[1]:g}",
                instrument=self.name,
                command="set_period_ps",
            )
        await self._scpi.send(f"CLOCk:SRATe {rate:.12g}")
        await self._check("set_period_ps")
