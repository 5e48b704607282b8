"""CollisionInvariantMass: the collision energy eCMS from the dimuon invariant mass.

Physics. In e+e- -> mu+mu- the pair carries the full collision energy unless a photon was
radiated from the initial state (ISR). The dimuon invariant mass therefore peaks at eCMS,
smeared by the beam-energy spread and the momentum resolution, with a radiative tail on the
low side.

Selection (uses the BeamSpot of the same bucket, hence ``depends_on``): exactly two
oppositely charged tracks, both compatible with coming from the interaction point: their
impact parameters d0, z0 lie within ``ip_cut_sigma`` of the beam spot (track error and beam
size added in quadrature). The mass is computed from the measured helices with the muon mass.

Fit. The mass resolution scales with the track transverse momentum (curvature measurement),
and both muons of an event have nearly the same pT (back to back in the transverse plane).
Events are therefore split into pT classes, each with its own Gaussian width sigma_k; all
classes share the peak eCMS, the ISR tail fraction f and the tail slope tau. Per class:

    p(m) = (1 - f) Gauss(m; eCMS, sigma_k) + f ExpGauss(m; eCMS, sigma_k, tau)

where ExpGauss is an exponential low-side tail convolved with the same Gaussian. A binned
maximum-likelihood fit (multinomial per class, iminuit, 2 MeV bins) gives eCMS; its
uncertainty is the HESSE error, with the widths, f and tau floating (so their uncertainties
are propagated). Uncertainty is statistical only; the second-order bias of a mass built from
smeared momenta is below 0.1 MeV, small against the statistical error of one run.

IoV: eCMS moves slowly run to run: one payload per run, SequentialRunByRun merging runs with
fewer than ``min_events`` selected pairs.

Payload ``CollisionInvariantMass``: channel 0 = eCMS (GeV).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from iminuit import Minuit

from b2cal_assets.calibration.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.calibration.settings import CalibrationSettings
from b2cal_assets.calibration.strategies import SequentialRunByRun
from b2cal_assets.calibrations import beam_spot
from b2cal_assets.calibrations.base import (
    Calibration,
    CollectorOutput,
    MergingAlgorithm,
    files_of,
    iterate_files,
    jagged,
    payload_of,
    required_upstream,
    run_label,
    runs_weights,
    truth_folder,
)
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.payloads import PayloadConstants

PAYLOAD = "CollisionInvariantMass"
STREAM = "hlt_mumu_2trk"
MUON_MASS_GEV = 0.1056584

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

SETTINGS = CalibrationSettings(
    name="CollisionEnergy",
    expert_username="beam_expert",
    subsystem="beam",
    description="Collision energy eCMS from the dimuon invariant-mass peak (hlt_mumu_2trk), with the BeamSpot IP cut",
    input_data_formats=["cdst"],
    input_data_names=[STREAM],
    input_data_filters={STREAM: ["mumu_tight_or_highm_calib", "physics", "Good Or Recoverable", "On"]},
    depends_on=[beam_spot.SETTINGS],
    expert_config={
        "max_iterations": 1,
        "min_events": 2000,  # selected pairs in the mass window per payload
        "mass_window_gev": [10.20, 10.80],
        "bin_width_gev": 0.002,
        # pT classes (GeV) of the pair: the mass resolution grows with pT.
        "pt_class_edges_gev": [0.0, 1.5, 2.5, 3.25, 4.0, 4.5, 4.9, 5.2, 5.6],
        "ip_cut_sigma": 5.0,
    },
    produced_payloads=[PAYLOAD],
)

# ---------------------------------------------------------------------------------------------
# Collector
# ---------------------------------------------------------------------------------------------

_BRANCHES = ("trk_charge", "trk_p", "trk_phi0", "trk_tanlambda", "trk_d0", "trk_z0", "trk_d0_err", "trk_z0_err")


def _layout(config: Mapping[str, Any]) -> dict[str, Any]:
    low, high = (float(x) for x in config["mass_window_gev"])
    n_bins = int(round((high - low) / float(config["bin_width_gev"])))
    return {"mass_window_gev": [low, high], "n_bins": n_bins, "pt_class_edges_gev": [float(x) for x in config["pt_class_edges_gev"]], "ip_cut_sigma": float(config["ip_cut_sigma"])}


def _opposite_sign_pairs(batch: ak.Array) -> np.ndarray | None:
    """Indices of the events of ``batch`` with exactly two tracks of opposite charge, or None
    when that is every event (the usual case in hlt_mumu_2trk: no gather needed then)."""
    offsets, charge = jagged(batch["trk_charge"])
    first = offsets[:-1]
    two = (offsets[1:] - first) == 2
    if two.all():
        pairs = charge[offsets[0] : offsets[-1]].reshape(-1, 2)
        opposite = pairs.sum(axis=1, dtype=np.int64) == 0  # int64: an int8 sum could wrap
        return None if opposite.all() else np.flatnonzero(opposite)
    events = np.flatnonzero(two)
    start = first[events]
    opposite = charge[start].astype(np.int64) + charge[start + 1] == 0
    return events[opposite]


def _pair_values(batch: ak.Array, name: str, events: np.ndarray | None) -> np.ndarray:
    """Branch ``name`` of the selected two-track ``events`` as a float64 (n, 2) array."""
    offsets, content = jagged(batch[name])
    if events is None:
        # Every event has two tracks: the flat content reshapes to the pairs, no index arrays.
        pairs = content[offsets[0] : offsets[-1]].reshape(-1, 2)
    else:
        start = offsets[events]
        pairs = np.stack((content[start], content[start + 1]), axis=1)
    return pairs.astype(np.float64)


def collect(
    run: ExpRun,
    files: Mapping[str, Sequence[Path]],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> CollectorOutput:
    """2D histogram (pair pT class x dimuon mass) of IP-compatible opposite-sign track pairs."""
    layout = _layout({**SETTINGS.expert_config, **expert_config})
    spot = required_upstream(upstream, beam_spot.PAYLOAD, SETTINGS.name)
    ip = spot.value[:3]
    cov = np.array([[spot.value[3], spot.value[4], spot.value[5]], [spot.value[4], spot.value[6], spot.value[7]], [spot.value[5], spot.value[7], spot.value[8]]])
    low, high = layout["mass_window_gev"]
    pt_edges = np.asarray(layout["pt_class_edges_gev"])
    mass_edges = np.linspace(low, high, layout["n_bins"] + 1)
    counts = np.zeros((len(pt_edges) - 1, layout["n_bins"]))
    n_pairs = 0
    for batch in iterate_files(files_of(files, [STREAM], SETTINGS.name), _BRANCHES):
        events = _opposite_sign_pairs(batch)
        p, phi, tanl = (_pair_values(batch, name, events) for name in ("trk_p", "trk_phi0", "trk_tanlambda"))
        d0, z0, d0_err, z0_err = (_pair_values(batch, name, events) for name in ("trk_d0", "trk_z0", "trk_d0_err", "trk_z0_err"))
        sin_phi, cos_phi = np.sin(phi), np.cos(phi)
        # Impact parameters a track from the beam-spot centre would have (straight-line extrapolation).
        d0_ip = ip[0] * sin_phi - ip[1] * cos_phi
        z0_ip = ip[2] - tanl * (ip[0] * cos_phi + ip[1] * sin_phi)
        size_d0 = cov[0, 0] * sin_phi**2 + cov[1, 1] * cos_phi**2 - 2 * cov[0, 1] * sin_phi * cos_phi
        cut = layout["ip_cut_sigma"]
        from_ip = (np.abs(d0 - d0_ip) < cut * np.sqrt(d0_err**2 + np.maximum(size_d0, 0.0))) & (
            np.abs(z0 - z0_ip) < cut * np.sqrt(z0_err**2 + max(cov[2, 2], 0.0))
        )
        keep = from_ip.all(axis=1)
        pt = p / np.sqrt(1.0 + tanl**2)
        px, py, pz = pt * cos_phi, pt * sin_phi, pt * tanl
        energy = np.sqrt(p**2 + MUON_MASS_GEV**2)
        m2 = energy.sum(axis=1) ** 2 - px.sum(axis=1) ** 2 - py.sum(axis=1) ** 2 - pz.sum(axis=1) ** 2
        mass = np.sqrt(np.maximum(m2, 0.0))[keep]
        hist, _, _ = np.histogram2d(pt.mean(axis=1)[keep], mass, bins=(pt_edges, mass_edges))
        counts += hist
        n_pairs += int(keep.sum())
    return CollectorOutput(SETTINGS.name, {"counts": counts}, layout, {run_label(run): n_pairs})


# ---------------------------------------------------------------------------------------------
# Algorithm
# ---------------------------------------------------------------------------------------------

_erfc = np.frompyfunc(math.erfc, 1, 1)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * _erfc(-x / math.sqrt(2.0)).astype(np.float64)


def mass_density(m: np.ndarray, ecms: float, sigma: np.ndarray, f: float, tau: float) -> np.ndarray:
    """Unnormalised-window density: Gaussian core + ISR tail (exponential x Gaussian), per class.

    ``m`` has shape (n_bins,), ``sigma`` shape (n_classes, 1); returns (n_classes, n_bins).
    """
    z = (m[None, :] - ecms) / sigma
    core = np.exp(-0.5 * z**2) / (math.sqrt(2 * math.pi) * sigma)
    tail = np.exp((m[None, :] - ecms) / tau + sigma**2 / (2 * tau**2)) * _normal_cdf(-z - sigma / tau) / tau
    return (1.0 - f) * core + f * tail


def fit_mass(counts: np.ndarray, layout: Mapping[str, Any]) -> tuple[Minuit, np.ndarray]:
    """Binned multinomial ML fit of all pT classes; returns the Minuit object and used classes."""
    low, high = layout["mass_window_gev"]
    edges = np.linspace(low, high, layout["n_bins"] + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    used = np.flatnonzero(counts.sum(axis=1) >= 50)  # an almost empty class cannot fix its width
    data = counts[used]
    start_peak = float(centres[np.argmax(data.sum(axis=0))])

    def nll(ecms: float, f: float, tau: float, *log_sigma: float) -> float:
        sigma = np.exp(np.asarray(log_sigma))[:, None]
        density = mass_density(centres, ecms, sigma, f, tau)
        prob = density / density.sum(axis=1, keepdims=True)  # normalised over the window
        return float(-(data * np.log(np.maximum(prob, 1e-300))).sum())

    names = ["ecms", "f", "tau"] + [f"log_sigma_{k}" for k in used]
    start = [start_peak, 0.2, 0.05] + [math.log(0.03)] * len(used)
    minuit = Minuit(nll, *start, name=names)
    minuit.errordef = Minuit.LIKELIHOOD
    minuit.limits["f"] = (0.0, 0.9)
    minuit.limits["tau"] = (0.005, 0.3)
    minuit.limits["ecms"] = (low, high)
    minuit.migrad()
    minuit.hesse()
    return minuit, used


def _calibrate(collected: CollectorOutput, runs: Sequence[ExpRun], min_events: int) -> AlgorithmOutcome:
    counts = collected["counts"]
    n = int(counts.sum())
    labels = [run_label(r) for r in runs]
    if n < min_events:
        return AlgorithmOutcome(AlgorithmResult.not_enough_data, message=f"{n} dimuon pairs in the mass window of runs {labels} < min_events={min_events}")
    minuit, used = fit_mass(counts, collected.layout)
    if not (minuit.valid and minuit.accurate):
        return AlgorithmOutcome(
            AlgorithmResult.failure,
            message=f"dimuon mass fit of runs {labels} did not converge (valid={minuit.valid}, accurate={minuit.accurate}); inspect the mass histogram",
        )
    ecms, error = float(minuit.values["ecms"]), float(minuit.errors["ecms"])
    constants = PayloadConstants(
        value=np.array([ecms]),
        error=np.array([error]),
        attributes={
            "channels": ["eCMS"],
            "units": "GeV",
            "runs": dict(collected.runs),
            "n_pairs": n,
            "fit": {
                "isr_tail_fraction": float(minuit.values["f"]),
                "isr_tail_slope_gev": float(minuit.values["tau"]),
                "sigma_per_pt_class_gev": {str(int(k)): float(math.exp(minuit.values[f"log_sigma_{k}"])) for k in used},
                "nll": float(minuit.fval),
            },
        },
    )
    return AlgorithmOutcome(AlgorithmResult.ok, {PAYLOAD: constants})


def make_algorithm(
    collected: Mapping[ExpRun, CollectorOutput],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> Algorithm:
    min_events = int({**SETTINGS.expert_config, **expert_config}["min_events"])
    return MergingAlgorithm(SETTINGS.name, collected, lambda merged, runs: _calibrate(merged, runs, min_events))


# ---------------------------------------------------------------------------------------------
# Truth comparison (synthetic data only)
# ---------------------------------------------------------------------------------------------


def truth_pulls(
    constants: PayloadConstants | Mapping[str, PayloadConstants], truth_dir: Path, runs: Sequence[ExpRun]
) -> np.ndarray:
    """(eCMS - event-weighted true eCMS of ``runs``) / error."""
    payload = payload_of(constants, PAYLOAD)
    truth = json.loads((truth_folder(truth_dir, runs[0].exp) / "runs.json").read_text())
    expected = runs_weights(payload.attributes, runs) @ np.array([truth[str(run.run)]["ecms_gev"] for run in runs])
    return (payload.value - expected) / payload.error



CALIBRATION = Calibration(
    settings=SETTINGS,
    strategy=SequentialRunByRun,
    collect=collect,
    merge=CollectorOutput.merge,
    make_algorithm=make_algorithm,
    truth_pulls=truth_pulls,
)
