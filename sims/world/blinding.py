"""Detector blinding (Lydersen et al., Nat. Photonics 4, 686 (2010); NJP 13, 113042 (2011)).

Eve shines bright continuous-wave (CW) light into Bob's receiver. Above a detector's
blinding threshold the detector no longer counts single photons: it becomes a linear
detector with a threshold, so it has no dark counts and no afterpulses and clicks only on a
bright pulse whose energy at that detector exceeds the threshold. Eve intercepts every pulse
of Alice, measures it in a random basis and, when she detects a photon, sends a bright
"faked state" of her result. She scales that pulse so that, through Bob's nominal path (the
switch on Bob's port, his optics), the detector matching her state receives
``trigger_margin`` times the threshold; the detectors of the other basis get half of the
matched detector's share (passive basis splitter), below the threshold when the margin is
below 2. Bob's click then always carries the bit Eve chose in the basis Eve chose: the
sifted QBER is ~0 and Eve knows every sifted bit.

What a lab can see, modelled here:

* the CW light is light: the detector's bias line carries a photocurrent
  (``photocurrent_a_per_w`` x power), read in the detector's health;
* attenuation on Bob's side (the switch turned to another port leaves only its crosstalk)
  lowers the CW light below the blinding threshold: the detector counts again, at the CW
  photon rate (dead-time limited), far above its dark count rate; Eve's triggers fall below
  the threshold and click nothing;
* with stronger CW light the detectors stay blinded when attenuated: they then count
  nothing at all, below their dark count rate.

Units: powers in watts inside this module (``*_w``), settings in nW / uW as named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.interfaces.units import db_to_transmission
from sims.world.optics import OpticalPath
from sims.world.settings import WorldSettings

F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

PLANCK_J_S = 6.626_070_15e-34
SPEED_OF_LIGHT_M_PER_S = 299_792_458.0
N_DETECTORS = 4


def photon_energy_j(wavelength_nm: float) -> float:
    """Energy of one photon at ``wavelength_nm``."""
    return PLANCK_J_S * SPEED_OF_LIGHT_M_PER_S / (wavelength_nm * 1e-9)


@dataclass(frozen=True, slots=True)
class BlindingState:
    """What Eve's light does to Bob's four detectors right now."""

    cw_power_w: F64
    """CW power reaching each detector (0 when Eve is not blinding)."""
    blinded: bool
    """Every detector is above its blinding threshold (linear mode, no darks)."""
    cw_click_rate_hz: F64
    """Photon-counting click rate the CW light causes in detectors that are not blinded."""
    fires: BoolArray
    """fires[s, d]: Eve's faked state s (H, V, D, A) exceeds detector d's threshold."""


def blinding_state(settings: WorldSettings, optics: OpticalPath, efficiency: F64) -> BlindingState:
    """The detectors' response to Eve's CW light and triggers for the current optics.

    ``efficiency`` is each detector's photon-counting efficiency (0 when it cannot click).
    """
    eve = settings.eve
    receiver_t = db_to_transmission(settings.receiver.optical_loss_db)
    path_t = optics.switch.transmission_to_bob * receiver_t
    if not optics.blinding:
        zeros = np.zeros(N_DETECTORS)
        return BlindingState(zeros, False, zeros, np.zeros((4, 4), dtype=np.bool_))
    # Depolarized CW light splits evenly over the two bases and two outputs of each PBS.
    cw_w = np.full(N_DETECTORS, eve.blinding_power_uw * 1e-6 * path_t / N_DETECTORS)
    threshold_w = np.array([d.blinding_threshold_nw * 1e-9 for d in settings.detectors])
    counting = efficiency > 0.0
    blinded = bool(np.all(cw_w[counting] >= threshold_w[counting])) and bool(counting.any())
    photons_hz = cw_w / photon_energy_j(optics.source.wavelength_nm)
    cw_rate = np.zeros(N_DETECTORS) if blinded else photons_hz * efficiency
    # Trigger energy at each detector in units of its threshold. Eve aims for the margin at
    # the matched detector through Bob's nominal path (switch on his port, aligned optics).
    share = optics.weights(np.ones(N_DETECTORS))  # basis split x PBS projection, no losses
    p_z = settings.receiver.basis_z_probability
    nominal_share = (1.0 - settings.receiver.misalignment) * np.array(
        [p_z, p_z, 1.0 - p_z, 1.0 - p_z]
    )
    nominal_t = db_to_transmission(settings.switch.insertion_loss_db) * receiver_t
    relative_t = path_t / nominal_t
    energy = eve.blinding_trigger_margin * relative_t * share / nominal_share[:, None]
    fires = (energy >= 1.0) & counting[None, :] if blinded else np.zeros((4, 4), dtype=np.bool_)
    return BlindingState(cw_w, blinded, cw_rate, fires)


def trigger_clicks(
    index: npt.NDArray[np.int64], state: npt.NDArray[np.uint8], fires: BoolArray
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """(pulse index, detector) of every click Eve's triggers cause, in pulse order."""
    per_state = fires.sum(axis=1)
    if per_state.max(initial=0) <= 1:
        # Each state fires one detector at most (Eve's usual aim): one lookup per trigger
        # instead of a (n, 4) table, the same clicks in the same order. Blinded, Eve
        # triggers some 40 % of all pulses, so this is most of a blinded slice's work.
        fired = (per_state > 0)[state]
        detector_of = np.argmax(fires, axis=1).astype(np.uint8)
        return index[fired], detector_of[state[fired]]
    hit = fires[state]  # (n, 4): which detectors each trigger fires
    rows, detector = np.nonzero(hit)  # row-major: pulse order, then detector order
    return index[rows], detector.astype(np.uint8)
