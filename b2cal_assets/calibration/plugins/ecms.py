"""CollisionInvariantMass: collision energy eCMS and its spread from the dimuon invariant mass.

Physics. In e+e- -> mu+mu- the pair carries the full collision energy unless photons were
radiated: initial-state radiation (ISR) off the beams and final-state radiation (FSR) off the
muons. QED makes both power laws in the radiated fraction: with Delta = eCMS - m the mass loss,
dP/dDelta ~ beta Delta^(beta-1) near 0, beta = beta_ISR + 2 beta_FSR (about 0.088 + 2 x 0.019
at 10.58 GeV). That spectrum is integrable but singular: about half of the events lose more
than 10 MeV, so no Gaussian core with an exponential tail describes the peak (it biases eCMS
by several MeV). The observed mass is the radiator convolved with the collision-energy spread
and the momentum resolution.

Selection (uses the BeamSpot of the same bucket, hence ``depends_on``): exactly two
oppositely charged tracks, both compatible with coming from the interaction point: their
impact parameters d0, z0 lie within ``ip_cut_sigma`` of the beam spot (track error and beam
size added in quadrature). The mass is computed from the measured helices with the muon mass.

Fit. The mass resolution differs event by event (track momentum errors ``trk_p_err``), so
events are split into classes of their mass error sigma_m = m/2 sqrt((dp1/p1)^2 + (dp2/p2)^2),
each with its own Gaussian width s_k; all classes share eCMS and the radiator exponent beta,
both floating (the fit is not told beta). Per class

    p(m) = [beta Delta^(beta-1)] (x) Gauss(0, s_k),   Delta = eCMS - m  (normalised in the window)

computed on a 0.2 MeV grid by FFT convolution (exact cell probabilities of the power law, so
the singularity at Delta = 0 is integrated, not sampled). A binned multinomial maximum
likelihood (iminuit, 2 MeV bins) gives eCMS with its HESSE error, every width and beta free.

Spread. The fitted widths obey s_k^2 = spread^2 + kappa^2 <sigma_m^2>_k: a generalised least
squares over the classes (with the fit's covariance of the widths) gives the collision-energy
spread and the scale kappa of the reported momentum errors; the spread is far below the
dimuon mass resolution (~40 MeV), so it is reported with its error and a 95 % upper limit and
flagged unresolved unless it exceeds 3 sigma (Belle II measures it with hadronic B decays).

IoV: eCMS moves slowly run to run: one payload per run, SequentialRunByRun merging runs with
fewer than ``min_events`` selected pairs.

Payload ``CollisionInvariantMass``: channel 0 = eCMS (GeV), channel 1 = energy spread (GeV).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from iminuit import Minuit

from b2cal_assets.calibration.framework.contract import (
    Calibration,
    CollectorOutput,
    MergingAlgorithm,
    ValidationLimits,
    files_of,
    iterate_files,
    jagged,
    payload_of,
    required_upstream,
    runs_weights,
    truth_folder,
)
from b2cal_assets.calibration.framework.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.calibration.framework.settings import CalibrationSettings
from b2cal_assets.calibration.framework.strategies import SequentialRunByRun
from b2cal_assets.calibration.plugins import beam_spot
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.payloads import PayloadConstants

# Annotations only: awkward is imported by the collector's file reading (framework/contract.py),
# not by every process that loads the code location.
if TYPE_CHECKING:
    import awkward as ak

PAYLOAD = "CollisionInvariantMass"
STREAM = "hlt_mumu_2trk"
MUON_MASS_GEV = 0.1056584  # PDG
CHANNELS = ("eCMS", "spread")

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
        # Classes of the per-event mass error (GeV): each gets its own Gaussian width.
        "mass_error_class_edges_gev": [0.0, 0.025, 0.03, 0.034, 0.038, 0.042, 0.047, 0.055, 0.5],
        "ip_cut_sigma": 5.0,
    },
    produced_payloads=[PAYLOAD],
)

# ---------------------------------------------------------------------------------------------
# Collector
# ---------------------------------------------------------------------------------------------

_BRANCHES = ("trk_charge", "trk_p", "trk_p_err", "trk_phi0", "trk_tanlambda", "trk_d0", "trk_z0", "trk_d0_err", "trk_z0_err")


def _layout(config: Mapping[str, Any]) -> dict[str, Any]:
    low, high = (float(x) for x in config["mass_window_gev"])
    n_bins = int(round((high - low) / float(config["bin_width_gev"])))
    return {"mass_window_gev": [low, high], "n_bins": n_bins, "mass_error_class_edges_gev": [float(x) for x in config["mass_error_class_edges_gev"]], "ip_cut_sigma": float(config["ip_cut_sigma"])}


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
    """2D histogram (mass-error class x dimuon mass) of IP-compatible opposite-sign track pairs,
    and per class the sum of the squared mass errors."""
    layout = _layout({**SETTINGS.expert_config, **expert_config})
    spot = required_upstream(upstream, beam_spot.PAYLOAD, SETTINGS.name)
    ip = spot.value[:3]
    cov = np.array([[spot.value[3], spot.value[4], spot.value[5]], [spot.value[4], spot.value[6], spot.value[7]], [spot.value[5], spot.value[7], spot.value[8]]])
    low, high = layout["mass_window_gev"]
    class_edges = np.asarray(layout["mass_error_class_edges_gev"])
    mass_edges = np.linspace(low, high, layout["n_bins"] + 1)
    counts = np.zeros((len(class_edges) - 1, layout["n_bins"]))
    sum_error2 = np.zeros(len(class_edges) - 1)
    n_pairs = 0
    for batch in iterate_files(files_of(files, [STREAM], SETTINGS.name), _BRANCHES):
        events = _opposite_sign_pairs(batch)
        p, p_err, phi, tanl = (_pair_values(batch, name, events) for name in ("trk_p", "trk_p_err", "trk_phi0", "trk_tanlambda"))
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
        mass_all = np.sqrt(np.maximum(m2, 0.0))
        mass_error = (0.5 * mass_all * np.sqrt(((p_err / p) ** 2).sum(axis=1)))[keep]
        mass = mass_all[keep]
        hist, _, _ = np.histogram2d(mass_error, mass, bins=(class_edges, mass_edges))
        counts += hist
        in_window = (mass >= low) & (mass < high)
        klass = np.clip(np.searchsorted(class_edges, mass_error[in_window], side="right") - 1, 0, len(class_edges) - 2)
        sum_error2 += np.bincount(klass, mass_error[in_window] ** 2, minlength=len(class_edges) - 1)
        n_pairs += int(keep.sum())
    return CollectorOutput(SETTINGS.name, {"counts": counts, "sum_mass_error2": sum_error2}, layout, {run.format(): n_pairs})


# ---------------------------------------------------------------------------------------------
# Algorithm
# ---------------------------------------------------------------------------------------------

_GRID_GEV = 0.0002
_MAX_LOSS_GEV = 0.7  # radiated energies considered (the window reaches 0.6 GeV below the peak)


def radiator_cell_probabilities(beta: float, n_cells: int) -> np.ndarray:
    """Probability of Delta in each grid cell [j - 1/2, j + 1/2) h for the power law
    F(Delta) ~ Delta^beta (cell 0 = [0, h/2)); exact, so the integrable peak at 0 is kept."""
    upper = (np.arange(n_cells) + 0.5) * _GRID_GEV
    cdf = (upper / _MAX_LOSS_GEV) ** beta
    return np.diff(np.concatenate([[0.0], cdf]))


def class_bin_probabilities(edges_rel: np.ndarray, beta: float, sigma: np.ndarray) -> np.ndarray:
    """(classes, bins): probability of each mass bin (edges relative to eCMS) per class width,
    normalised inside the window."""
    n_cells = int(round(_MAX_LOSS_GEV / _GRID_GEV))
    radiator = radiator_cell_probabilities(beta, n_cells)[::-1]  # u = -Delta from -max to 0
    half = int(math.ceil(8.0 * float(sigma.max()) / _GRID_GEV))
    size = 1 << int(math.ceil(math.log2(n_cells + 2 * half + 1)))
    offsets = np.arange(-half, half + 1) * _GRID_GEV
    kernels = np.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernels /= kernels.sum(axis=1, keepdims=True)
    density = np.fft.irfft(np.fft.rfft(radiator, size)[None, :] * np.fft.rfft(kernels, size, axis=1), size, axis=1)[:, : n_cells + 2 * half]
    # Cell i of the convolution is centred at u = (i - (n_cells - 1) - half) h; cumulate to its upper edge.
    upper_edges = (np.arange(n_cells + 2 * half) - (n_cells - 1) - half + 0.5) * _GRID_GEV
    cdf = np.cumsum(np.maximum(density, 0.0), axis=1)
    at_edges = np.array([np.interp(edges_rel, upper_edges, row, left=0.0, right=row[-1]) for row in cdf])
    probabilities = np.maximum(np.diff(at_edges, axis=1), 1e-300)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def fit_mass(counts: np.ndarray, layout: Mapping[str, Any]) -> tuple[Minuit, np.ndarray]:
    """Binned multinomial ML fit of all classes; returns the Minuit object and used classes."""
    low, high = layout["mass_window_gev"]
    edges = np.linspace(low, high, layout["n_bins"] + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    used = np.flatnonzero(counts.sum(axis=1) >= 50)  # an almost empty class cannot fix its width
    data = counts[used]
    start_peak = float(centres[np.argmax(data.sum(axis=0))]) + 0.01

    def nll(ecms: float, beta: float, *log_sigma: float) -> float:
        prob = class_bin_probabilities(edges - ecms, beta, np.exp(np.asarray(log_sigma)))
        return float(-(data * np.log(prob)).sum())

    names = ["ecms", "beta"] + [f"log_sigma_{k}" for k in used]
    start = [start_peak, 0.12] + [math.log(0.04)] * len(used)
    minuit = Minuit(nll, *start, name=names)
    minuit.errordef = Minuit.LIKELIHOOD
    minuit.limits["beta"] = (0.02, 0.5)
    minuit.limits["ecms"] = (low + 0.05, high)
    for k in used:
        minuit.limits[f"log_sigma_{k}"] = (math.log(0.002), math.log(0.2))
    minuit.migrad()
    minuit.hesse()
    return minuit, used


def spread_from_widths(minuit: Minuit, used: np.ndarray, mean_error2: np.ndarray) -> dict[str, float]:
    """spread^2 and kappa^2 from s_k^2 = spread^2 + kappa^2 <sigma_m^2>_k (generalised least
    squares with the fit's covariance of the widths)."""
    names = [f"log_sigma_{k}" for k in used]
    log_sigma = np.array([minuit.values[n] for n in names])
    cov_log = np.array([[minuit.covariance[a, b] for b in names] for a in names])
    s2 = np.exp(2 * log_sigma)
    jac = np.diag(2 * s2)  # d s^2 / d log s
    cov = jac @ cov_log @ jac.T
    design = np.column_stack([np.ones(len(used)), mean_error2[used]])
    weight = np.linalg.inv(cov)
    params_cov = np.linalg.inv(design.T @ weight @ design)
    spread2, kappa2 = params_cov @ design.T @ weight @ s2
    spread2_error = math.sqrt(params_cov[0, 0])
    spread = math.sqrt(max(spread2, 0.0))
    # Error of sqrt(spread^2): linear where resolved, else the half-width giving +1 sigma.
    spread_error = spread2_error / (2 * spread) if spread2 > spread2_error else math.sqrt(max(spread2, 0.0) + spread2_error) - spread
    return {
        "spread2": float(spread2),
        "spread2_error": spread2_error,
        "spread": spread,
        "spread_error": float(spread_error),
        "kappa": math.sqrt(max(kappa2, 0.0)),
        "resolved": bool(spread2 > 3 * spread2_error),
        "upper_limit_95": math.sqrt(max(spread2, 0.0) + 1.645 * spread2_error),
    }


GOF_MAX_Z = 4.0  # chi2 this many sigma above its expectation (3e-5 one-sided): the line shape is wrong


def goodness_of_fit(data: np.ndarray, layout: Mapping[str, Any], minuit: Minuit, group: int = 5) -> dict[str, float]:
    """Pearson chi2 of the fit summed over the classes, in bins of ``group`` fit bins (10 MeV)
    merged further until each expects at least 10 pairs, with its degrees of freedom and the
    Wilson-Hilferty z of a chi2 with that many dof."""
    low, high = layout["mass_window_gev"]
    edges = np.linspace(low, high, layout["n_bins"] + 1)
    sigma = np.exp(np.array([minuit.values[name] for name in minuit.parameters[2:]]))
    expected = (class_bin_probabilities(edges - minuit.values["ecms"], minuit.values["beta"], sigma) * data.sum(axis=1, keepdims=True)).sum(axis=0)
    observed = data.sum(axis=0)
    cuts = np.arange(0, len(observed) + 1, group)
    obs_groups, exp_groups = np.add.reduceat(observed, cuts[:-1]), np.add.reduceat(expected, cuts[:-1])
    merged_obs, merged_exp, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(obs_groups, exp_groups):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 10.0:
            merged_obs.append(acc_o)
            merged_exp.append(acc_e)
            acc_o = acc_e = 0.0
    if acc_e > 0 and merged_exp:
        merged_obs[-1] += acc_o
        merged_exp[-1] += acc_e
    o, e = np.array(merged_obs), np.array(merged_exp)
    chi2 = float(((o - e) ** 2 / e).sum())
    ndf = max(int(len(o) - 3), 1)  # normalisation, eCMS, beta (the widths are mostly fixed by the classes' shape)
    z = ((chi2 / ndf) ** (1.0 / 3.0) - (1.0 - 2.0 / (9.0 * ndf))) / math.sqrt(2.0 / (9.0 * ndf))
    return {"gof_chi2": chi2, "ndf": ndf, "gof_z": float(z)}


def _calibrate(collected: CollectorOutput, runs: Sequence[ExpRun], min_events: int) -> AlgorithmOutcome:
    counts = collected["counts"]
    n = int(counts.sum())
    labels = [r.format() for r in runs]
    if n < min_events:
        return AlgorithmOutcome(AlgorithmResult.not_enough_data, message=f"{n} dimuon pairs in the mass window of runs {labels} < min_events={min_events}")
    minuit, used = fit_mass(counts, collected.layout)
    if not (minuit.valid and minuit.accurate):
        return AlgorithmOutcome(
            AlgorithmResult.failure,
            message=f"dimuon mass fit of runs {labels} did not converge (valid={minuit.valid}, accurate={minuit.accurate}); inspect the mass histogram",
        )
    ecms, error = float(minuit.values["ecms"]), float(minuit.errors["ecms"])
    gof = goodness_of_fit(counts[used], collected.layout, minuit)
    per_class = counts.sum(axis=1)
    mean_error2 = np.where(per_class > 0, collected["sum_mass_error2"] / np.maximum(per_class, 1), 0.0)
    spread = spread_from_widths(minuit, used, mean_error2)
    constants = PayloadConstants(
        value=np.array([ecms, spread["spread"]]),
        error=np.array([error, spread["spread_error"]]),
        attributes={
            "channels": list(CHANNELS),
            "units": "GeV",
            "runs": dict(collected.runs),
            "n_pairs": n,
            "spread_resolved": spread["resolved"],
            "spread_upper_limit_95_gev": spread["upper_limit_95"],
            "fit": {
                "radiator_beta": float(minuit.values["beta"]),
                "radiator_beta_error": float(minuit.errors["beta"]),
                "sigma_per_class_gev": {str(int(k)): float(math.exp(minuit.values[f"log_sigma_{k}"])) for k in used},
                "momentum_error_scale_kappa": spread["kappa"],
                "spread2_gev2": spread["spread2"],
                "spread2_error_gev2": spread["spread2_error"],
                "nll": float(minuit.fval),
                **gof,
            },
            # A line shape that does not describe the data gives a biased eCMS: flagged for the
            # fit_converged check instead of being trusted.
            "not_converged_channels": [] if gof["gof_z"] < GOF_MAX_Z else ["eCMS"],
        },
    )
    if gof["gof_z"] >= GOF_MAX_Z:
        return AlgorithmOutcome(
            AlgorithmResult.ok,
            {PAYLOAD: constants},
            message=f"runs {labels}: the radiator line shape does not describe the dimuon mass (chi2 {gof['gof_chi2']:.0f} for {gof['ndf']} dof, z = {gof['gof_z']:.1f}); eCMS flagged",
        )
    message = "" if spread["resolved"] else f"energy spread below the dimuon mass resolution: < {spread['upper_limit_95'] * 1e3:.1f} MeV (95% CL)"
    return AlgorithmOutcome(AlgorithmResult.ok, {PAYLOAD: constants}, message=message)


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
    """(eCMS - event-weighted true eCMS of ``runs``) / error (the spread has no per-run truth
    beyond the generator's model, and is unresolved: it is not pulled)."""
    payload = payload_of(constants, PAYLOAD)
    truth = json.loads((truth_folder(truth_dir, runs[0].exp) / "runs.json").read_text())
    expected = runs_weights(payload.attributes, runs) @ np.array([truth[str(run.run)]["ecms_gev"] for run in runs])
    return (payload.value[:1] - expected) / payload.error[:1]


VALIDATION = ValidationLimits(
    description="Collision energy and spread: fit converged and describes the data, precision, range, stability",
    limits={
        "max_error": {"eCMS": 0.0015},  # GeV; the spread is unresolved with mu+mu- alone
        "range": {"eCMS": [10.40, 11.10], "spread": [0.0, 0.05]},  # GeV: Y(4S), off-resonance and scan points
        "change_sigmas": 5.0,
        "change_abs": {"eCMS": 0.003, "spread": 0.005},  # GeV; the machine drifts by ~2 MeV
        "max_changed_fraction": 0.0,
        "max_not_converged_fraction": 0.0,  # a line shape that does not fit flags eCMS
        "max_dead_fraction": 0.0,
        "max_hot_fraction": 0.0,
    },
)


CALIBRATION = Calibration(
    settings=SETTINGS,
    strategy=SequentialRunByRun,
    collect=collect,
    merge=CollectorOutput.merge,
    make_algorithm=make_algorithm,
    truth_pulls=truth_pulls,
    validation=VALIDATION,
)
