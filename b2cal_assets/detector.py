"""Belle II detector geometry and SuperKEKB design values that the generator and the
calibrations share: facts both sides know from the detector and machine documentation.

Only what the calibrations need: the ECL crystal numbering (8736 crystals in 69 theta
rings), the CDC wire numbering (14336 sense wires in 56 layers, 9 superlayers) with the
wire length, and the nominal beams (energies, 83 mrad crossing) with the two-body kinematics
they imply. Ids are 0-based here (basf2's ECL cellId is this id + 1).

What the detector *does* (resolutions, shower containment, x-t relation, noise rates, ISR)
is not here: the generator models it on its side, and a calibration measures it.
"""

from __future__ import annotations

import math

import numpy as np

# SuperKEKB design: HER electrons 7 GeV, LER positrons 4 GeV, crossing at 83 mrad in the x-z
# plane, both beams at 41.5 mrad to the solenoid (z) axis on the +x side of the other's
# reverse, so the e+e- system moves with p_x = (E_HER + E_LER) sin(41.5 mrad), about 0.46 GeV.
HER_ENERGY_GEV = 7.0
LER_ENERGY_GEV = 4.0
CROSSING_ANGLE_RAD = 0.083

# ECL: crystals per theta ring. Forward endcap 13 rings, barrel 46 rings, backward endcap 10.
ECL_FORWARD_RING_SIZES = (48, 48, 64, 64, 64, 96, 96, 96, 96, 96, 96, 144, 144)
ECL_BARREL_RING_SIZES = (144,) * 46
ECL_BACKWARD_RING_SIZES = (144, 144, 96, 96, 96, 96, 96, 64, 64, 64)
ECL_RING_SIZES = np.array(ECL_FORWARD_RING_SIZES + ECL_BARREL_RING_SIZES + ECL_BACKWARD_RING_SIZES)
ECL_N_CRYSTALS = int(ECL_RING_SIZES.sum())  # 8736
ECL_RING_FIRST_ID = np.concatenate([[0], np.cumsum(ECL_RING_SIZES)[:-1]])
# Polar-angle edges of the rings (radians): forward 12.4-31.4 deg, barrel 32.2-128.7 deg,
# backward 130.7-155.1 deg, evenly divided per region (close enough for calibration studies).
_ECL_REGION_EDGES_DEG = ((12.4, 31.4, 13), (32.2, 128.7, 46), (130.7, 155.1, 10))
ECL_RING_THETA_LOW = np.concatenate(
    [np.deg2rad(np.linspace(lo, hi, n + 1)[:-1]) for lo, hi, n in _ECL_REGION_EDGES_DEG]
)
ECL_RING_THETA_HIGH = np.concatenate(
    [np.deg2rad(np.linspace(lo, hi, n + 1)[1:]) for lo, hi, n in _ECL_REGION_EDGES_DEG]
)
ECL_THETA_MIN = float(ECL_RING_THETA_LOW[0])
ECL_THETA_MAX = float(ECL_RING_THETA_HIGH[-1])

# CDC: 56 layers; wires per layer by superlayer (8 layers in SL0, then 6 per superlayer).
CDC_WIRES_PER_SUPERLAYER = (160, 160, 192, 224, 256, 288, 320, 352, 384)
CDC_LAYERS_PER_SUPERLAYER = (8, 6, 6, 6, 6, 6, 6, 6, 6)
CDC_LAYER_WIRES = np.repeat(CDC_WIRES_PER_SUPERLAYER, CDC_LAYERS_PER_SUPERLAYER)
CDC_N_LAYERS = len(CDC_LAYER_WIRES)  # 56
CDC_N_WIRES = int(CDC_LAYER_WIRES.sum())  # 14336
CDC_LAYER_FIRST_WIRE = np.concatenate([[0], np.cumsum(CDC_LAYER_WIRES)[:-1]])
# Sense-wire radii (cm): inner wall at 16.8 cm, outer layer at 111.1 cm.
CDC_LAYER_RADIUS = np.linspace(16.8, 111.1, CDC_N_LAYERS)
# Wire ends (cm along z): the signal is read out at the backward end plate.
CDC_WIRE_Z_BACKWARD = -77.0
CDC_WIRE_Z_FORWARD = 160.0
SPEED_OF_LIGHT_CM_PER_NS = 29.9792458
SOLENOID_FIELD_TESLA = 1.5


def beam_four_momenta(
    her_gev: float = HER_ENERGY_GEV, ler_gev: float = LER_ENERGY_GEV, crossing_rad: float = CROSSING_ANGLE_RAD
) -> tuple[np.ndarray, np.ndarray]:
    """(E, px, py, pz) of the HER electron and the LER positron (massless)."""
    half = crossing_rad / 2.0
    her = np.array([her_gev, her_gev * math.sin(half), 0.0, her_gev * math.cos(half)])
    ler = np.array([ler_gev, ler_gev * math.sin(half), 0.0, -ler_gev * math.cos(half)])
    return her, ler


def elastic_lab_energy(
    theta: np.ndarray,
    phi: np.ndarray,
    her_gev: float = HER_ENERGY_GEV,
    ler_gev: float = LER_ENERGY_GEV,
    crossing_rad: float = CROSSING_ANGLE_RAD,
) -> np.ndarray:
    """Energy of an elastically scattered (massless) e+ or e- at lab direction (theta, phi):
    E = s / (2 (E_tot - P . n)), with (E_tot, P) the four-momentum of the two beams."""
    her, ler = beam_four_momenta(her_gev, ler_gev, crossing_rad)
    total = her + ler
    s = total[0] ** 2 - total[1:] @ total[1:]
    sin_theta = np.sin(theta)
    p_dot_n = total[1] * sin_theta * np.cos(phi) + total[2] * sin_theta * np.sin(phi) + total[3] * np.cos(theta)
    return s / (2.0 * (total[0] - p_dot_n))


def bhabha_lab_energy(theta: np.ndarray, her_gev: float = HER_ENERGY_GEV, ler_gev: float = LER_ENERGY_GEV) -> np.ndarray:
    """Head-on special case of :func:`elastic_lab_energy` (no crossing angle, no phi dependence)."""
    return 2.0 * her_gev * ler_gev / (her_gev + ler_gev - (her_gev - ler_gev) * np.cos(theta))


def ecl_theta_phi_id(cell_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(theta ring id 0-68, phi id within the ring) of 0-based crystal ids."""
    cell_id = np.asarray(cell_id)
    theta_id = np.searchsorted(ECL_RING_FIRST_ID, cell_id, side="right") - 1
    return theta_id, cell_id - ECL_RING_FIRST_ID[theta_id]


def ecl_crystal_at(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Crystal id hit by a particle at (theta, phi); -1 outside the ECL acceptance or in a gap."""
    theta = np.asarray(theta, dtype=float)
    ring = np.searchsorted(ECL_RING_THETA_LOW, theta, side="right") - 1
    ring_clipped = np.clip(ring, 0, len(ECL_RING_SIZES) - 1)
    inside = (ring >= 0) & (theta < ECL_RING_THETA_HIGH[ring_clipped])
    sizes = ECL_RING_SIZES[ring_clipped]
    phi_id = np.floor(np.mod(phi, 2 * np.pi) / (2 * np.pi) * sizes).astype(np.int64)
    phi_id = np.minimum(phi_id, sizes - 1)
    return np.where(inside, ECL_RING_FIRST_ID[ring_clipped] + phi_id, -1)


def cdc_layer_of_wire(wire_id: np.ndarray) -> np.ndarray:
    """Layer 0-55 of 0-based wire ids."""
    return np.searchsorted(CDC_LAYER_FIRST_WIRE, np.asarray(wire_id), side="right") - 1
