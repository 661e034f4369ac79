"""Bob's receiver: passive basis choice, two polarizing beam splitters, four detectors.

``click_weights`` gives, for each of the four BB84 states Alice (or Eve) can prepare, the
fraction q[s, d] of the photons reaching Bob's receiver that are absorbed by detector d:
basis split x PBS projection (with intrinsic misalignment e_det) x detector efficiency.
Detector d then sees Poisson(mean_photons * q[s, d]) photons, independently of the others.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sims.world.polarization import Matrix3
from sims.world.settings import ReceiverSettings

# Stokes vectors of the prepared states, index = 2 * basis + bit: H, V, D, A.
STATE_STOKES = np.array(
    [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]], dtype=np.float64
)
# The analyser axis of each detector Z0, Z1, X0, X1 (same layout as the states).
DETECTOR_AXES = STATE_STOKES


def click_weights(
    settings: ReceiverSettings,
    rotation: Matrix3,
    efficiency: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """q[state, detector] for the current channel rotation and detector efficiencies."""
    at_bob = STATE_STOKES @ rotation.T  # row s = rotation @ state s
    e_det = settings.misalignment
    projection = 0.5 * (1.0 + at_bob @ DETECTOR_AXES.T)
    projection = e_det + (1.0 - 2.0 * e_det) * projection
    p_z = settings.basis_z_probability
    basis_split = np.array([p_z, p_z, 1.0 - p_z, 1.0 - p_z])
    weights: npt.NDArray[np.float64] = projection * basis_split[None, :] * efficiency[None, :]
    return weights


def basis_error_rates(settings: ReceiverSettings, rotation: Matrix3) -> tuple[float, float]:
    """(Q_Z, Q_X) of single photons through ``rotation`` (no background): the world's truth.

    For tests and benchmarks that need the QBER an alignment gives without sampling events.
    """
    weights = click_weights(settings, rotation, np.ones(len(STATE_STOKES)))
    rates = []
    for basis in (0, 1):
        error = 0.0
        for bit in (0, 1):
            state = 2 * basis + bit
            right, wrong = weights[state, state], weights[state, state ^ 1]
            error += 0.5 * wrong / (right + wrong)
        rates.append(float(error))
    return rates[0], rates[1]
