"""Synthetic Belle II run data with known truth: what the detector data flow delivers.

Per run and stream (hlt_mumu_2trk, hlt_bhabha, hlt_hadron) the generator writes cDST-like
ROOT files in the format of :mod:`b2cal_assets.fileformat` (written with uproot): per event
its time in the run, the measured event T0 and a vertex fitted from the tracks; tracks
``trk_*`` (helix at the point of closest approach with the d0/z0 fit covariance); ECL hits
``ecl_*``; CDC hits ``cdc_*`` (with the track each was assigned to).

Truth (beam spot per run with slow drift, drift within the run and rare jumps, collision
energy per run, 8736 crystal gains, 14336 wire t0s, the x-t relation per superlayer) is drawn
from the seed alone, so runs generated in separate calls with one seed are consistent, and is
written to ``truth/`` beside the data.

How the detector and machine behave is the realism model (``realism.py``: ``realistic`` by
default, ``simple`` for the earlier toy model); its constants are the generator's own, never
imported by a calibration. Simplifications that remain: straight-line extrapolation for
impact parameters, an HLT prescale that flattens Bhabha scattering in cos(theta*), no
detector material, ISR photons along the beams without recoil of the pair.

After a run's files the completion record is written, then one line is appended to the
arrival journal (see ``journal.py``): that is the order a data flow must keep.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from b2cal_assets import detector
from b2cal_assets.detector import bhabha_lab_energy  # noqa: F401 - re-exported for studies
from b2cal_assets.fileformat import (
    CDC_BRANCHES,
    ECL_BRANCHES,
    EVENT_BRANCHES,
    EXPECTED_BRANCHES,  # noqa: F401 - re-exported for readers of the generator's output
    TRACK_BRANCHES,
    TREE_NAME,
    adler32_of,
)
from b2cal_assets.run_identity import ExpRun
from b2cal_assets.runs.errors import RunsError
from b2cal_assets.runs.generator.realism import ELECTRON_MASS_GEV, MODELS, MUON_MASS_GEV, PION_MASS_GEV, REALISTIC, RealismModel, fsr_beta, isr_beta
from b2cal_assets.runs.journal import append_arrival
from b2cal_assets.runs.naming import STREAMS, record_path, skim_file_path
from b2cal_assets.runs.records import RecordedFile, RunRecord

# Machine design values the data flow records with each run (the realism model holds how the
# machine and detector actually behave).
HER_ENERGY_GEV = detector.HER_ENERGY_GEV
LER_ENERGY_GEV = detector.LER_ENERGY_GEV
NOMINAL_ECMS_GEV = 2.0 * math.sqrt(HER_ENERGY_GEV * LER_ENERGY_GEV)
CDC_WINDOW_NS = (-200.0, 800.0)  # readout window relative to the trigger
BFIELD_TESLA = 1.5
STREAM_FRACTIONS = {"hlt_mumu_2trk": 0.30, "hlt_bhabha": 0.40, "hlt_hadron": 0.30}
DATA_TAGS = ("mumu_tight_or_highm_calib", "bhabha_all_calib", "hadron_calib")

FAULTS = (
    "corrupt-file",
    "truncated-file",
    "missing-file",
    "low-statistics",
    "dead-crystals",
    "beam-spot-jump",
    "hot-wires",
)
# Faults that hit one run by default; the others hit every generated run.
_SINGLE_RUN_FAULTS = {"corrupt-file", "truncated-file", "missing-file", "low-statistics", "beam-spot-jump"}
LOW_STATISTICS_FRACTION = 0.03
DEAD_CRYSTALS = np.arange(3000, 3080)  # five ShaperDSP boards (16 crystals each) in the barrel
HOT_WIRES = np.arange(7000, 7016)  # one front-end board (16 wires)
HOT_WIRE_PROBABILITY = 0.6  # per event: a hot wire fires at random times in most events
BEAM_SPOT_JUMP_CM = np.array([0.0050, 0.0002, 0.0500])  # 50 um in x, 2 um in y, 500 um in z


class GeneratorError(RunsError, ValueError):
    """Bad generator arguments (fault names, ranges)."""


@dataclass(frozen=True)
class FaultSpec:
    """A fault and the runs it applies to (inclusive)."""

    name: str
    first_run: int
    last_run: int

    def applies_to(self, run: int) -> bool:
        return self.first_run <= run <= self.last_run


def parse_fault(text: str, first_run: int, n_runs: int) -> FaultSpec:
    """Parse ``NAME``, ``NAME:RUN`` or ``NAME:FIRST-LAST``.

    Without runs, file and statistics faults and the beam-spot jump hit the middle run;
    dead crystals and hot wires hit every generated run.
    """
    match = re.fullmatch(r"([a-z-]+)(?::(\d+)(?:-(\d+))?)?", text.strip())
    if not match or match.group(1) not in FAULTS:
        raise GeneratorError(f"unknown fault {text!r}; choose from {', '.join(FAULTS)} (optionally NAME:RUN or NAME:FIRST-LAST)")
    name = match.group(1)
    if match.group(2) is not None:
        low = int(match.group(2))
        high = int(match.group(3)) if match.group(3) is not None else low
        if high < low:
            raise GeneratorError(f"fault {text!r}: last run {high} is before first run {low}")
        if low < first_run or high > first_run + n_runs - 1:
            raise GeneratorError(
                f"fault {text!r} names run(s) outside the generated runs {first_run}-{first_run + n_runs - 1}"
            )
    elif name in _SINGLE_RUN_FAULTS:
        low = high = first_run + n_runs // 2
    else:
        low, high = first_run, first_run + n_runs - 1
    return FaultSpec(name, low, high)


# ---------------------------------------------------------------------------------------------
# Truth
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorTruth:
    """Per-channel constants of one experiment: fixed by (seed, exp) and the realism model."""

    ecl_gain: np.ndarray  # (8736,)
    ecl_time_offset_ns: np.ndarray  # (8736,)
    cdc_t0_ns: np.ndarray  # (14336,)
    cdc_xt_exponent: np.ndarray  # (9,) per superlayer: drift time = max_drift * (distance / half cell)^exponent
    cdc_max_drift_ns: np.ndarray  # (9,)
    cdc_resolution_ns: np.ndarray  # (9,)


@dataclass(frozen=True)
class RunTruth:
    """Beam conditions of one run: fixed by (seed, exp, run) and the realism model."""

    beam_spot_cm: np.ndarray  # (3,) x, y, z averaged over the run (= at mid-run: the drift is linear)
    beam_spot_cov_cm2: np.ndarray  # (3, 3) size of the luminous region
    ecms_gev: float
    beam_spot_drift_cm_per_hour: np.ndarray = field(default_factory=lambda: np.zeros(3))


def detector_truth(seed: int, exp: int, model: RealismModel = REALISTIC) -> DetectorTruth:
    rng = np.random.default_rng([seed, exp, 101])
    gains = rng.normal(1.0, 0.05, detector.ECL_N_CRYSTALS)
    time_offsets = rng.normal(0.0, 3.0, detector.ECL_N_CRYSTALS)
    # CDC t0: a common offset per 48-wire front-end board plus a small per-wire spread.
    boards = rng.normal(0.0, 3.0, detector.CDC_N_WIRES // 48 + 1)
    t0 = 100.0 + np.repeat(boards, 48)[: detector.CDC_N_WIRES] + rng.normal(0.0, 1.0, detector.CDC_N_WIRES)
    xt = np.random.default_rng([seed, exp, 102])
    n_sl = len(detector.CDC_WIRES_PER_SUPERLAYER)
    exponent = model.xt_exponent_mean + xt.uniform(-1, 1, n_sl) * model.xt_exponent_spread
    max_drift = model.max_drift_ns_mean + xt.uniform(-1, 1, n_sl) * model.max_drift_ns_spread
    resolution = xt.uniform(*model.cdc_time_resolution_ns, n_sl)
    return DetectorTruth(gains, time_offsets, t0, exponent, max_drift, resolution)


def _beam_spot_jumps(seed: int, exp: int, run: int) -> np.ndarray:
    """Accumulated beam-spot steps up to ``run``: rare, small orbit steps (2 % of runs, 5 um in
    x, 0.25 um in y, 50 um in z rms) that the orbit feedback leaves; the injected
    ``beam-spot-jump`` fault is ten times larger."""
    rng = np.random.default_rng([seed, exp, 202])
    flags = rng.random(100_000) < 0.02
    steps = rng.normal(0.0, 1.0, (100_000, 3)) * np.array([0.0005, 0.000025, 0.0050])
    return (steps[: run + 1] * flags[: run + 1, None]).sum(axis=0)


def run_truth(seed: int, exp: int, run: int, faults: Iterable[FaultSpec] = (), model: RealismModel = REALISTIC) -> RunTruth:
    phases = np.random.default_rng([seed, exp, 303]).uniform(0, 2 * np.pi, 6)
    drift = np.array(
        [0.0005 * math.sin(2 * math.pi * run / 37 + phases[0]), 0.00005 * math.sin(2 * math.pi * run / 29 + phases[1]), 0.005 * math.sin(2 * math.pi * run / 53 + phases[2])]
    )
    position = np.array([0.0400, -0.0300, 0.0100]) + drift + _beam_spot_jumps(seed, exp, run)
    for fault in faults:
        if fault.name == "beam-spot-jump" and run >= fault.first_run:
            position = position + BEAM_SPOT_JUMP_CM
    scale = 1.0 + 0.05 * math.sin(2 * math.pi * run / 41 + phases[3])
    sigma = np.array([0.0010, 0.00003, 0.0350]) * scale  # 10 um, 0.3 um, 350 um
    tilt = 0.01  # x-z tilt of the luminous region (rad)
    rotation = np.array([[math.cos(tilt), 0, -math.sin(tilt)], [0, 1, 0], [math.sin(tilt), 0, math.cos(tilt)]])
    cov = rotation @ np.diag(sigma**2) @ rotation.T
    ecms = NOMINAL_ECMS_GEV + 0.002 * math.sin(2 * math.pi * run / 47 + phases[4]) + np.random.default_rng([seed, exp, run, 404]).normal(0, 0.0005)
    rate = np.random.default_rng([seed, exp, run, 808]).normal(0.0, 1.0, 3) * np.asarray(model.beam_spot_drift_per_hour_cm)
    return RunTruth(position, cov, float(ecms), rate)


# ---------------------------------------------------------------------------------------------
# Event physics (vectorised over events)
# ---------------------------------------------------------------------------------------------


def _boost(energy: np.ndarray, p: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lorentz boost of (energy, p (n, 3)) by the velocity ``beta`` (3,)."""
    b2 = float(beta @ beta)
    if b2 == 0.0:
        return energy, p
    gamma = 1.0 / math.sqrt(1.0 - b2)
    bp = p @ beta
    new_energy = gamma * (energy + bp)
    new_p = p + ((gamma - 1.0) * bp / b2 + gamma * energy)[:, None] * beta[None, :]
    return new_energy, new_p


def _cm_velocity(model: RealismModel) -> np.ndarray:
    her, ler = detector.beam_four_momenta(model.her_energy_gev, model.ler_energy_gev, model.crossing_angle_rad)
    total = her + ler
    return total[1:] / total[0]


def _two_body(rng: np.random.Generator, n: int, ecms: np.ndarray, mass: float, cos_theta: np.ndarray, model: RealismModel):  # type: ignore[no-untyped-def]
    """Lab momenta (n, 3) and energies of a back-to-back pair produced at rest in the CM frame."""
    phi = rng.uniform(0, 2 * np.pi, n)
    e_cm = ecms / 2.0
    p_cm = np.sqrt(np.maximum(e_cm**2 - mass**2, 0.0))
    sin_theta = np.sqrt(1 - cos_theta**2)
    p1 = np.column_stack([p_cm * sin_theta * np.cos(phi), p_cm * sin_theta * np.sin(phi), p_cm * cos_theta])
    beta = _cm_velocity(model)
    e1, lab1 = _boost(e_cm, p1, beta)
    e2, lab2 = _boost(e_cm, -p1, beta)
    return (lab1, e1), (lab2, e2)


def _radiative_ecms(rng: np.random.Generator, n: int, ecms: float, model: RealismModel) -> np.ndarray:
    """Effective collision energy per event after beam-energy spread and initial-state radiation."""
    spread = rng.normal(0, model.energy_spread_gev, n)
    if model.isr == "exponential":
        radiated = np.where(rng.random(n) < 0.2, rng.exponential(0.01, n), 0.0)
        return (ecms + spread) * np.sqrt(np.maximum(1.0 - radiated, 0.5))
    # Power-law radiator beta x^(beta-1) on (0, 1): inverse CDF x = u^(1/beta).
    x = rng.random(n) ** (1.0 / isr_beta(ecms))
    return (ecms + spread) * np.sqrt(1.0 - np.minimum(x, 0.9))


def _fsr_factor(rng: np.random.Generator, n: int, ecms: float, mass: float) -> np.ndarray:
    """Fraction of a lepton's momentum left after collinear final-state radiation (power law)."""
    y = rng.random(n) ** (1.0 / fsr_beta(ecms, mass))
    return 1.0 - np.minimum(y, 0.9)


def _measured_helix(rng, p_true, vertex, model):  # type: ignore[no-untyped-def]
    """Measured helix parameters with Belle II-like resolution and a correlated d0-z0 error."""
    px, py, pz = p_true[:, 0], p_true[:, 1], p_true[:, 2]
    pt = np.hypot(px, py)
    p = np.sqrt(pt**2 + pz**2)
    sigma_rel = np.hypot(0.0011 * pt, 0.0025)
    p_meas = p * (1 + rng.normal(0, 1, p.shape) * sigma_rel)
    phi0 = np.arctan2(py, px) + rng.normal(0, 0.0005, p.shape)
    tanl = pz / pt + rng.normal(0, 0.0008, p.shape)
    vx, vy, vz = vertex
    # Signed transverse distance of closest approach to the origin, straight-line approximation.
    d0_true = vx * np.sin(phi0) - vy * np.cos(phi0)
    z0_true = vz - tanl * (vx * np.cos(phi0) + vy * np.sin(phi0))
    d0_err = np.hypot(0.0010, 0.0020 / np.maximum(p, 0.1))
    z0_err = np.hypot(0.0015, 0.0030 / np.maximum(p, 0.1))
    rho = model.d0_z0_correlation
    u, v = rng.normal(0, 1, p.shape), rng.normal(0, 1, p.shape)
    d0 = d0_true + u * d0_err
    z0 = z0_true + (rho * u + math.sqrt(1 - rho * rho) * v) * z0_err
    return p_meas, p * sigma_rel, phi0, tanl, d0, z0, d0_err, z0_err, np.full(p.shape, rho)


def _vertex_from_tracks(n_events, track_event, phi0, tanl, d0, z0, d0_err, z0_err, rho):  # type: ignore[no-untyped-def]
    """Weighted least-squares common point of each event's tracks (straight lines near the IP).

    Each track measures d0 = x sin(phi) - y cos(phi) and z0 = z - tanL (x cos(phi) + y sin(phi))
    with its 2x2 fit covariance. Back-to-back tracks hardly constrain the point along their
    direction: that error is large, as in a real two-track vertex fit. A weak 1 cm prior at the
    origin keeps the (rare) degenerate events finite.
    """
    s, c = np.sin(phi0), np.cos(phi0)
    rows = np.stack([np.column_stack([s, -c, np.zeros_like(s)]), np.column_stack([-tanl * c, -tanl * s, np.ones_like(s)])], axis=1)  # (n, 2, 3)
    cov = np.empty((len(s), 2, 2))
    cov[:, 0, 0], cov[:, 1, 1] = d0_err**2, z0_err**2
    cov[:, 0, 1] = cov[:, 1, 0] = rho * d0_err * z0_err
    weight = np.linalg.inv(cov)
    normal_t = np.einsum("nai,nab,nbj->nij", rows, weight, rows)
    vector_t = np.einsum("nai,nab,nb->ni", rows, weight, np.column_stack([d0, z0]))
    normal = np.zeros((n_events, 3, 3))
    vector = np.zeros((n_events, 3))
    np.add.at(normal, track_event, normal_t)
    np.add.at(vector, track_event, vector_t)
    normal += np.eye(3)[None] * 1.0  # (1 cm)^-2 prior
    covariance = np.linalg.inv(normal)
    return np.einsum("nij,nj->ni", covariance, vector), np.sqrt(np.diagonal(covariance, axis1=1, axis2=2))


def _cdc_hits(rng, n_events, track_event, track_index, p_true, mass, charge, z0_true, t0_event, truth, hot_wires, model):  # type: ignore[no-untyped-def]
    """CDC hits of the tracks plus noise; returns per-event counts and flat arrays."""
    px, py, pz = p_true[:, 0], p_true[:, 1], p_true[:, 2]
    pt = np.hypot(px, py)
    tanl = pz / pt
    phi0 = np.arctan2(py, px)
    p = np.sqrt(pt**2 + pz**2)
    theta = np.arctan2(1.0, tanl)
    in_cdc = (theta > np.deg2rad(17)) & (theta < np.deg2rad(150)) & (pt > 0.25)
    track_event, track_index, phi0, pt, charge = track_event[in_cdc], track_index[in_cdc], phi0[in_cdc], pt[in_cdc], charge[in_cdc]
    tanl, p, mass, z0_true = tanl[in_cdc], p[in_cdc], mass[in_cdc], z0_true[in_cdc]
    n_tracks = len(track_event)
    layers = np.tile(np.arange(detector.CDC_N_LAYERS, dtype=np.int64), n_tracks)
    trk = np.repeat(np.arange(n_tracks), detector.CDC_N_LAYERS)
    radius = detector.CDC_LAYER_RADIUS[layers]
    curvature_radius = 100.0 * pt[trk] / (0.3 * BFIELD_TESLA)  # cm
    half_angle = np.arcsin(np.minimum(radius / (2 * curvature_radius), 1.0))
    phi = phi0[trk] - charge[trk] * half_angle
    n_wires = detector.CDC_LAYER_WIRES[layers]
    cell = np.mod(phi, 2 * np.pi) / (2 * np.pi) * n_wires
    wire_in_layer = np.minimum(np.floor(cell).astype(np.int64), n_wires - 1)
    wire = detector.CDC_LAYER_FIRST_WIRE[layers] + wire_in_layer
    superlayer = np.repeat(np.arange(len(detector.CDC_LAYERS_PER_SUPERLAYER)), detector.CDC_LAYERS_PER_SUPERLAYER)[layers]
    # Distance from the sense wire in units of the half cell, then the superlayer's x-t relation.
    distance = np.abs(cell - wire_in_layer - 0.5) * 2.0
    drift = truth.cdc_max_drift_ns[superlayer] * distance ** truth.cdc_xt_exponent[superlayer]
    hit_event = track_event[trk]
    arc = 2.0 * curvature_radius * half_angle  # transverse path length to the layer
    time = truth.cdc_t0_ns[wire] + drift + rng.normal(0, 1, wire.shape) * truth.cdc_resolution_ns[superlayer] + t0_event[hit_event]
    if model.time_of_flight:
        speed = detector.SPEED_OF_LIGHT_CM_PER_NS * p[trk] / np.sqrt(p[trk] ** 2 + mass[trk] ** 2)
        time += arc * np.sqrt(1.0 + tanl[trk] ** 2) / speed
    if model.wire_propagation:
        z_hit = z0_true[trk] + arc * tanl[trk]
        time += np.maximum(z_hit - detector.CDC_WIRE_Z_BACKWARD, 0.0) / model.signal_speed_cm_per_ns
    # Beam background and electronics noise: random wires at random times in the readout window.
    n_noise = rng.poisson(model.cdc_noise_hits_per_event, n_events)
    noise_event = np.repeat(np.arange(n_events), n_noise)
    if model.cdc_noise_inner_weighted:
        per_wire = 1.0 / detector.CDC_LAYER_RADIUS[detector.cdc_layer_of_wire(np.arange(detector.CDC_N_WIRES))] ** 2
        noise_wire = rng.choice(detector.CDC_N_WIRES, noise_event.shape, p=per_wire / per_wire.sum())
    else:
        noise_wire = rng.integers(0, detector.CDC_N_WIRES, noise_event.shape)
    parts_event, parts_wire = [hit_event, noise_event], [wire, noise_wire]
    parts_time = [time, rng.uniform(*CDC_WINDOW_NS, noise_event.shape)]
    parts_track = [track_index[trk], np.full(noise_event.shape, -1)]
    if len(hot_wires):
        fires = rng.random((n_events, len(hot_wires))) < HOT_WIRE_PROBABILITY
        hot_event, hot_index = np.nonzero(fires)
        parts_event.append(hot_event)
        parts_wire.append(hot_wires[hot_index])
        parts_time.append(rng.uniform(*CDC_WINDOW_NS, hot_event.shape))
        parts_track.append(np.full(hot_event.shape, -1))
    all_event = np.concatenate(parts_event)
    order = np.argsort(all_event, kind="stable")
    all_wire = np.concatenate(parts_wire)[order]
    return (
        np.bincount(all_event, minlength=n_events),
        all_wire.astype(np.int16),
        detector.cdc_layer_of_wire(all_wire).astype(np.uint8),
        np.concatenate(parts_time)[order].astype(np.float32),
        np.concatenate(parts_track)[order].astype(np.int16),
    )


_ECL_RING, _ECL_PHI_ID = detector.ecl_theta_phi_id(np.arange(detector.ECL_N_CRYSTALS))
_ECL_RING_CENTRE = 0.5 * (detector.ECL_RING_THETA_LOW + detector.ECL_RING_THETA_HIGH)
_ECL_BARREL = (np.rad2deg(_ECL_RING_CENTRE) > 32.0) & (np.rad2deg(_ECL_RING_CENTRE) < 129.0)


def _ecl_main_fraction(theta: np.ndarray, model: RealismModel) -> np.ndarray:
    """Mean energy fraction in the hit crystal: lower in the endcaps, and theta-dependent in the
    barrel (crystal depth seen by the shower)."""
    barrel = (theta > np.deg2rad(32.2)) & (theta < np.deg2rad(128.7))
    barrel_fraction = model.ecl_main_fraction_barrel * (1.0 - 0.03 * np.cos(theta) ** 2)
    return np.where(barrel, barrel_fraction, model.ecl_main_fraction_endcap)


def _ecl_neighbours(cell: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """(n, 4) crystal ids left/right in phi and below/above in theta (-1: none)."""
    ring, phi_id = _ECL_RING[cell], _ECL_PHI_ID[cell]
    size = detector.ECL_RING_SIZES[ring]
    first = detector.ECL_RING_FIRST_ID[ring]
    left = first + np.mod(phi_id - 1, size)
    right = first + np.mod(phi_id + 1, size)
    n_rings = len(detector.ECL_RING_SIZES)
    below = np.where(ring > 0, detector.ecl_crystal_at(_ECL_RING_CENTRE[np.maximum(ring - 1, 0)], phi), -1)
    above = np.where(ring < n_rings - 1, detector.ecl_crystal_at(_ECL_RING_CENTRE[np.minimum(ring + 1, n_rings - 1)], phi), -1)
    return np.column_stack([left, right, below, above])


def _ecl_clusters(rng, n_events, particle_event, theta, phi, energy, kind, truth, dead, t0_event, model):  # type: ignore[no-untyped-def]
    """ECL hits of particles (kind 0: electron/photon shower, 1: MIP) plus beam background."""
    cell = detector.ecl_crystal_at(theta, phi)
    hit = cell >= 0
    cell, event, theta, phi, energy, kind = cell[hit], particle_event[hit], theta[hit], phi[hit], energy[hit], kind[hit]
    alive = np.ones(detector.ECL_N_CRYSTALS)
    alive[dead] = 0.0
    gain = truth.ecl_gain * alive
    ring = _ECL_RING[cell]
    size = detector.ECL_RING_SIZES[ring]
    u_phi = np.mod(phi, 2 * np.pi) / (2 * np.pi) * size - _ECL_PHI_ID[cell]
    u_theta = (theta - detector.ECL_RING_THETA_LOW[ring]) / (detector.ECL_RING_THETA_HIGH[ring] - detector.ECL_RING_THETA_LOW[ring])
    edge = 0.5 * ((2 * u_phi - 1) ** 2 + (2 * u_theta - 1) ** 2)
    main = _ecl_main_fraction(theta, model) * (1.0 - model.ecl_position_dependence * edge)
    resolution = np.hypot(0.02 / np.sqrt(np.maximum(energy, 0.01)), 0.01)
    shower = main * energy * (1 + rng.normal(0, 1, energy.shape) * resolution)
    mip = rng.gamma(9.0, 0.2 / 9.0, energy.shape)  # ~200 MeV for a muon crossing a crystal
    deposit = np.where(kind == 0, shower, mip) * gain[cell]
    parts_event, parts_cell, parts_energy = [event], [cell], [deposit]
    parts_theta, parts_phi = [theta], [phi]
    if model.ecl_leakage:
        # The rest of the 3x3 energy leaks to the four neighbours, more to the nearer side.
        shower_hit = np.flatnonzero(kind == 0)
        neighbours = _ecl_neighbours(cell[shower_hit], phi[shower_hit])
        up, ut = u_phi[shower_hit], u_theta[shower_hit]
        share = np.column_stack([(1 - up) ** 2, up**2, (1 - ut) ** 2, ut**2]) + 0.1
        share /= share.sum(axis=1, keepdims=True)
        leaked = np.maximum(model.ecl_contained_3x3 - main[shower_hit], 0.0) * energy[shower_hit]
        nb_energy = share * leaked[:, None] * (1 + rng.normal(0, 0.05, share.shape))
        exists = neighbours >= 0
        nb_cell = neighbours[exists]
        parts_event.append(np.repeat(event[shower_hit], 4).reshape(-1, 4)[exists])
        parts_cell.append(nb_cell)
        parts_energy.append(nb_energy[exists] * gain[nb_cell])
        parts_theta.append(_ECL_RING_CENTRE[_ECL_RING[nb_cell]])
        parts_phi.append((_ECL_PHI_ID[nb_cell] + 0.5) / detector.ECL_RING_SIZES[_ECL_RING[nb_cell]] * 2 * np.pi)
    event, cell, deposit = np.concatenate(parts_event), np.concatenate(parts_cell), np.concatenate(parts_energy)
    theta, phi = np.concatenate(parts_theta), np.concatenate(parts_phi)
    time = truth.ecl_time_offset_ns[cell] + t0_event[event] + rng.normal(0, 1, cell.shape) * (0.5 + 1.0 / np.maximum(deposit, 0.05))
    # Beam background: soft photons in random crystals (more in the endcaps) at random times.
    n_bkg = rng.poisson(model.ecl_background_per_event, n_events)
    bkg_event = np.repeat(np.arange(n_events), n_bkg)
    if model.ecl_background_endcap_weighted:
        weight = 1.0 / np.sin(_ECL_RING_CENTRE[_ECL_RING]) ** 2
        bkg_cell = rng.choice(detector.ECL_N_CRYSTALS, bkg_event.shape, p=weight / weight.sum())
    else:
        bkg_cell = rng.integers(0, detector.ECL_N_CRYSTALS, bkg_event.shape)
    live = alive[bkg_cell] > 0
    bkg_cell, bkg_event = bkg_cell[live], bkg_event[live]
    bkg_theta = _ECL_RING_CENTRE[_ECL_RING[bkg_cell]]
    bkg_phi = rng.uniform(0, 2 * np.pi, bkg_cell.shape)
    bkg_energy = rng.exponential(0.03, bkg_cell.shape) * truth.ecl_gain[bkg_cell]
    bkg_time = rng.uniform(-500, 500, bkg_cell.shape)
    keep = deposit > 0.02  # 20 MeV threshold; dead crystals give nothing
    all_event = np.concatenate([event[keep], bkg_event])
    order = np.argsort(all_event, kind="stable")
    cat = lambda a, b: np.concatenate([a, b])[order]  # noqa: E731
    return (
        np.bincount(all_event, minlength=n_events),
        cat(cell[keep], bkg_cell).astype(np.int16),
        cat(deposit[keep], bkg_energy).astype(np.float32),
        cat(time[keep], bkg_time).astype(np.float32),
        cat(theta[keep], bkg_theta).astype(np.float32),
        cat(phi[keep], bkg_phi).astype(np.float32),
    )


@dataclass
class StreamEvents:
    """One stream's events of one run, as flat arrays plus per-event counts."""

    event_branches: dict[str, np.ndarray]
    tracks: dict[str, np.ndarray]
    track_counts: np.ndarray
    ecl: dict[str, np.ndarray]
    ecl_counts: np.ndarray
    cdc: dict[str, np.ndarray]
    cdc_counts: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.track_counts)


def simulate_stream(
    rng: np.random.Generator,
    stream: str,
    n_events: int,
    key: ExpRun,
    first_event: int,
    truth: DetectorTruth,
    beam: RunTruth,
    dead_crystals: np.ndarray,
    hot_wires: np.ndarray,
    model: RealismModel = REALISTIC,
    duration_s: float = 3600.0,
) -> StreamEvents:
    """Simulate ``n_events`` events of one HLT skim."""
    time_s = np.sort(rng.uniform(0.0, duration_s, n_events))
    centre = beam.beam_spot_cm[None, :] + np.outer((time_s - duration_s / 2.0) / 3600.0, beam.beam_spot_drift_cm_per_hour)
    vertex_true = centre + rng.multivariate_normal(np.zeros(3), beam.beam_spot_cov_cm2, n_events)
    t0_event = rng.normal(0.0, model.event_t0_jitter_ns, n_events) if model.event_t0_jitter_ns > 0 else np.zeros(n_events)
    if stream in ("hlt_mumu_2trk", "hlt_bhabha"):
        mass = MUON_MASS_GEV if stream == "hlt_mumu_2trk" else ELECTRON_MASS_GEV
        ecms_eff = _radiative_ecms(rng, n_events, beam.ecms_gev, model)
        if stream == "hlt_mumu_2trk":
            # 1 + cos^2 angular distribution by accept-reject on a doubled sample.
            c = rng.uniform(-1, 1, 3 * n_events)
            c = c[rng.uniform(0, 2, c.shape) < 1 + c**2][:n_events]
            cos_theta = np.resize(c, n_events)
        else:
            cos_theta = rng.uniform(-0.95, 0.95, n_events)  # HLT prescale flattens Bhabha scattering
        (p1, e1), (p2, e2) = _two_body(rng, n_events, ecms_eff, mass, cos_theta, model)
        p_true = np.concatenate([p1, p2])
        energy = np.concatenate([e1, e2])
        if stream == "hlt_mumu_2trk" and model.muon_fsr:
            p_true = p_true * _fsr_factor(rng, 2 * n_events, beam.ecms_gev, MUON_MASS_GEV)[:, None]
            energy = np.sqrt((p_true**2).sum(axis=1) + MUON_MASS_GEV**2)
        charge = np.concatenate([-np.ones(n_events), np.ones(n_events)])
        track_event = np.concatenate([np.arange(n_events), np.arange(n_events)])
        kind = np.full(2 * n_events, 1 if stream == "hlt_mumu_2trk" else 0)
        masses = np.full(2 * n_events, mass)
    else:  # hadronic events: several pions and photons
        n_trk = rng.poisson(5.0, n_events) + 2
        track_event = np.repeat(np.arange(n_events), n_trk)
        p = rng.gamma(2.0, 0.35, track_event.shape) + 0.1
        cos_t = rng.uniform(-0.9, 0.95, track_event.shape)
        phi = rng.uniform(0, 2 * np.pi, track_event.shape)
        sin_t = np.sqrt(1 - cos_t**2)
        p_true = np.column_stack([p * sin_t * np.cos(phi), p * sin_t * np.sin(phi), p * cos_t])
        energy = np.sqrt(p**2 + PION_MASS_GEV**2)
        charge = rng.choice([-1.0, 1.0], track_event.shape)
        n_gamma = rng.poisson(4.0, n_events)
        gamma_event = np.repeat(np.arange(n_events), n_gamma)
        kind = np.full(track_event.shape, 1)
        masses = np.full(track_event.shape, PION_MASS_GEV)
    order = np.argsort(track_event, kind="stable")
    p_true, energy, charge, track_event, kind, masses = (a[order] for a in (p_true, energy, charge, track_event, kind, masses))
    track_counts = np.bincount(track_event, minlength=n_events)
    track_index = np.arange(len(track_event)) - np.repeat(np.cumsum(track_counts) - track_counts, track_counts)
    vertex = tuple(vertex_true[track_event, i] for i in range(3))
    p_meas, p_err, phi0, tanl, d0, z0, d0_err, z0_err, rho = _measured_helix(rng, p_true, vertex, model)
    pt = np.hypot(p_true[:, 0], p_true[:, 1])
    theta = np.arctan2(pt, p_true[:, 2])
    ecl_event, ecl_theta, ecl_phi, ecl_energy, ecl_kind = track_event, theta, np.arctan2(p_true[:, 1], p_true[:, 0]), energy, kind
    if stream == "hlt_hadron":
        g_cos = rng.uniform(-0.9, 0.95, gamma_event.shape)
        ecl_event = np.concatenate([track_event, gamma_event])
        ecl_theta = np.concatenate([theta, np.arccos(g_cos)])
        ecl_phi = np.concatenate([ecl_phi, rng.uniform(0, 2 * np.pi, gamma_event.shape)])
        ecl_energy = np.concatenate([energy, rng.exponential(0.3, gamma_event.shape)])
        ecl_kind = np.concatenate([kind, np.zeros(gamma_event.shape, dtype=kind.dtype)])
    ecl = _ecl_clusters(rng, n_events, ecl_event, ecl_theta, ecl_phi, ecl_energy, ecl_kind, truth, dead_crystals, t0_event, model)
    z0_true = vertex[2] - (p_true[:, 2] / pt) * (vertex[0] * np.cos(phi0) + vertex[1] * np.sin(phi0))
    cdc = _cdc_hits(rng, n_events, track_event, track_index, p_true, masses, charge, z0_true, t0_event, truth, hot_wires, model)
    if model.vertex_from_tracks:
        vtx, vtx_err = _vertex_from_tracks(n_events, track_event, phi0, tanl, d0, z0, d0_err, z0_err, rho)
    else:
        # Isotropic vertex resolution varying event by event, stored with the vertex.
        res_scale = 1.0 + rng.exponential(0.3, n_events)
        vtx_err = np.array([0.0012, 0.0008, 0.0025])[None, :] * res_scale[:, None]
        vtx = vertex_true + rng.normal(0, 1, vertex_true.shape) * vtx_err
    if model.event_t0_resolution_ns > 0:
        evt_t0 = t0_event + rng.normal(0.0, model.event_t0_resolution_ns, n_events)
    else:
        evt_t0 = t0_event
    cast = lambda values, dtypes: {name: np.asarray(array, dtype=dtypes[name]) for name, array in values.items()}  # noqa: E731
    return StreamEvents(
        event_branches=cast(
            {
                "exp": np.full(n_events, key.exp),
                "run": np.full(n_events, key.run),
                "event": np.arange(first_event, first_event + n_events),
                "time_s": time_s,
                "evt_t0": evt_t0,
                "evt_t0_err": np.full(n_events, model.event_t0_resolution_ns),
                "vtx_x": vtx[:, 0], "vtx_y": vtx[:, 1], "vtx_z": vtx[:, 2],
                "vtx_ex": vtx_err[:, 0], "vtx_ey": vtx_err[:, 1], "vtx_ez": vtx_err[:, 2],
            },
            EVENT_BRANCHES,
        ),
        tracks={
            name[len("trk_"):]: array
            for name, array in cast(
                {
                    "trk_charge": charge, "trk_p": p_meas, "trk_p_err": p_err, "trk_phi0": phi0, "trk_tanlambda": tanl,
                    "trk_d0": d0, "trk_z0": z0, "trk_d0_err": d0_err, "trk_z0_err": z0_err, "trk_d0z0_corr": rho,
                },
                TRACK_BRANCHES,
            ).items()
        },
        track_counts=track_counts,
        ecl={name[len("ecl_"):]: array for name, array in zip(ECL_BRANCHES, ecl[1:])},
        ecl_counts=ecl[0],
        cdc={name[len("cdc_"):]: array for name, array in zip(CDC_BRANCHES, cdc[1:])},
        cdc_counts=cdc[0],
    )


def _slice_jagged(values: dict[str, np.ndarray], counts: np.ndarray, start: int, stop: int) -> ak.Array:
    offsets = np.concatenate([[0], np.cumsum(counts)])
    lo, hi = offsets[start], offsets[stop]
    return ak.zip({name: ak.unflatten(array[lo:hi], counts[start:stop]) for name, array in values.items()})


def write_stream_file(path: Path, events: StreamEvents, start: int, stop: int) -> None:
    """Write events [start, stop) as a TTree, atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, object] = {name: array[start:stop] for name, array in events.event_branches.items()}
    data["trk"] = _slice_jagged(events.tracks, events.track_counts, start, stop)
    data["ecl"] = _slice_jagged(events.ecl, events.ecl_counts, start, stop)
    data["cdc"] = _slice_jagged(events.cdc, events.cdc_counts, start, stop)
    partial = path.with_name(path.name + ".part")
    with uproot.recreate(partial, compression=uproot.ZSTD(1)) as output:
        output.mktree(TREE_NAME, data, title="Belle II cDST skim (synthetic)")
    os.replace(partial, path)


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


@dataclass
class GenerationSummary:
    runs: list[str] = field(default_factory=list)
    events: int = 0
    files: int = 0
    bytes: int = 0


def _run_conditions(seed: int, exp: int, run: int) -> dict:
    """Run-level metadata: times, luminosity, quality (deterministic in seed, exp, run)."""
    rng = np.random.default_rng([seed, exp, run, 505])
    start = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(days=7 * (exp - 26) % 3650, hours=1.5 * run)
    duration = timedelta(minutes=float(rng.uniform(45, 80)))
    quality = "Recoverable" if rng.random() < 0.05 else "Good"
    return {"start": start, "duration": duration, "quality": quality}


def _apply_file_fault(path: Path, fault: str, rng: np.random.Generator) -> None:
    if fault == "corrupt-file":
        with open(path, "r+b") as handle:
            size = path.stat().st_size
            for offset in rng.integers(size // 4, size - 16, 8):
                handle.seek(int(offset))
                byte = handle.read(1)
                handle.seek(int(offset))
                handle.write(bytes([byte[0] ^ 0xFF]))
    elif fault == "truncated-file":
        os.truncate(path, path.stat().st_size // 2)
    elif fault == "missing-file":
        path.unlink()


def generate_run(
    out: Path,
    key: ExpRun,
    events_per_run: int,
    events_per_file: int,
    seed: int,
    faults: list[FaultSpec],
    truth: DetectorTruth,
    model: RealismModel = REALISTIC,
) -> tuple[RunRecord, RunTruth]:
    """Write one run's files, its completion record and its journal line; return both."""
    active = {f.name for f in faults if f.applies_to(key.run)}
    beam = run_truth(seed, key.exp, key.run, faults, model)
    conditions = _run_conditions(seed, key.exp, key.run)
    fraction = LOW_STATISTICS_FRACTION if "low-statistics" in active else 1.0
    n_total = max(int(events_per_run * fraction), 3)
    dead = DEAD_CRYSTALS if "dead-crystals" in active else np.array([], dtype=np.int64)
    hot = HOT_WIRES if "hot-wires" in active else np.array([], dtype=np.int64)
    rng = np.random.default_rng([seed, key.exp, key.run, 606])
    files: list[RecordedFile] = []
    first_event = 0
    duration_s = conditions["duration"].total_seconds() * fraction
    for stream in STREAMS:
        n_stream = max(int(round(n_total * STREAM_FRACTIONS[stream])), 1)
        events = simulate_stream(rng, stream, n_stream, key, first_event, truth, beam, dead, hot, model, duration_s)
        first_event += n_stream
        n_files = max(1, math.ceil(n_stream / events_per_file))
        bounds = np.linspace(0, n_stream, n_files + 1).astype(int)
        for index in range(n_files):
            rel = skim_file_path(key, "4S", stream, index)
            path = out / rel
            write_stream_file(path, events, bounds[index], bounds[index + 1])
            files.append(RecordedFile(str(rel), stream, "cdst", path.stat().st_size, int(bounds[index + 1] - bounds[index]), adler32_of(path)))
    duration = conditions["duration"] * fraction
    record = RunRecord(
        exp=key.exp,
        run=key.run,
        start_time=conditions["start"].isoformat(),
        end_time=(conditions["start"] + duration).isoformat(),
        integrated_luminosity_pb=round(duration.total_seconds() * 0.020, 4),  # 2e34 cm^-2 s^-1
        run_type="physics",
        beam_energy="4S",
        magnet="On",
        data_quality=conditions["quality"],
        data_tags=DATA_TAGS,
        her_energy_gev=HER_ENERGY_GEV,
        ler_energy_gev=LER_ENERGY_GEV,
        files=tuple(files),
    )
    # File faults happen in transfer, after the data flow recorded size and checksum.
    fault_rng = np.random.default_rng([seed, key.exp, key.run, 707])
    for fault in ("corrupt-file", "truncated-file", "missing-file"):
        if fault in active:
            _apply_file_fault(out / files[-1].path, fault, fault_rng)
    rec_rel = record_path(key, "4S")
    rec_path = out / rec_rel
    partial = rec_path.with_name(rec_path.name + ".part")
    partial.write_text(record.to_json(), encoding="utf-8")
    os.replace(partial, rec_path)
    append_arrival(out, str(rec_rel))
    return record, beam


def write_truth(
    out: Path, seed: int, exp: int, truth: DetectorTruth, runs: dict[int, RunTruth], faults: list[FaultSpec], model: RealismModel = REALISTIC
) -> None:
    """Write truth constants beside the data (``truth/e0026/...``), merging runs of earlier calls."""
    folder = out / "truth" / f"e{exp:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    theta_id, phi_id = detector.ecl_theta_phi_id(np.arange(detector.ECL_N_CRYSTALS))
    np.savetxt(
        folder / "ecl_crystals.csv",
        np.column_stack([np.arange(detector.ECL_N_CRYSTALS), theta_id, phi_id, truth.ecl_gain, truth.ecl_time_offset_ns]),
        fmt=["%d", "%d", "%d", "%.6f", "%.4f"], delimiter=",", header="cell,theta_id,phi_id,gain,time_offset_ns", comments="",
    )
    wires = np.arange(detector.CDC_N_WIRES)
    np.savetxt(
        folder / "cdc_wires.csv",
        np.column_stack([wires, detector.cdc_layer_of_wire(wires), truth.cdc_t0_ns]),
        fmt=["%d", "%d", "%.4f"], delimiter=",", header="wire,layer,t0_ns", comments="",
    )
    runs_file = folder / "runs.json"
    known = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    for run, beam in runs.items():
        known[str(run)] = {
            "beam_spot_cm": beam.beam_spot_cm.tolist(),
            "beam_spot_cov_cm2": beam.beam_spot_cov_cm2.tolist(),
            "ecms_gev": beam.ecms_gev,
            "beam_spot_drift_cm_per_hour": beam.beam_spot_drift_cm_per_hour.tolist(),
        }
    runs_file.write_text(json.dumps(dict(sorted(known.items(), key=lambda kv: int(kv[0]))), indent=1))
    faults_file = folder / "faults.json"
    recorded = json.loads(faults_file.read_text()) if faults_file.exists() else []
    for fault in faults:
        entry = {"name": fault.name, "first_run": fault.first_run, "last_run": fault.last_run}
        if fault.name == "dead-crystals":
            entry["crystals"] = DEAD_CRYSTALS.tolist()
        if fault.name == "hot-wires":
            entry["wires"] = HOT_WIRES.tolist()
        if entry not in recorded:
            recorded.append(entry)
    faults_file.write_text(json.dumps(recorded, indent=1))
    (folder / "seed.json").write_text(json.dumps({"seed": seed, "exp": exp, "realism": model.name}))
    (folder / "cdc_xt.json").write_text(
        json.dumps(
            {
                "xt_exponent_per_superlayer": truth.cdc_xt_exponent.tolist(),
                "max_drift_ns_per_superlayer": truth.cdc_max_drift_ns.tolist(),
                "resolution_ns_per_superlayer": truth.cdc_resolution_ns.tolist(),
            },
            indent=1,
        )
    )


MAX_RUN_NUMBER = 99999  # five digits in every file name and record


def check_arguments(*, exp: int, first_run: int, runs: int, events_per_run: int, events_per_file: int, seed: int) -> None:
    """Refuse arguments that cannot be generated as asked, before anything is written."""
    if runs < 1 or events_per_file < 1:
        raise GeneratorError("--runs and --events-per-file must be positive")
    if events_per_run < len(STREAMS):
        raise GeneratorError(f"--events-per-run must be at least {len(STREAMS)} (one event per HLT skim), not {events_per_run}")
    if seed < 0:
        raise GeneratorError(f"--seed must be zero or positive, not {seed}")
    if not 0 <= exp <= 9999:
        raise GeneratorError(f"--exp must be in 0-9999, not {exp}")
    if first_run < 0 or first_run + runs - 1 > MAX_RUN_NUMBER:
        raise GeneratorError(
            f"runs {first_run}-{first_run + runs - 1} exceed the run numbers 0-{MAX_RUN_NUMBER}; "
            f"lower --first-run or --runs"
        )


def generate(
    out: Path,
    *,
    exp: int = 26,
    first_run: int = 1,
    runs: int = 5,
    events_per_run: int = 20_000,
    events_per_file: int = 4_000,
    seed: int = 1,
    faults: Iterable[str] = (),
    progress: Callable[[int], None] | None = None,
    realism: str = "realistic",
) -> GenerationSummary:
    """Generate ``runs`` consecutive runs into ``out``; ``progress`` is called with events done.

    ``realism`` picks the detector and machine model (``realistic`` or ``simple``, see
    :mod:`b2cal_assets.runs.generator.realism`)."""
    if realism not in MODELS:
        raise GeneratorError(f"unknown realism model {realism!r}; choose from {', '.join(MODELS)}")
    model = MODELS[realism]
    check_arguments(exp=exp, first_run=first_run, runs=runs, events_per_run=events_per_run, events_per_file=events_per_file, seed=seed)
    fault_specs = [parse_fault(text, first_run, runs) for text in faults]
    out.mkdir(parents=True, exist_ok=True)
    truth = detector_truth(seed, exp, model)
    summary = GenerationSummary()
    beams: dict[int, RunTruth] = {}
    for run in range(first_run, first_run + runs):
        record, beam = generate_run(out, ExpRun(exp, run), events_per_run, events_per_file, seed, fault_specs, truth, model)
        beams[run] = beam
        summary.runs.append(str(record.key))
        summary.events += sum(f.events for f in record.files)
        summary.files += len(record.files)
        summary.bytes += sum(f.size for f in record.files)
        if progress:
            progress(sum(f.events for f in record.files))
    write_truth(out, seed, exp, truth, beams, fault_specs, model)
    return summary
