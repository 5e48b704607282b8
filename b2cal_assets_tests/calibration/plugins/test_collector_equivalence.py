"""The numpy collectors of CollisionEnergy and CDCTimeZero fill exactly what a plain awkward
implementation of their selection fills (the reference below, written the straightforward way).

Small hand-made ROOT files, with the branch types of the cDST skims, cover what the generator
never produces: events with 0-4 tracks, same-sign pairs, hits exactly on the window and
sideband edges, NaN times, and several flushes of the CDC bin-index buffer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from b2cal_assets.calibration.framework.contract import TREE_NAME, CollectorOutput, jagged
from b2cal_assets.calibration.plugins import beam_spot, cdc_t0, ecms
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.payloads import PayloadConstants

RUN = ExpRun(26, 3)
# x, y, z (cm) and the covariance xx, xy, xz, yy, yz, zz (cm^2), as the BeamSpot payload stores them.
SPOT = PayloadConstants(
    value=np.array([0.04, -0.02, 0.3, 1.0e-5, 1.0e-7, 0.0, 1.0e-8, 0.0, 0.09]),
    error=np.zeros(9),
)


def _write(path: Path, branches: Mapping[str, ak.Array]) -> Path:
    with uproot.recreate(path) as root_file:
        root_file[TREE_NAME] = dict(branches)
    return path


def _jagged(values: np.ndarray, counts: np.ndarray) -> ak.Array:
    return ak.unflatten(values, counts)


# -- CollisionEnergy ------------------------------------------------------------------------------


def _track_file(path: Path, rng: np.random.Generator, counts: np.ndarray, same_sign_fraction: float) -> Path:
    """Dimuon-like events: two back-to-back ~5.29 GeV tracks near the beam spot, extra tracks
    and IP outliers mixed in, with the cDST branch types (int8 charge, float32/float64)."""
    n = int(counts.sum())
    first = np.repeat(np.cumsum(counts) - counts, counts)
    position = np.arange(n) - first  # track number within its event
    charge = np.where(position % 2 == 0, 1, -1).astype(np.int8)
    flip = np.repeat(rng.random(len(counts)) < same_sign_fraction, counts) & (position == 1)
    charge[flip] = 1
    phi_event = np.repeat(rng.uniform(-math.pi, math.pi, len(counts)), counts)
    tanl_event = np.repeat(rng.normal(0.0, 0.6, len(counts)), counts)
    sign = np.where(position % 2 == 0, 1.0, -1.0)
    phi = np.angle(np.exp(1j * (phi_event + np.where(sign > 0, 0.0, math.pi) + rng.normal(0.0, 0.01, n))))
    tanl = sign * tanl_event + rng.normal(0.0, 0.01, n)
    p = rng.normal(5.29, 0.03, n) * np.sqrt(1.0 + tanl**2) / np.sqrt(1.0 + tanl_event**2)
    d0_err, z0_err = rng.uniform(0.001, 0.003, n), rng.uniform(0.002, 0.005, n)
    d0 = SPOT.value[0] * np.sin(phi) - SPOT.value[1] * np.cos(phi) + rng.normal(0.0, 1.0, n) * d0_err
    z0 = SPOT.value[2] + rng.normal(0.0, 0.3, n)
    d0[rng.random(n) < 0.05] += 0.5  # tracks not from the IP
    return _write(
        path,
        {
            "trk_charge": _jagged(charge, counts),
            "trk_p": _jagged(p.astype(np.float32), counts),
            "trk_p_err": _jagged((p * rng.uniform(0.003, 0.007, n)).astype(np.float32), counts),
            "trk_phi0": _jagged(phi.astype(np.float32), counts),
            "trk_tanlambda": _jagged(tanl.astype(np.float32), counts),
            "trk_d0": _jagged(d0, counts),
            "trk_z0": _jagged(z0, counts),
            "trk_d0_err": _jagged(d0_err.astype(np.float32), counts),
            "trk_z0_err": _jagged(z0_err.astype(np.float32), counts),
        },
    )


def _reference_ecms(paths: list[Path]) -> tuple[np.ndarray, int]:
    """The selection and histogram of ecms.collect, with awkward indexing per event."""
    layout = ecms._layout(ecms.SETTINGS.expert_config)
    ip, v = SPOT.value[:3], SPOT.value
    cov = np.array([[v[3], v[4], v[5]], [v[4], v[6], v[7]], [v[5], v[7], v[8]]])
    low, high = layout["mass_window_gev"]
    class_edges, mass_edges = np.asarray(layout["mass_error_class_edges_gev"]), np.linspace(low, high, layout["n_bins"] + 1)
    counts, n_pairs = np.zeros((len(class_edges) - 1, layout["n_bins"])), 0
    for path in paths:
        with uproot.open(path) as root_file:
            batch = root_file[TREE_NAME].arrays(list(ecms._BRANCHES), library="ak")
        selected = batch[ak.to_numpy((ak.num(batch["trk_charge"]) == 2) & (ak.sum(batch["trk_charge"], axis=1) == 0))]

        def pairs(name: str) -> np.ndarray:
            return ak.to_numpy(ak.flatten(selected[name])).astype(np.float64).reshape(-1, 2)

        p, p_err, phi, tanl = pairs("trk_p"), pairs("trk_p_err"), pairs("trk_phi0"), pairs("trk_tanlambda")
        d0, z0, d0_err, z0_err = pairs("trk_d0"), pairs("trk_z0"), pairs("trk_d0_err"), pairs("trk_z0_err")
        sin_phi, cos_phi = np.sin(phi), np.cos(phi)
        d0_ip = ip[0] * sin_phi - ip[1] * cos_phi
        z0_ip = ip[2] - tanl * (ip[0] * cos_phi + ip[1] * sin_phi)
        size_d0 = cov[0, 0] * sin_phi**2 + cov[1, 1] * cos_phi**2 - 2 * cov[0, 1] * sin_phi * cos_phi
        cut = layout["ip_cut_sigma"]
        keep = (
            (np.abs(d0 - d0_ip) < cut * np.sqrt(d0_err**2 + np.maximum(size_d0, 0.0)))
            & (np.abs(z0 - z0_ip) < cut * np.sqrt(z0_err**2 + max(cov[2, 2], 0.0)))
        ).all(axis=1)
        pt = p / np.sqrt(1.0 + tanl**2)
        energy = np.sqrt(p**2 + ecms.MUON_MASS_GEV**2)
        m2 = energy.sum(axis=1) ** 2 - (pt * cos_phi).sum(axis=1) ** 2 - (pt * sin_phi).sum(axis=1) ** 2 - (pt * tanl).sum(axis=1) ** 2
        mass = np.sqrt(np.maximum(m2, 0.0))
        mass_error = 0.5 * mass * np.sqrt(((p_err / p) ** 2).sum(axis=1))
        hist, _, _ = np.histogram2d(mass_error[keep], mass[keep], bins=(class_edges, mass_edges))
        counts += hist
        n_pairs += int(keep.sum())
    return counts, n_pairs


def test_collision_energy_collector_fills_what_per_event_awkward_selection_fills(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    paths = [
        _track_file(tmp_path / "all_two.root", rng, np.full(3000, 2), 0.0),  # the reshape path
        _track_file(tmp_path / "two_some_same_sign.root", rng, np.full(2000, 2), 0.1),
        _track_file(tmp_path / "mixed.root", rng, rng.choice([0, 1, 2, 2, 2, 3, 4], 3000), 0.1),
    ]
    output = ecms.collect(RUN, {ecms.STREAM: paths}, {beam_spot.PAYLOAD: SPOT}, {})
    counts, n_pairs = _reference_ecms(paths)
    assert n_pairs > 1000 and counts.sum() > 1000  # the selection keeps enough to compare
    np.testing.assert_array_equal(output["counts"], counts)
    assert output.runs == {"e0026.r00003": n_pairs}


# -- CDCTimeZero ----------------------------------------------------------------------------------


def _hit_file(path: Path, rng: np.random.Generator, n_events: int) -> Path:
    """Hits over the whole readout, some exactly on the window and sideband edges, some NaN."""
    counts = rng.integers(0, 400, n_events)
    n = int(counts.sum())
    time = rng.uniform(-300.0, 900.0, n).astype(np.float32)
    edges = np.array([-200.0, 40.0, 200.0, np.nextafter(np.float32(200.0), np.float32(0.0)), np.nan], dtype=np.float32)
    special = rng.random(n) < 0.02
    time[special] = rng.choice(edges, int(special.sum()))
    wire = rng.integers(0, cdc_t0.N_WIRES, n).astype(np.int16)
    # Noise-like hits (no track assigned): only the event T0 is subtracted from their times.
    no_tracks = np.zeros(n_events, dtype=np.int64)
    return _write(
        path,
        {
            "cdc_wire": _jagged(wire, counts),
            "cdc_time": _jagged(time, counts),
            "cdc_layer": _jagged(cdc_t0._LAYER[wire].astype(np.uint8), counts),
            "cdc_track": _jagged(np.full(n, -1, dtype=np.int16), counts),
            "evt_t0": rng.normal(0.0, 4.0, n_events).astype(np.float32),
            "trk_p": _jagged(np.zeros(0, dtype=np.float32), no_tracks),
            "trk_tanlambda": _jagged(np.zeros(0, dtype=np.float32), no_tracks),
            "trk_z0": _jagged(np.zeros(0), no_tracks),
        },
    )


def _reference_cdc(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, int]:
    """Histogram and sideband of cdc_t0.collect with boolean masks and np.add.at, file by file."""
    layout = cdc_t0._layout(cdc_t0.SETTINGS.expert_config)
    low, high = layout["edge_window_ns"]
    side_low, side_high = layout["sideband_ns"]
    n_bins = layout["n_bins"]
    histogram = np.zeros((cdc_t0.N_WIRES, n_bins), dtype=np.int64)
    sideband = np.zeros(cdc_t0.N_WIRES, dtype=np.int64)
    events = 0
    for path in paths:
        with uproot.open(path) as root_file:
            batch = root_file[TREE_NAME].arrays(list(cdc_t0._BRANCHES), library="ak")
        events += len(batch)
        wire = ak.to_numpy(ak.flatten(batch["cdc_wire"])).astype(np.int64)
        t0 = ak.to_numpy(ak.flatten(ak.broadcast_arrays(batch["evt_t0"], batch["cdc_time"])[0])).astype(np.float64)
        time = (ak.to_numpy(ak.flatten(batch["cdc_time"])).astype(np.float64) - t0).astype(np.float32)
        window = (time >= low) & (time < high)
        bins = np.minimum(((time[window] - low) * (n_bins / (high - low))).astype(np.int32), n_bins - 1)
        np.add.at(histogram, (wire[window], bins), 1)
        np.add.at(sideband, wire[(time >= side_low) & (time < side_high)], 1)
    return histogram.astype(np.int32), sideband, events


@pytest.mark.parametrize(
    ("buffered_hits", "chunk_hits"),
    [(cdc_t0._BUFFERED_HITS, cdc_t0._CHUNK_HITS), (30_000, 7_000), (10_000, cdc_t0._CHUNK_HITS)],
    ids=["one-flush", "several-flushes-and-chunks", "files-larger-than-the-buffer"],
)
def test_cdc_collector_fills_what_boolean_masks_fill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buffered_hits: int, chunk_hits: int
) -> None:
    monkeypatch.setattr(cdc_t0, "_BUFFERED_HITS", buffered_hits)
    monkeypatch.setattr(cdc_t0, "_CHUNK_HITS", chunk_hits)
    rng = np.random.default_rng(7)
    mumu = [_hit_file(tmp_path / f"mumu{i}.root", rng, 500) for i in range(2)]
    hadron = [_hit_file(tmp_path / f"hadron{i}.root", rng, 800) for i in range(2)]
    output = cdc_t0.collect(RUN, {"hlt_mumu_2trk": mumu, "hlt_hadron": hadron}, {}, {})
    histogram, sideband, events = _reference_cdc(mumu + hadron)
    assert output["histogram"].dtype == histogram.dtype and output["sideband"].dtype == sideband.dtype
    np.testing.assert_array_equal(output["histogram"], histogram)
    np.testing.assert_array_equal(output["sideband"], sideband)
    assert output.runs == {"e0026.r00003": events}


def test_cdc_collector_of_a_run_without_files_is_empty() -> None:
    output = cdc_t0.collect(RUN, {"hlt_mumu_2trk": [], "hlt_hadron": []}, {}, {})
    assert isinstance(output, CollectorOutput) and output.n_events == 0
    assert output["histogram"].shape == (cdc_t0.N_WIRES, 160) and not output["histogram"].any()
    assert not output["sideband"].any()


# -- base.jagged ----------------------------------------------------------------------------------


def test_jagged_gives_offsets_and_content_of_sliced_and_plain_arrays() -> None:
    array = ak.Array([[1.5, 2.5], [], [3.5, 4.5, 5.5], [6.5]])
    for candidate in (array, array[1:], array[[3, 0, 2]]):
        offsets, content = jagged(candidate)
        rebuilt = [content[offsets[i] : offsets[i + 1]].tolist() for i in range(len(candidate))]
        assert rebuilt == candidate.tolist()


# -- CDCTimeZero: corrected hit times ---------------------------------------------------------


def _reference_corrected_times(batch: Mapping[str, ak.Array]) -> np.ndarray:
    """Hit times minus event T0, time of flight and propagation, hit by hit through awkward."""
    from b2cal_assets import detector

    hit_event_t0 = ak.flatten(ak.broadcast_arrays(batch["evt_t0"], batch["cdc_time"])[0])
    time = ak.to_numpy(ak.flatten(batch["cdc_time"])).astype(np.float64) - ak.to_numpy(hit_event_t0).astype(np.float64)
    track = ak.to_numpy(ak.flatten(batch["cdc_track"])).astype(np.int64)
    event = np.repeat(np.arange(len(batch["cdc_time"])), ak.to_numpy(ak.num(batch["cdc_time"])))
    for i in np.flatnonzero(track >= 0):
        p = float(batch["trk_p"][event[i]][track[i]])
        tanl = float(batch["trk_tanlambda"][event[i]][track[i]])
        z0 = float(batch["trk_z0"][event[i]][track[i]])
        radius = detector.CDC_LAYER_RADIUS[int(ak.flatten(batch["cdc_layer"])[i])]
        pt = p / np.sqrt(1.0 + tanl**2)
        curvature = 100.0 * pt / (0.3 * detector.SOLENOID_FIELD_TESLA)
        arc = 2.0 * curvature * np.arcsin(np.minimum(radius / (2.0 * curvature), 1.0))
        beta = p / np.sqrt(p**2 + cdc_t0.PION_MASS_GEV**2)
        time[i] -= arc * np.sqrt(1.0 + tanl**2) / (beta * detector.SPEED_OF_LIGHT_CM_PER_NS)
        z_hit = z0 + arc * tanl
        time[i] -= np.maximum(z_hit - detector.CDC_WIRE_Z_BACKWARD, 0.0) / cdc_t0.SETTINGS.expert_config["signal_speed_cm_per_ns"]
    return time.astype(np.float32)


@pytest.mark.parametrize("chunk_hits", [cdc_t0._CHUNK_HITS, 37], ids=["one-chunk", "many-chunks"])
def test_cdc_corrected_times_equal_the_per_hit_formula(monkeypatch: pytest.MonkeyPatch, chunk_hits: int) -> None:
    """Bit for bit: events with 0-4 tracks, unassigned hits, and low-momentum tracks that curl
    inside the outer layers (the arcsin argument clipped at 1)."""
    monkeypatch.setattr(cdc_t0, "_CHUNK_HITS", chunk_hits)
    rng = np.random.default_rng(3)
    n_events = 60
    tracks = rng.integers(0, 5, n_events)
    hits = rng.integers(0, 40, n_events)
    hit_tracks = np.concatenate([rng.integers(-1, max(k, 0), n) if k else np.full(n, -1) for k, n in zip(tracks, hits)])
    n_tracks, n_hits = int(tracks.sum()), int(hits.sum())
    batch = {
        "cdc_time": _jagged(rng.uniform(-300.0, 900.0, n_hits).astype(np.float32), hits),
        "cdc_layer": _jagged(rng.integers(0, 56, n_hits).astype(np.uint8), hits),
        "cdc_track": _jagged(hit_tracks.astype(np.int16), hits),
        "evt_t0": rng.normal(0.0, 4.0, n_events).astype(np.float32),
        "trk_p": _jagged(rng.choice([0.08, 0.3, 1.0, 5.3], n_tracks).astype(np.float32), tracks),
        "trk_tanlambda": _jagged(rng.normal(0.0, 0.8, n_tracks).astype(np.float32), tracks),
        "trk_z0": _jagged(rng.normal(0.0, 2.0, n_tracks).astype(np.float32), tracks),
    }
    config = dict(cdc_t0.SETTINGS.expert_config)
    times = cdc_t0.corrected_times(batch, config)
    assert times.dtype == np.float32
    np.testing.assert_array_equal(times, _reference_corrected_times(batch))
