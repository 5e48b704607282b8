"""BeamSpot: position and size (3x3 covariance) of the luminous region from mu+mu- track pairs.

Physics (as basf2's ``BeamSpotStandAlone``). Both muons of an e+e- -> mu+mu- event come from
one point v of the luminous region, a 3D Gaussian N(mu, Sigma) (about 10 um x 0.3 um x 300 um,
tilted in x-z) that may drift slowly within a run. Each track's fit gives its impact
parameters at the point of closest approach to the z axis, which for straight tracks near
the IP are linear in v:

    d0 = x sin(phi0) - y cos(phi0)          z0 = z - tanL (x cos(phi0) + y sin(phi0))

* Position: d0 and z0 of all tracks, as a function of phi0 and tanL, by linear least squares
  (the phi dependence of d0 gives x and y, z0 gives z).
* Size: the two tracks share the same v but have independent fit errors, so for the residuals
  r = (d0, z0) - (their value at mu) of track 1 and track 2 of one event,
  E[r1_a r2_b] = R1_a Sigma R2_b^T with R the rows above: linear in the six elements of Sigma
  and free of the tracks' own errors (the "d0 product"). A least-squares fit of the four
  products per event gives Sigma. No reported error enters the size, so an error model that is
  10 % off cannot bias it; the errors only weight the fit.
* Time dependence within a run: the position is also fitted per time bin of ``time_bin_s``;
  a straight line through the bins gives the drift rate (cm/hour), stored in the attributes
  with its error and chi2 (basf2 fits splines and splits the payload in time; here the IoV is a
  run and the payload holds the run average).

Uncertainties: delete-one-group jackknife over ``subsamples`` groups of events (event number
mod K) of the whole chain (position, then size from the residuals to that position): no
Gaussian assumption on the impact-parameter tails or on the reported errors.

The vertical size sigma_y (about 0.3 um) is far below the d0 resolution (about 10 um), so
cov_yy is measured as reported (it may come out negative) with its honest error, and flagged in
the attributes (``y_size_resolved``) with a 95 % upper limit on sigma_y.

IoV: one payload per run (SequentialRunByRun: a run with fewer than ``min_events`` pairs is
merged with the next, as CAF). ``min_events`` = 1500 pairs gives an x, y position error of
about 0.4 um, inside the 0.5 um validation limit (an error of ~16 um per track over
~2 x 1500 tracks, half of which measure x). A beam-spot jump is a boundary: the algorithm
names the runs whose position differs from the run before by more than ``jump_sigmas``
and ``jump_floor_cm``, and the strategy never merges across them.

Payload ``BeamSpot``: channels 0-2 position x, y, z (cm); 3-8 covariance xx, xy, xz, yy, yz,
zz (cm^2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from b2cal_assets.calibration.framework.contract import (
    Calibration,
    CollectorOutput,
    MergingAlgorithm,
    ValidationLimits,
    files_of,
    iterate_files,
    jagged,
    payload_of,
    runs_weights,
    truth_folder,
)
from b2cal_assets.calibration.framework.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.calibration.framework.settings import CalibrationSettings
from b2cal_assets.calibration.framework.strategies import SequentialRunByRun
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.payloads import PayloadConstants

PAYLOAD = "BeamSpot"
STREAM = "hlt_mumu_2trk"
CHANNELS = ("x", "y", "z", "cov_xx", "cov_xy", "cov_xz", "cov_yy", "cov_yz", "cov_zz")
_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # covariance elements in channel order

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

SETTINGS = CalibrationSettings(
    name="BeamSpot",
    expert_username="beam_expert",
    subsystem="beam",
    description="Interaction-point position and 3x3 size covariance from mu+mu- track impact parameters (hlt_mumu_2trk)",
    input_data_formats=["cdst"],
    input_data_names=[STREAM],
    input_data_filters={STREAM: ["mumu_tight_or_highm_calib", "physics", "Good Or Recoverable", "On"]},
    expert_config={
        "max_iterations": 1,
        # Track pairs per payload; fewer -> not_enough_data, merged with the next run. 1500 pairs
        # give ~0.4 um in x and y, inside the 0.5 um validation limit (see the module doc).
        "min_events": 1500,
        "subsamples": 32,  # K groups for the jackknife errors
        # Impact parameters are taken relative to this point (cm) to keep the sums well conditioned.
        "reference_position_cm": [0.04, -0.03, 0.01],
        # Nominal luminous-region size (cm) in the weights of the fits only (not in any result).
        "weight_size_cm": [0.001, 0.0001, 0.035],
        "time_bin_s": 600.0,
        "max_time_bins": 16,
        # A run whose position differs from the run before by more than both is a jump boundary.
        "jump_sigmas": 5.0,
        "jump_floor_cm": [0.0025, 0.00025, 0.025],
    },
    produced_payloads=[PAYLOAD],
)

# ---------------------------------------------------------------------------------------------
# Collector
# ---------------------------------------------------------------------------------------------

_BRANCHES = ("event", "time_s", "trk_charge", "trk_phi0", "trk_tanlambda", "trk_d0", "trk_z0", "trk_d0_err", "trk_z0_err")


def _rows(phi: np.ndarray, tanl: np.ndarray) -> np.ndarray:
    """(n, 2, 3): the d0 and z0 rows of each track (d(d0, z0) / d(x, y, z))."""
    s, c = np.sin(phi), np.cos(phi)
    zero = np.zeros_like(s)
    return np.stack([np.stack([s, -c, zero], axis=-1), np.stack([-tanl * c, -tanl * s, np.ones_like(s)], axis=-1)], axis=-2)


def _size_design(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """(n, 4, 6): coefficients of (xx, xy, xz, yy, yz, zz) in E[r1_a r2_b] = R1_a Sigma R2_b^T."""
    outer = r1[:, :, None, :, None] * r2[:, None, :, None, :]  # (n, a, b, i, j)
    columns = [outer[..., i, j] if i == j else outer[..., i, j] + outer[..., j, i] for i, j in _UPPER]
    return np.stack(columns, axis=-1).reshape(len(r1), 4, 6)


def collect(
    run: ExpRun,
    files: Mapping[str, Sequence[Path]],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> CollectorOutput:
    """Additive sums of the position and size least-squares fits, per subsample (event number
    mod K) and, for the position, per time bin. Events with exactly two tracks of opposite
    charge enter."""
    config = {**SETTINGS.expert_config, **expert_config}
    k = int(config["subsamples"])
    n_time = int(config["max_time_bins"])
    bin_s = float(config["time_bin_s"])
    reference = np.asarray(config["reference_position_cm"], dtype=np.float64)
    size_w = np.asarray(config["weight_size_cm"], dtype=np.float64)
    n = np.zeros((n_time, k))
    pos_normal = np.zeros((n_time, k, 3, 3))
    pos_vector = np.zeros((n_time, k, 3))
    xx = np.zeros((k, 6, 6))
    xm = np.zeros((k, 6))
    xa = np.zeros((k, 6, 3))
    xrr = np.zeros((k, 6, 3, 3))
    for batch in iterate_files(files_of(files, [STREAM], SETTINGS.name), _BRANCHES):
        offsets, charge = jagged(batch["trk_charge"])
        two = np.flatnonzero(np.diff(offsets) == 2)
        first = offsets[two]
        opposite = charge[first].astype(np.int64) + charge[first + 1] == 0
        events, first = two[opposite], first[opposite]
        index = np.stack([first, first + 1], axis=1)
        values = {name: jagged(batch[name])[1].astype(np.float64)[index] for name in ("trk_phi0", "trk_tanlambda", "trk_d0", "trk_z0", "trk_d0_err", "trk_z0_err")}
        rows = _rows(values["trk_phi0"], values["trk_tanlambda"])  # (n, 2 tracks, 2, 3)
        measured = np.stack([values["trk_d0"], values["trk_z0"]], axis=-1) - rows @ reference  # (n, 2, 2)
        # Weights: track error and nominal size projected on each measurement.
        projected = np.einsum("ntai,i,ntai->nta", rows, size_w**2, rows)
        weight = 1.0 / (np.stack([values["trk_d0_err"], values["trk_z0_err"]], axis=-1) ** 2 + projected)
        sub = np.asarray(batch["event"])[events] % k
        tbin = np.minimum((np.asarray(batch["time_s"])[events] / bin_s).astype(np.int64), n_time - 1)
        cell = tbin * k + sub
        onehot = np.zeros((len(events), n_time * k))
        onehot[np.arange(len(events)), cell] = 1.0
        n += onehot.sum(axis=0).reshape(n_time, k)
        # Per-event terms first, then one matrix product per array sums them into the cells.
        pos_normal += (onehot.T @ np.einsum("ntai,nta,ntaj->nij", rows, weight, rows).reshape(-1, 9)).reshape(n_time, k, 3, 3)
        pos_vector += (onehot.T @ np.einsum("ntai,nta,nta->ni", rows, weight, measured)).reshape(n_time, k, 3)
        # Size: products of track 1's and track 2's residuals, a, b in {d0, z0}.
        design = _size_design(rows[:, 0], rows[:, 1])  # (n, 4, 6)
        w = (weight[:, 0, :, None] * weight[:, 1, None, :]).reshape(-1, 4)
        m1, m2 = measured[:, 0], measured[:, 1]
        product = (m1[:, :, None] * m2[:, None, :]).reshape(-1, 4)
        # d/dmu terms: m1_a R2_b + m2_b R1_a (n, 4, 3) and R1_a (x) R2_b (n, 4, 3, 3).
        linear = (m1[:, :, None, None] * rows[:, 1, None, :, :] + m2[:, None, :, None] * rows[:, 0, :, None, :]).reshape(-1, 4, 3)
        quadratic = (rows[:, 0, :, None, :, None] * rows[:, 1, None, :, None, :]).reshape(-1, 4, 3, 3)
        sub_hot = onehot.reshape(len(events), n_time, k).sum(axis=1)
        wd = design * w[:, :, None]
        xx += (sub_hot.T @ np.einsum("npi,npj->nij", wd, design).reshape(-1, 36)).reshape(k, 6, 6)
        xm += sub_hot.T @ np.einsum("npi,np->ni", wd, product)
        xa += (sub_hot.T @ np.einsum("npi,npj->nij", wd, linear).reshape(-1, 18)).reshape(k, 6, 3)
        xrr += (sub_hot.T @ np.einsum("npi,npab->niab", wd, quadratic).reshape(-1, 54)).reshape(k, 6, 3, 3)
    layout = {
        "subsamples": k,
        "max_time_bins": n_time,
        "time_bin_s": bin_s,
        "reference_position_cm": reference.tolist(),
        "weight_size_cm": size_w.tolist(),
        "stream": STREAM,
    }
    arrays = {"n": n, "pos_normal": pos_normal, "pos_vector": pos_vector, "size_xx": xx, "size_xm": xm, "size_xa": xa, "size_xrr": xrr}
    return CollectorOutput(SETTINGS.name, arrays, layout, {run.format(): int(n.sum())})


# ---------------------------------------------------------------------------------------------
# Algorithm
# ---------------------------------------------------------------------------------------------


def _solve(normal: np.ndarray, vector: np.ndarray) -> np.ndarray:
    return np.linalg.solve(normal, vector)


def _estimate(pos_normal: np.ndarray, pos_vector: np.ndarray, xx: np.ndarray, xm: np.ndarray, xa: np.ndarray, xrr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position offset from the reference, six covariance elements) from summed arrays."""
    mu = _solve(pos_normal, pos_vector)
    # X^T W P at mu: sum X w (m1 m2 - m1 R2 mu - m2 R1 mu + (R1 mu)(R2 mu)).
    rhs = xm - xa @ mu + np.einsum("iab,a,b->i", xrr, mu, mu)
    return mu, _solve(xx, rhs)


def _jackknife(full: np.ndarray, leave_one_out: np.ndarray) -> np.ndarray:
    k = len(leave_one_out)
    return np.sqrt((k - 1) / k * ((leave_one_out - leave_one_out.mean(axis=0)) ** 2).sum(axis=0))


def beam_spot_from_sums(collected: CollectorOutput) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(position, position error, size covariance elements, their errors) in cm and cm^2."""
    pn, pv = collected["pos_normal"].sum(axis=0), collected["pos_vector"].sum(axis=0)  # per subsample
    xx, xm, xa, xrr = (collected[key] for key in ("size_xx", "size_xm", "size_xa", "size_xrr"))
    totals = [a.sum(axis=0) for a in (pn, pv, xx, xm, xa, xrr)]
    mu, size = _estimate(*totals)
    k = len(pn)
    partial = [_estimate(*(t - a[i] for t, a in zip(totals, (pn, pv, xx, xm, xa, xrr)))) for i in range(k) if collected["n"][:, i].sum() > 0]
    mu_error = _jackknife(mu, np.array([p[0] for p in partial]))
    size_error = _jackknife(size, np.array([p[1] for p in partial]))
    return mu + np.asarray(collected.layout["reference_position_cm"]), mu_error, size, size_error


def drift_in_run(collected: CollectorOutput) -> dict[str, Any] | None:
    """Position per time bin and a straight-line drift rate (cm/hour) with errors and chi2."""
    n = collected["n"].sum(axis=1)
    used = np.flatnonzero(n >= 100)
    if len(used) < 3 or len(collected.runs) != 1:
        return None
    pn, pv = collected["pos_normal"].sum(axis=1), collected["pos_vector"].sum(axis=1)
    hours = (used + 0.5) * float(collected.layout["time_bin_s"]) / 3600.0
    positions = np.array([_solve(pn[t], pv[t]) for t in used])
    # Per-bin errors from the subsample spread inside the bin (robust to the weights' scale).
    errors = []
    for t in used:
        per = [_solve(pn[t] - collected["pos_normal"][t, i], pv[t] - collected["pos_vector"][t, i]) for i in range(collected["n"].shape[1]) if collected["n"][t, i] > 0]
        errors.append(_jackknife(positions[0], np.array(per)))
    errors = np.maximum(np.array(errors), 1e-12)
    rates, rate_errors, chi2 = [], [], []
    for axis in range(3):
        w = 1.0 / errors[:, axis] ** 2
        design = np.column_stack([np.ones_like(hours), hours])
        cov = np.linalg.inv(design.T @ (w[:, None] * design))
        coef = cov @ design.T @ (w * positions[:, axis])
        rates.append(float(coef[1]))
        rate_errors.append(float(math.sqrt(cov[1, 1])))
        chi2.append(float((w * (positions[:, axis] - design @ coef) ** 2).sum()))
    reference = np.asarray(collected.layout["reference_position_cm"])
    return {
        "time_bin_hours": hours.round(4).tolist(),
        "position_per_bin_cm": (positions + reference).round(7).tolist(),
        "drift_cm_per_hour": rates,
        "drift_error_cm_per_hour": rate_errors,
        "line_chi2": chi2,
        "ndf": int(len(used) - 2),
    }


def _calibrate(collected: CollectorOutput, runs: Sequence[ExpRun], min_events: int) -> AlgorithmOutcome:
    n = collected.n_events
    if n < min_events:
        return AlgorithmOutcome(
            AlgorithmResult.not_enough_data,
            message=f"{n} mu+mu- track pairs in runs {[r.format() for r in runs]} < min_events={min_events}",
        )
    position, position_error, size, size_error = beam_spot_from_sums(collected)
    values = np.concatenate([position, size])
    errors = np.concatenate([position_error, size_error])
    y_resolved = bool(size[3] > 3.0 * size_error[3])
    # One-sided 95% upper limit on sigma_y from the (Gaussian) estimate of cov_yy.
    sigma_y_limit = math.sqrt(max(size[3], 0.0) + 1.645 * size_error[3])
    drift = drift_in_run(collected)
    constants = PayloadConstants(
        value=values,
        error=errors,
        attributes={
            "channels": list(CHANNELS),
            "units": {"position": "cm", "covariance": "cm^2"},
            "runs": dict(collected.runs),
            "n_track_pairs": n,
            "y_size_resolved": y_resolved,
            "sigma_y_upper_limit_95_cm": sigma_y_limit,
            "drift_within_run": drift,
            "method": "track pairs: position from d0(phi0)/z0 least squares, size from d0/z0 products; jackknife errors",
        },
    )
    message = "" if y_resolved else f"sigma_y below the d0 resolution: < {sigma_y_limit * 1e4:.2f} um (95% CL)"
    return AlgorithmOutcome(AlgorithmResult.ok, {PAYLOAD: constants}, message=message)


def jump_boundaries(collected: Mapping[ExpRun, CollectorOutput], config: Mapping[str, Any]) -> list[ExpRun]:
    """Runs whose position differs from the previous run's by more than ``jump_sigmas`` standard
    deviations and ``jump_floor_cm`` in some coordinate: payloads never span them."""
    floor = np.asarray(config["jump_floor_cm"], dtype=float)
    sigmas = float(config["jump_sigmas"])
    runs = sorted(collected)
    boundaries = []
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for run in runs:
        output = collected[run]
        if output.n_events < 20:
            continue  # too few pairs to place the run (a nearly empty run joins its neighbours)
        try:
            position, error, _, _ = beam_spot_from_sums(output)
        except np.linalg.LinAlgError:
            continue
        if previous is not None:
            step = np.abs(position - previous[0])
            sigma = np.hypot(error, previous[1])
            if np.any((step > sigmas * sigma) & (step > floor)):
                boundaries.append(run)
        previous = (position, error)
    return boundaries


def make_algorithm(
    collected: Mapping[ExpRun, CollectorOutput],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> Algorithm:
    config = {**SETTINGS.expert_config, **expert_config}
    min_events = int(config["min_events"])
    return MergingAlgorithm(
        SETTINGS.name,
        collected,
        lambda merged, runs: _calibrate(merged, runs, min_events),
        boundaries=lambda: jump_boundaries(collected, config),
    )


# ---------------------------------------------------------------------------------------------
# Truth comparison (synthetic data only)
# ---------------------------------------------------------------------------------------------


def truth_pulls(
    constants: PayloadConstants | Mapping[str, PayloadConstants], truth_dir: Path, runs: Sequence[ExpRun]
) -> np.ndarray:
    """Pulls of the 9 channels against the event-weighted truth of ``runs`` (a mixture of the
    runs' Gaussians when several runs were merged)."""
    payload = payload_of(constants, PAYLOAD)
    truth = json.loads((truth_folder(truth_dir, runs[0].exp) / "runs.json").read_text())
    weights = runs_weights(payload.attributes, runs)
    positions = np.array([truth[str(run.run)]["beam_spot_cm"] for run in runs])
    covariances = np.array([truth[str(run.run)]["beam_spot_cov_cm2"] for run in runs])
    mean = weights @ positions
    spread = positions - mean
    cov = np.einsum("r,rij->ij", weights, covariances + spread[:, :, None] * spread[:, None, :])
    expected = np.concatenate([mean, [cov[i, j] for i, j in _UPPER]])
    return (payload.value - expected) / payload.error


def figures(payloads: Sequence[Any], last_run: int) -> list[tuple[str, str, Any]]:
    """The report's position and size trends over the bucket's IoVs."""
    return [("beam_spot_trends", "Beam spot x, y, z and size trends", fig_trends(payloads, last_run))]


def fig_trends(payloads: Sequence[Any], last_run: int) -> Any:
    """x, y, z and sigma_x, sigma_y, sigma_z (um) vs run; an unresolved sigma_y is drawn as its
    95 % upper limit (arrow), not as a band reaching below zero."""
    from b2cal_assets.validation.figures import draw_iov_boundaries, first_previous, iov_span, new_figure

    fig, axes = new_figure(2, 3, figsize=(12, 5.8))
    cm_to_um = 1e4
    quantities = [("x", 0, False), ("y", 1, False), ("z", 2, False), ("sigma_x", 3, True), ("sigma_y", 6, True), ("sigma_z", 8, True)]
    for ax, (label, index, is_size) in zip(axes.flat, quantities):
        for payload in payloads:
            c = payload.constants
            lo, hi = iov_span(payload, last_run)
            value, error = c.value[index], c.error[index]
            if label == "sigma_y" and not c.attributes.get("y_size_resolved", True):
                limit = float(c.attributes.get("sigma_y_upper_limit_95_cm", math.sqrt(max(value, 0.0) + 1.645 * error))) * cm_to_um
                ax.plot([lo, hi], [limit] * 2, color="tab:purple", lw=1.6)
                ax.annotate("", xy=((lo + hi) / 2, limit * 0.55), xytext=((lo + hi) / 2, limit), arrowprops={"arrowstyle": "->", "color": "tab:purple"})
                continue
            if is_size:
                sigma = math.sqrt(max(value, 0.0))
                err = error / (2 * sigma) if sigma > 0 else math.sqrt(max(error, 0.0))
                value, error = sigma, err
            low = max(value - error, 0.0) if is_size else value - error
            ax.fill_between([lo, hi], [low * cm_to_um] * 2, [(value + error) * cm_to_um] * 2, color="tab:blue", alpha=0.3, lw=0)
            ax.plot([lo, hi], [value * cm_to_um] * 2, color="tab:blue")
        first = first_previous(payloads)
        if first is not None and first.previous is not None:
            p = first.previous.constants.value[index]
            ax.axhline((math.sqrt(max(p, 0.0)) if is_size else p) * cm_to_um, color="tab:red", ls="--", lw=1, label=f"previous rev {first.previous.revision}")
            ax.legend(fontsize=7)
        draw_iov_boundaries(ax, payloads, last_run)
        ax.set_title(label + (" (arrow: 95 % upper limit when unresolved)" if label == "sigma_y" else ""), fontsize=8)
        ax.set_xlabel("run number", fontsize=7)
        ax.set_ylabel(f"{label} (um)", fontsize=7)
        if is_size:
            ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
    fig.suptitle("beam spot position and size per IoV (band: +-1 sigma; dotted: IoV boundaries)", fontsize=10)
    return fig


VALIDATION = ValidationLimits(
    description="Beam spot position and size: precision, physical range, run-to-run stability",
    limits={
        # Vertex-position precision reconstruction needs (cm): 0.5 um in x and y, 10 um in z.
        "max_error": {"x": 5e-5, "y": 5e-5, "z": 1e-3},
        "range": {
            "x": [-0.2, 0.2],
            "y": [-0.2, 0.2],
            "z": [-1.0, 1.0],
            "cov_xx": [0.0, 1e-4],  # sigma_x up to 100 um
            "cov_yy": [-1e-6, 1e-6],  # measured below the resolution: slightly negative is honest
            "cov_zz": [0.0, 1e-2],  # sigma_z up to 1 mm
        },
        # A move beyond 5 sigma and beyond 25 um in x (2.5 um in y, 250 um in z) is an orbit
        # change the machine group must confirm; smaller steps are the orbit feedback's drift.
        "change_sigmas": 5.0,
        "change_abs": {"x": 0.0025, "y": 0.00025, "z": 0.025, "cov_xx": 3e-7, "cov_yy": 1e-7, "cov_zz": 3e-4, "*": 5e-6},
        "max_changed_fraction": 0.0,
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
    figures=figures,
)
