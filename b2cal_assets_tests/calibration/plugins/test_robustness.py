"""Calibrations under mismatches of the detector model: they recover the truth or flag it.

Small synthetic inputs written in the file format (no generator): each test changes one
thing the calibration is not told (reported track errors 10 % low, ISR exponent, dead crystals
at several statistics, a beam-spot jump next to a low-statistics run) and checks the pulls
over many toys or the flags.
"""

from __future__ import annotations

import math
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from b2cal_assets.calibration.framework import AlgorithmResult
from b2cal_assets.calibration.framework.contract import CollectorOutput, pull_summary
from b2cal_assets.calibration.framework.strategies import SequentialRunByRun
from b2cal_assets.calibration.plugins import beam_spot, ecl_gains, ecms
from b2cal_assets.conditions.iov import ExpRun, IoV
from b2cal_assets.conditions.payloads import STATUS_DEAD, STATUS_GOOD, STATUS_HOT
from b2cal_assets.fileformat import TREE_NAME

SIZE_CM = np.array([0.0010, 0.00003, 0.0300])  # luminous region (cm)
CENTRE_CM = np.array([0.0400, -0.0300, 0.0100])


def _pairs_file(path: Path, rng: np.random.Generator, n: int, centre: np.ndarray, error_scale: float = 1.0) -> Path:
    """mu+mu- pairs from a Gaussian luminous region; each track's d0/z0 smeared with its true
    error while the file reports ``error_scale`` times it."""
    vertex = centre + rng.normal(0.0, 1.0, (n, 3)) * SIZE_CM
    phi1 = rng.uniform(-math.pi, math.pi, n)
    phi = np.stack([phi1, phi1 + math.pi + rng.normal(0.0, 0.04, n)], axis=1)
    tanl = np.stack([rng.normal(0.0, 0.8, n), rng.normal(0.0, 0.8, n)], axis=1)
    d0_err = rng.uniform(0.0008, 0.0016, (n, 2))
    z0_err = rng.uniform(0.0012, 0.0025, (n, 2))
    x, y, z = (vertex[:, i, None] for i in range(3))
    d0 = x * np.sin(phi) - y * np.cos(phi) + rng.normal(0.0, 1.0, (n, 2)) * d0_err
    z0 = z - tanl * (x * np.cos(phi) + y * np.sin(phi)) + rng.normal(0.0, 1.0, (n, 2)) * z0_err
    counts = np.full(n, 2)
    jag = lambda a, dtype: ak.unflatten(a.reshape(-1).astype(dtype), counts)  # noqa: E731
    with uproot.recreate(path) as out:
        out[TREE_NAME] = {
            "event": np.arange(n, dtype=np.int64),
            "time_s": np.sort(rng.uniform(0.0, 3600.0, n)),
            "trk_charge": jag(np.tile([1, -1], n), np.int8),
            "trk_phi0": jag(phi, np.float32),
            "trk_tanlambda": jag(tanl, np.float32),
            "trk_d0": jag(d0, np.float64),
            "trk_z0": jag(z0, np.float64),
            "trk_d0_err": jag(d0_err * error_scale, np.float32),
            "trk_z0_err": jag(z0_err * error_scale, np.float32),
        }
    return path


def _beam_spot(tmp_path: Path, rng: np.random.Generator, n: int, centre: np.ndarray = CENTRE_CM, error_scale: float = 1.0, run: int = 1) -> CollectorOutput:
    path = _pairs_file(tmp_path / f"pairs_{run}_{rng.integers(1 << 30)}.root", rng, n, centre, error_scale)
    return beam_spot.collect(ExpRun(26, run), {beam_spot.STREAM: [path]}, {}, {})


def test_beam_spot_size_is_unbiased_when_the_track_errors_are_reported_10_percent_low(tmp_path: Path) -> None:
    rng = np.random.default_rng(19)
    pulls = []
    for _ in range(30):
        outcome = beam_spot._calibrate(_beam_spot(tmp_path, rng, 4000, error_scale=0.9), [ExpRun(26, 1)], 1500)
        payload = outcome.payloads[beam_spot.PAYLOAD]
        truth = np.concatenate([CENTRE_CM, [SIZE_CM[0] ** 2, 0.0, 0.0, SIZE_CM[1] ** 2, 0.0, SIZE_CM[2] ** 2]])
        pulls.append((payload.value - truth) / payload.error)
    pulls = np.array(pulls)
    # x, y, z and the resolved sizes cov_xx, cov_zz: mean 0 +- 0.1 (plus toy statistics), width 1 +- 0.1 (same).
    for channel in (0, 1, 2, 3, 8):
        summary = pull_summary(pulls[:, channel])
        assert abs(summary["mean"]) < 0.1 + 2.5 * summary["mean_error"], (channel, summary)
        assert abs(summary["width"] - 1.0) < 0.1 + 2.5 * summary["width_error"], (channel, summary)


def test_a_jump_splits_the_iov_at_its_run_and_a_low_statistics_run_merges_on_its_own_side(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    jump = np.array([0.0050, 0.0002, 0.0500])
    collected = {}
    for run in range(1, 7):
        n = 300 if run == 3 else 3000  # run 3: below min_events (1500)
        centre = CENTRE_CM + (jump if run >= 4 else 0.0)
        collected[ExpRun(26, run)] = _beam_spot(tmp_path, rng, n, centre, run=run)
    algorithm = beam_spot.make_algorithm(collected, {}, {})
    assert algorithm.boundaries() == [ExpRun(26, 4)]
    result = SequentialRunByRun().run(algorithm, list(collected), IoV(26, 1, -1, -1))
    assert result.succeeded
    assert [tuple(r.run for r in p.runs) for p in result.payloads()] == [(1,), (2, 3), (4,), (5,), (6,)]
    assert [p.iov for p in result.payloads()][2] == IoV(26, 4, 26, 4)


# -- ECL dead crystals ----------------------------------------------------------------------------


@pytest.mark.parametrize("hits_per_crystal", [2, 5, 14, 40, 200])
def test_every_dead_crystal_is_flagged_dead_or_not_usable_at_every_statistics_level(hits_per_crystal: int) -> None:
    rng = np.random.default_rng(hits_per_crystal)
    n_crystals = ecl_gains.N_CRYSTALS
    dead = np.arange(3000, 3080)
    n_all = rng.poisson(hits_per_crystal * 5.0, n_crystals).astype(float)  # electrons, leakage, background
    n_all[dead] = 0.0
    n = rng.poisson(hits_per_crystal, n_crystals).astype(float)
    n[dead] = 0.0
    gains = rng.normal(1.0, 0.05, n_crystals)
    x = gains * 0.8
    output = CollectorOutput(
        ecl_gains.SETTINGS.name,
        {"n": n, "sum_x": n * x, "sum_x2": n * (x**2) * 1.0004, "n_all": n_all},
        {},
        {"e0026.r00001": 1000},
    )
    config = {**ecl_gains.SETTINGS.expert_config, "min_hits_per_crystal": 5}
    payload, summary = ecl_gains.gains_from_sums(output, config)
    # Never GOOD; DEAD as soon as the ring expects enough hits to tell (e^-mu < 1e-6).
    assert not np.any(payload.status[dead] == STATUS_GOOD)
    if hits_per_crystal * 5.0 > 14:
        assert set(np.flatnonzero(payload.status == STATUS_DEAD)) == set(dead.tolist())
    else:
        # Too few hits to tell dead from unlucky: the algorithm asks for more runs (CAF merge).
        outcome = ecl_gains._calibrate(output, [ExpRun(26, 1)], {**config, "max_fraction_low_crystals": 0.01})
        assert outcome.result is AlgorithmResult.not_enough_data


# -- ECL hot crystals -----------------------------------------------------------------------------

HOT_CRYSTALS = np.array([150, 2000, 3001, 5000, 8700])  # endcap, barrel (next to a dead board) and backward endcap


def _ecl_sums(rng: np.random.Generator, hits_per_crystal: float, hot_rate: float = 0.0) -> CollectorOutput:
    """Collector sums with all hits ~5x the electron hits; the hot crystals fire hot_rate times
    their ring's rate on their own (noise at any energy: all hits only, not electrons)."""
    n_crystals = ecl_gains.N_CRYSTALS
    rate = hits_per_crystal * 5.0 * rng.uniform(0.8, 1.2, n_crystals)  # crystals of a ring differ
    n_all = rng.poisson(rate).astype(float)
    if hot_rate:
        n_all[HOT_CRYSTALS] += rng.poisson(hot_rate * hits_per_crystal * 5.0, len(HOT_CRYSTALS))
    n = rng.poisson(hits_per_crystal, n_crystals).astype(float)
    x = rng.normal(1.0, 0.05, n_crystals) * 0.8
    return CollectorOutput(ecl_gains.SETTINGS.name, {"n": n, "sum_x": n * x, "sum_x2": n * (x**2) * 1.0004, "n_all": n_all}, {}, {"e0026.r00001": 1000})


@pytest.mark.parametrize("hits_per_crystal", [2, 5, 14, 40, 200])
@pytest.mark.parametrize("hot_rate", [5.0, 20.0, 100.0])
def test_every_hot_crystal_is_flagged_hot_at_every_rate_and_statistics_level(hits_per_crystal: int, hot_rate: float) -> None:
    rng = np.random.default_rng([hits_per_crystal, int(hot_rate)])
    config = {**ecl_gains.SETTINGS.expert_config, "min_hits_per_crystal": 1}
    payload, summary = ecl_gains.gains_from_sums(_ecl_sums(rng, hits_per_crystal, hot_rate), config)
    assert set(np.flatnonzero(payload.status == STATUS_HOT)) == set(HOT_CRYSTALS.tolist())
    assert payload.attributes["hot_crystals"] == HOT_CRYSTALS.tolist() and summary["hot"] == len(HOT_CRYSTALS)
    assert np.all(np.isnan(payload.value[HOT_CRYSTALS]))  # a noisy crystal's gain is not reported


@pytest.mark.parametrize("hits_per_crystal", [2, 5, 14, 40, 200, 1000])
def test_no_crystal_is_flagged_hot_on_clean_data(hits_per_crystal: int) -> None:
    rng = np.random.default_rng(hits_per_crystal + 7)
    config = {**ecl_gains.SETTINGS.expert_config, "min_hits_per_crystal": 1}
    payload, summary = ecl_gains.gains_from_sums(_ecl_sums(rng, hits_per_crystal), config)
    assert not np.any(payload.status == STATUS_HOT) and summary["hot"] == 0


def test_hot_crystals_are_named_in_the_message_and_blocked_above_the_declared_limit() -> None:
    rng = np.random.default_rng(5)
    config = {**ecl_gains.SETTINGS.expert_config, "min_hits_per_crystal": 1}
    outcome = ecl_gains._calibrate(_ecl_sums(rng, 40, 20.0), [ExpRun(26, 1)], config)
    assert outcome.result is AlgorithmResult.ok and f"{len(HOT_CRYSTALS)} hot crystals flagged" in outcome.message
    # 5 of 8736 hot crystals exceed the plug-in's max_hot_fraction (4 crystals): the bucket is blocked.
    assert ecl_gains.VALIDATION.limits["max_hot_fraction"] * ecl_gains.N_CRYSTALS < len(HOT_CRYSTALS)


def test_poisson_upper_tail_matches_the_direct_sum() -> None:
    k = np.array([3.0, 10.0, 60.0, 400.0])
    mu = np.array([0.5, 2.0, 15.0, 164.0])
    for kk, m, computed in zip(k, mu, ecl_gains.poisson_log_sf(k, mu)):
        terms = [math.exp(-m + i * math.log(m) - math.lgamma(i + 1) + 700.0) for i in range(int(kk), int(kk) + 400)]
        assert computed == pytest.approx(math.log(math.fsum(terms)) - 700.0, rel=1e-9)
    # 400 hits where 164 are expected (2.4x the ring): far beyond 1e-6, but below hot_factor 3.
    assert ecl_gains.poisson_log_sf(np.array([400.0]), np.array([164.0]))[0] < math.log(1e-6)


# -- eCMS line shape ------------------------------------------------------------------------------


def _mass_histogram(rng: np.random.Generator, n: int, ecms_gev: float, beta: float, sigma_gev: float) -> CollectorOutput:
    layout = ecms._layout(ecms.SETTINGS.expert_config)
    low, high = layout["mass_window_gev"]
    loss = ecms._MAX_LOSS_GEV * rng.random(n) ** (1.0 / beta)
    error = rng.uniform(0.7, 1.3, n) * sigma_gev
    mass = ecms_gev - loss + rng.normal(0.0, 1.0, n) * error
    edges = np.asarray(layout["mass_error_class_edges_gev"])
    counts, _, _ = np.histogram2d(error, mass, bins=(edges, np.linspace(low, high, layout["n_bins"] + 1)))
    klass = np.clip(np.searchsorted(edges, error, side="right") - 1, 0, len(edges) - 2)
    inside = (mass >= low) & (mass < high)
    sum_error2 = np.bincount(klass[inside], error[inside] ** 2, minlength=len(edges) - 1)
    return CollectorOutput(ecms.SETTINGS.name, {"counts": counts, "sum_mass_error2": sum_error2}, layout, {"e0026.r00001": int(counts.sum())})


@pytest.mark.slow
@pytest.mark.parametrize("beta", [0.10, 0.16])
def test_ecms_is_recovered_whatever_the_radiator_exponent(beta: float) -> None:
    rng = np.random.default_rng(int(beta * 100))
    pulls = []
    for _ in range(12):
        outcome = ecms._calibrate(_mass_histogram(rng, 6000, 10.58, beta, 0.04), [ExpRun(26, 1)], 2000)
        payload = outcome.payloads[ecms.PAYLOAD]
        assert payload.attributes["not_converged_channels"] == []
        pulls.append((payload.value[0] - 10.58) / payload.error[0])
    summary = pull_summary(np.array(pulls))
    assert abs(summary["mean"]) < 0.1 + 2.5 * summary["mean_error"], summary
    assert abs(summary["width"] - 1.0) < 0.1 + 2.5 * summary["width_error"], summary


def test_ecms_flags_a_line_shape_the_radiator_cannot_describe() -> None:
    # The simple model's shape: 80 % without any radiation, 20 % with an exponential tail.
    rng = np.random.default_rng(3)
    output = _mass_histogram(rng, 30000, 10.58, 1.0, 0.04)
    layout = output.layout
    low, high = layout["mass_window_gev"]
    n = 30000
    radiated = np.where(rng.random(n) < 0.2, rng.exponential(0.05, n), 0.0)
    error = rng.uniform(0.7, 1.3, n) * 0.04
    mass = 10.58 - radiated + rng.normal(0.0, 1.0, n) * error
    edges = np.asarray(layout["mass_error_class_edges_gev"])
    counts, _, _ = np.histogram2d(error, mass, bins=(edges, np.linspace(low, high, layout["n_bins"] + 1)))
    output.arrays["counts"] = counts
    payload = ecms._calibrate(output, [ExpRun(26, 1)], 2000).payloads[ecms.PAYLOAD]
    assert payload.attributes["not_converged_channels"] == ["eCMS"]
