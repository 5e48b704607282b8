"""BeamSpot: position and size (3x3 covariance) of the luminous region from dimuon vertices.

Physics. Every e+e- -> mu+mu- event is produced at a point drawn from the luminous region, a
3D Gaussian (about 10 um x 0.3 um x 350 um, tilted in x-z). The fitted vertex of the two
muons adds the vertex-fit resolution, which varies event by event and is stored with the
vertex (vtx_ex/ey/ez). So, over the events of a run,

    observed vertex covariance = beam-spot size + <per-event resolution^2>

and the size is the observed covariance minus the mean squared vertex error (diagonal, the
vertex errors are stored uncorrelated). The position is the mean vertex.

Uncertainties. Position: sqrt(observed variance / N). Size: the distribution of vertices is
not Gaussian (the resolution varies per event), so the textbook Gaussian error on a covariance
would be wrong; events are split into K subsamples by event number and the spread of the
per-subsample contributions gives the error (a batch-means / cluster-robust estimate).

The vertical size. sigma_y (0.3 um) is far below the vertex resolution in y (about 10 um),
so cov_yy is measured as a difference of two nearly equal numbers: it is reported as measured
(it may come out negative) with its honest uncertainty, and flagged in the attributes
(``y_size_resolved``) with a 95% upper limit on sigma_y. Belle II constrains sigma_y with
the beam optics for reconstruction; that is a consumer's choice, not this calibration's.

IoV: the beam spot moves run to run, so one payload per run (SequentialRunByRun: a run with
fewer than ``min_events`` vertices is merged with the next).

Payload ``BeamSpot``: channels 0-2 position x, y, z (cm); 3-8 covariance xx, xy, xz, yy, yz,
zz (cm^2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from b2cal_assets.calibration.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.calibration.settings import CalibrationSettings
from b2cal_assets.calibration.strategies import SequentialRunByRun
from b2cal_assets.calibrations.base import (
    Calibration,
    CollectorOutput,
    MergingAlgorithm,
    files_of,
    iterate_files,
    payload_of,
    run_label,
    runs_weights,
    truth_folder,
)
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
    description="Interaction-point position and 3x3 size covariance from dimuon vertices (hlt_mumu_2trk)",
    input_data_formats=["cdst"],
    input_data_names=[STREAM],
    input_data_filters={STREAM: ["mumu_tight_or_highm_calib", "physics", "Good Or Recoverable", "On"]},
    expert_config={
        "max_iterations": 1,
        "min_events": 200,  # vertices per payload; fewer -> not_enough_data, the run is merged with the next
        "subsamples": 64,  # K for the batch-means error of the size
        # Vertices are summed relative to this point (cm) to keep the sums of squares well conditioned.
        "reference_position_cm": [0.04, -0.03, 0.01],
    },
    produced_payloads=[PAYLOAD],
)

# ---------------------------------------------------------------------------------------------
# Collector
# ---------------------------------------------------------------------------------------------

_BRANCHES = ("event", "vtx_x", "vtx_y", "vtx_z", "vtx_ex", "vtx_ey", "vtx_ez", "trk_charge")


def collect(
    run: ExpRun,
    files: Mapping[str, Sequence[Path]],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> CollectorOutput:
    """Per subsample k (event number mod K): n, sum of w, sum of w w^T and sum of vertex error^2,
    with w = vertex - reference. Only events with two oppositely charged tracks enter."""
    config = {**SETTINGS.expert_config, **expert_config}
    k = int(config["subsamples"])
    reference = np.asarray(config["reference_position_cm"], dtype=np.float64)
    n = np.zeros(k)
    s1 = np.zeros((k, 3))
    s2 = np.zeros((k, 3, 3))
    e2 = np.zeros((k, 3))
    for batch in iterate_files(files_of(files, [STREAM], SETTINGS.name), _BRANCHES):
        charge = batch["trk_charge"]
        good = ak.to_numpy((ak.num(charge) == 2) & (ak.sum(charge, axis=1) == 0))
        w = np.column_stack([ak.to_numpy(batch[f"vtx_{axis}"])[good] for axis in "xyz"]) - reference
        err2 = np.column_stack([ak.to_numpy(batch[f"vtx_e{axis}"])[good].astype(np.float64) for axis in "xyz"]) ** 2
        sub = ak.to_numpy(batch["event"])[good] % k
        n += np.bincount(sub, minlength=k)
        for i in range(3):
            s1[:, i] += np.bincount(sub, w[:, i], minlength=k)
            e2[:, i] += np.bincount(sub, err2[:, i], minlength=k)
            for j in range(i, 3):
                s2[:, i, j] += np.bincount(sub, w[:, i] * w[:, j], minlength=k)
    s2 = np.triu(s2) + np.transpose(np.triu(s2, 1), (0, 2, 1))  # fill the lower triangle
    layout = {"subsamples": k, "reference_position_cm": reference.tolist(), "stream": STREAM}
    return CollectorOutput(SETTINGS.name, {"n": n, "sum_w": s1, "sum_ww": s2, "sum_err2": e2}, layout, {run_label(run): int(n.sum())})


# ---------------------------------------------------------------------------------------------
# Algorithm
# ---------------------------------------------------------------------------------------------


def beam_spot_from_sums(collected: CollectorOutput) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(position, position error, size covariance, covariance error) in cm and cm^2."""
    n_k, s1_k, s2_k, e2_k = (collected[key] for key in ("n", "sum_w", "sum_ww", "sum_err2"))
    n = n_k.sum()
    mean_w = s1_k.sum(axis=0) / n
    observed = (s2_k.sum(axis=0) / n - np.outer(mean_w, mean_w)) * n / (n - 1)
    resolution = np.diag(e2_k.sum(axis=0) / n)
    size = observed - resolution
    position = mean_w + np.asarray(collected.layout["reference_position_cm"])
    position_error = np.sqrt(np.diag(observed) / n)
    # Each subsample's summed contribution q_k = sum over its events of (d d^T - diag(err^2)),
    # d = w - mean; the spread of q_k - n_k * size around 0 gives the variance of the size.
    q_k = (
        s2_k
        - s1_k[:, :, None] * mean_w[None, None, :]
        - mean_w[None, :, None] * s1_k[:, None, :]
        + n_k[:, None, None] * np.outer(mean_w, mean_w)[None]
        - np.einsum("ki,ij->kij", e2_k, np.eye(3))
    )
    k = len(n_k)
    variance = k / (k - 1) * ((q_k - n_k[:, None, None] * size[None]) ** 2).sum(axis=0) / n**2
    return position, position_error, size, np.sqrt(variance)


def _calibrate(collected: CollectorOutput, runs: Sequence[ExpRun], min_events: int) -> AlgorithmOutcome:
    n = collected.n_events
    if n < min_events:
        return AlgorithmOutcome(
            AlgorithmResult.not_enough_data,
            message=f"{n} dimuon vertices in runs {[run_label(r) for r in runs]} < min_events={min_events}",
        )
    position, position_error, size, size_error = beam_spot_from_sums(collected)
    values = np.concatenate([position, [size[i, j] for i, j in _UPPER]])
    errors = np.concatenate([position_error, [size_error[i, j] for i, j in _UPPER]])
    y_resolved = bool(size[1, 1] > 3.0 * size_error[1, 1])
    # One-sided 95% upper limit on sigma_y from the (Gaussian) estimate of cov_yy.
    sigma_y_limit = math.sqrt(max(size[1, 1], 0.0) + 1.645 * size_error[1, 1])
    constants = PayloadConstants(
        value=values,
        error=errors,
        attributes={
            "channels": list(CHANNELS),
            "units": {"position": "cm", "covariance": "cm^2"},
            "runs": dict(collected.runs),
            "n_vertices": n,
            "y_size_resolved": y_resolved,
            "sigma_y_upper_limit_95_cm": sigma_y_limit,
            "method": "mean vertex; size = observed covariance - mean vertex error^2; batch-means errors",
        },
    )
    message = "" if y_resolved else f"sigma_y below the vertex resolution: < {sigma_y_limit * 1e4:.2f} um (95% CL)"
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



CALIBRATION = Calibration(
    settings=SETTINGS,
    strategy=SequentialRunByRun,
    collect=collect,
    merge=CollectorOutput.merge,
    make_algorithm=make_algorithm,
    truth_pulls=truth_pulls,
)
