"""Alice's control link: Bob's node asks Alice's node to light, mark and key the fiber.

With Alice and Bob as two nodes, each holds only its own instruments. Bob runs the
calibrations, the synchronization and the key plan; whatever needs Alice's instruments
goes over this authenticated channel as a request her node carries out:

* ``ctl/hello`` -> her design (pulse period, decoy classes, the calibration frame's length;
  its states are public: ``seeded_pattern`` of CALIBRATION_SEED);
* ``ctl/light`` -> the public calibration frame is playing (its first pulse's index);
* ``ctl/marker-frame`` {gaps, gap_pulses, seed} -> a public marker frame played once;
* ``ctl/key-block`` {pulses} -> fresh secret states played once (first pulse, span): the
  states never cross the link, sifting reveals only what the protocol reveals;
* ``ctl/laser`` {op, value} -> her laser's output, power or wavelength.

Every request is answered ``ctl/ok`` (JSON) or ``ctl/error`` (a message naming what failed);
an error on Alice's side never ends her node: Bob decides.

Under Wegman-Carter authentication (``qkd.auth: wegman-carter``) the control link carries a
transcript authenticator like the key channels, and every ``ctl/key-block`` is a
checkpoint in both directions: Alice checks everything Bob sent on the link (this request
included) before she plays the block, Bob checks everything she answered (the block's first
pulse and span included) before he reads it. So no key is ever stored from a block whose
control exchange, or any earlier one, was forged: the per-message HMAC underneath is then
not what the key's security rests on. Other requests are covered by the next checkpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from experiments.sync.acquire import marker_frame
from experiments.sync.alice import (
    CALIBRATION_SEED,
    AlicePattern,
    SourceDesign,
    TransmitterAlice,
)
from experiments.sync.record import Played, PlayRecord
from labctl.interfaces.devices import Laser
from labctl.interfaces.errors import LabctlError
from labctl.interfaces.instrument import Health
from labctl.interfaces.pattern import PackedCodes, PulsePattern, seeded_pattern
from labctl.qkd.auth.channel import AuthenticatedChannel
from labctl.qkd.errors import ChannelClosed, MessageFormatError

I64 = npt.NDArray[np.int64]

CHECKED_KINDS = frozenset({"ctl/key-block"})
"""Requests that close a transcript checkpoint in both directions (see the module doc)."""

LASER_OPS = (
    "set_output",
    "get_output",
    "set_power_mw",
    "get_power_mw",
    "set_wavelength_nm",
    "get_wavelength_nm",
)


class RemoteError(LabctlError):
    """Alice's node could not carry out a request (her instrument or plan failed)."""


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, allow_nan=False).encode()


def _parse(payload: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MessageFormatError(f"{what}: not JSON") from None
    if not isinstance(data, dict):
        raise MessageFormatError(f"{what}: expected a JSON object")
    return data


def _int(data: dict[str, Any], key: str, what: str, low: int = 0) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise MessageFormatError(f"{what}: {key} must be an integer >= {low}, got {value!r}")
    return value


class AliceControl:
    """Alice's side: carries out Bob's requests on her transmitter, tagger and laser."""

    def __init__(self, channel: AuthenticatedChannel, alice: TransmitterAlice, laser: Laser):
        self.channel = channel
        self.alice = alice
        self.laser = laser
        self.power_mw = 0.0

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Answer requests until Bob says ``ctl/bye``, closes the link or ``stop`` is set."""
        self.power_mw = await self.laser.get_power_mw()
        while stop is None or not stop.is_set():
            try:
                message = await self._next(stop)
            except ChannelClosed:
                return
            if message is None or message.kind == "ctl/bye":
                return
            checked = message.kind in CHECKED_KINDS
            if checked:  # a forged control transcript stops her node before she plays
                await self.channel.recv_checkpoint()
            try:
                reply = await self._handle(message.kind, message.payload)
            except MessageFormatError:
                raise  # a malformed request from an authenticated peer: stop, as the nodes do
            except (LabctlError, ValueError, TypeError, RuntimeError) as exc:
                await self.channel.send(
                    "ctl/error", _json({"error": f"{type(exc).__name__}: {exc}"})
                )
            else:
                await self.channel.send("ctl/ok", _json(reply))
            if checked:
                await self.channel.send_checkpoint()

    async def _next(self, stop: asyncio.Event | None) -> Any:
        receiving = asyncio.ensure_future(self.channel.recv(timeout_s=24 * 3600.0))
        if stop is None:
            return await receiving
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((receiving, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not receiving.done():
                receiving.cancel()
        return receiving.result() if receiving.done() and not receiving.cancelled() else None

    async def _handle(self, kind: str, payload: bytes) -> dict[str, Any]:
        alice = self.alice
        if kind == "ctl/hello":
            design = alice.design
            return {
                "period_ps": design.period_ps,
                "intensity_names": list(design.intensity_names),
                "intensity_mu": list(design.intensity_mu),
                "intensity_probability": list(design.intensity_probability),
                "basis_z_probability": design.basis_z_probability,
                "nominal_power_mw": design.nominal_power_mw,
                "calibration_frame_pulses": len(alice.calibration_frame),
            }
        if kind == "ctl/light":
            await alice.ensure_light()
            return {"anchor": alice.calibration_anchor}
        if kind == "ctl/marker-frame":
            data = _parse(payload, kind)
            frame = marker_frame(
                alice,
                _int(data, "gaps", kind, 1),
                _int(data, "gap_pulses", kind, 1),
                seed=_int(data, "seed", kind),
            )
            return {"first": await alice.play_once(frame.pattern)}
        if kind == "ctl/key-block":
            data = _parse(payload, kind)
            first, span = await alice.play_key_block(_int(data, "pulses", kind, 1))
            return {"first": first, "span": span}
        if kind == "ctl/laser":
            data = _parse(payload, kind)
            return {"value": await self._laser(data)}
        raise MessageFormatError(f"unknown control request {kind!r}")

    async def _laser(self, data: dict[str, Any]) -> Any:
        op = data.get("op")
        if op not in LASER_OPS:
            raise MessageFormatError(f"ctl/laser: op must be one of {', '.join(LASER_OPS)}")
        method: Callable[..., Any] = getattr(self.laser, op)
        if op.startswith("get_"):
            return await method()
        value: Any = data.get("value")
        await method(value)
        if op == "set_power_mw":
            self.power_mw = float(value)
        return None


class RemoteAlice:
    """Bob's view of Alice's node: her design and public frames, her actions by request.

    It answers ``pattern()`` for the public frames only (calibration and marker frames,
    recomputed here from their seeds); key-block states stay with Alice.
    """

    def __init__(self, channel: AuthenticatedChannel, design: SourceDesign, frame_pulses: int):
        self.channel = channel
        self.design = design
        self.record = PlayRecord()
        self.lock = asyncio.Lock()
        """One request at a time on the control link (RemoteLaser shares it)."""
        self._calibration = seeded_pattern(
            frame_pulses,
            design.intensity_probability,
            design.basis_z_probability,
            seed=CALIBRATION_SEED,
        )
        self.calibration_anchor: int | None = None

    @classmethod
    async def connect(cls, channel: AuthenticatedChannel) -> RemoteAlice:
        """Ask Alice's node for her design."""
        reply = await _request(channel, "ctl/hello", {})
        design = SourceDesign(
            period_ps=int(reply["period_ps"]),
            intensity_names=tuple(str(n) for n in reply["intensity_names"]),
            intensity_mu=tuple(float(m) for m in reply["intensity_mu"]),
            intensity_probability=tuple(float(p) for p in reply["intensity_probability"]),
            basis_z_probability=float(reply["basis_z_probability"]),
            nominal_power_mw=float(reply["nominal_power_mw"]),
        )
        return cls(channel, design, int(reply["calibration_frame_pulses"]))

    # -- AlicePublic --------------------------------------------------------------------

    @property
    def period_ps(self) -> int:
        """Her pulse period in picoseconds."""
        return self.design.period_ps

    @property
    def intensity_names(self) -> tuple[str, ...]:
        """Intensity classes in code order."""
        return self.design.intensity_names

    @property
    def intensity_mu(self) -> tuple[float, ...]:
        """Design mean photon numbers at nominal power."""
        return self.design.intensity_mu

    @property
    def nominal_power_mw(self) -> float:
        """Power at which the design mean photon numbers hold."""
        return self.design.nominal_power_mw

    @property
    def intensity_probability(self) -> tuple[float, ...]:
        """Probability of every intensity class."""
        return self.design.intensity_probability

    @property
    def basis_z_probability(self) -> float:
        """Probability of the Z basis."""
        return self.design.basis_z_probability

    def pattern(self, indices: I64) -> AlicePattern:
        """The public frames' states at ``indices`` (intensity 255 elsewhere)."""
        code = self.record.codes(np.asarray(indices, dtype=np.int64))
        sent = code != 0xFF
        return AlicePattern(
            basis=((code >> np.uint8(1)) & np.uint8(1)).astype(np.uint8),
            bit=(code & np.uint8(1)).astype(np.uint8),
            intensity=np.where(sent, code >> np.uint8(2), np.uint8(0xFF)).astype(np.uint8),
        )

    # -- AliceSide ----------------------------------------------------------------------

    async def ensure_light(self) -> None:
        """Alice's calibration frame plays (a fresh anchor whenever she restarted it)."""
        async with self.lock:
            reply = await _request(self.channel, "ctl/light", {})
            anchor = int(reply["anchor"])
            if anchor != self.calibration_anchor:
                self.record.add(Played(anchor, PackedCodes.of(self._calibration), repeat=True))
                self.calibration_anchor = anchor

    async def play_marker_frame(
        self, frame: PulsePattern, gaps: int, gap_pulses: int, seed: int
    ) -> int:
        """Alice plays the marker frame of ``seed`` once; its first pulse."""
        async with self.lock:
            reply = await _request(
                self.channel,
                "ctl/marker-frame",
                {"gaps": gaps, "gap_pulses": gap_pulses, "seed": seed},
            )
            first = int(reply["first"])
            self.record.add(Played(first, PackedCodes.of(frame), repeat=False))
            self.calibration_anchor = None
            return first

    async def play_key_block(self, n_pulses: int) -> tuple[int, int]:
        """Alice plays fresh secret states once; (first pulse, span to read)."""
        async with self.lock:
            reply = await _request(self.channel, "ctl/key-block", {"pulses": n_pulses})
            self.calibration_anchor = None
            return int(reply["first"]), int(reply["span"])

    def reserve(self, block_pulses: int, blocks: int) -> None:
        """Alice keeps her own record: nothing to reserve here."""

    async def close(self) -> None:
        """Tell Alice's node the control session is over."""
        await self.channel.send("ctl/bye", b"{}")


class RemoteLaser:
    """Alice's laser as an instrument of Bob's station, driven over the control link."""

    def __init__(self, name: str, channel: AuthenticatedChannel, lock: asyncio.Lock) -> None:
        self.name = name
        self._channel = channel
        self._lock = lock

    async def _op(self, op: str, value: Any = None) -> Any:
        async with self._lock:
            reply = await _request(self._channel, "ctl/laser", {"op": op, "value": value})
        return reply["value"]

    async def connect(self) -> None:
        """The link is Alice's node's: nothing to open."""

    async def close(self) -> None:
        """The link stays open for the other requests."""

    async def __aenter__(self) -> RemoteLaser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def set_output(self, enabled: bool) -> None:
        """Alice switches her laser on or off."""
        await self._op("set_output", bool(enabled))

    async def get_output(self) -> bool:
        """Her laser's output state."""
        return bool(await self._op("get_output"))

    async def set_power_mw(self, power_mw: float) -> None:
        """Alice sets her laser power."""
        await self._op("set_power_mw", float(power_mw))

    async def get_power_mw(self) -> float:
        """Her laser's power setpoint."""
        return float(await self._op("get_power_mw"))

    async def set_wavelength_nm(self, wavelength_nm: float) -> None:
        """Alice tunes her laser."""
        await self._op("set_wavelength_nm", float(wavelength_nm))

    async def get_wavelength_nm(self) -> float:
        """Her laser's wavelength."""
        return float(await self._op("get_wavelength_nm"))

    async def snapshot(self) -> dict[str, Any]:
        """What Bob's node knows of Alice's laser."""
        return {
            "name": self.name,
            "remote": "alice",
            "output": await self.get_output(),
            "power_mw": await self.get_power_mw(),
            "wavelength_nm": await self.get_wavelength_nm(),
        }

    async def safe_state(self) -> None:
        """Alice's node keeps her laser safe itself; Bob asks for the output off."""
        await self.set_output(False)

    async def health(self) -> Health:
        """Healthy when Alice's node answers."""
        return Health(ok=True, detail="ok", readings={"power_mw": await self.get_power_mw()})


async def _request(
    channel: AuthenticatedChannel, kind: str, data: dict[str, Any]
) -> dict[str, Any]:
    await channel.send(kind, _json(data))
    checked = kind in CHECKED_KINDS
    if checked:
        await channel.send_checkpoint()
    reply = await channel.recv()
    if checked:
        await channel.recv_checkpoint()
    body = _parse(reply.payload, reply.kind)
    if reply.kind == "ctl/error":
        raise RemoteError(f"Alice's node: {kind}: {body.get('error', 'failed')}")
    if reply.kind != "ctl/ok":
        raise MessageFormatError(f"{kind}: expected ctl/ok or ctl/error, got {reply.kind!r}")
    return body
