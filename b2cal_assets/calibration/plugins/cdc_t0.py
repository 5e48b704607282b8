"""CDCTimeZero: one time zero per CDC sense wire (14336) from the leading edge of the drift-time
spectrum.

Physics. A hit's measured time is t = t0(wire) + drift time + jitter. Drift times start at 0
(a track passing next to the wire), so the spectrum of a wire rises sharply at its t0; the
rise is smeared by the electronics jitter and sits on a flat background of noise hits spread
over the readout window. For a uniform distribution of track distances and an x-t relation
t ~ x^k the drift-time density near the edge is a power law u^(-alpha), alpha = 1 - 1/k.

Edge model (per wire w, time t, u = t - t0_w):

    density(t) = B_w + S_w * [u_+^(-alpha) (x) Gauss(0, sigma)](u)

The shape (alpha, sigma) is common to the wires of one superlayer (cell size, x-t relation,
resolution); t0_w, S_w and B_w are per wire.

Edge shape. alpha follows from the x-t relation and sigma is the time resolution (including
the event-T0 resolution); the x-t and resolution calibrations give nominal values
(``edge_alpha``, ``edge_sigma_ns``), but a shape that is off biases every t0 of the superlayer
(nominal shape on realistic data: pull mean -0.36, width 1.32). So by default
(``fit_edge_shape``) the shape is fitted per superlayer: iminuit on the profile likelihood of
a wire subsample (``shape_fit_wires``), every wire's (t0, S, B) profiled. Profiling t0 is a
Neyman-Scott problem (each t0 adapts to its wire's fluctuations, so the plain profile's sigma
is too small); the Cox-Reid adjustment removes that to the next order (see ``fit_shape``).
The shape is a nuisance: when it cannot be measured (fewer than ``shape_fit_min_wires``
wires or ``shape_fit_min_hits`` hits, MIGRAD not converged within ``shape_fit_max_calls``, a
parameter at its limit) the superlayer keeps the nominal shape and the calibration goes on,
flagged: the payload attributes say ``source: nominal`` with the reason
(``edge_shape_per_superlayer``, ``edge_shape_fallback_superlayers``), ``review_notes`` carries
a sentence the validation's needs_a_look check shows the reviewer, and the result message
names it. The edge tables are tabulated on a grid anchored at u = 0 (see ``EdgeShape``).

Fit. Each wire's histogram in the edge window (1 ns bins) plus its count in a noise-only
sideband before the edge enter a binned Poisson likelihood. t0_w, S_w and B_w are fitted for
all wires at once by a vectorised Fisher-scoring (Newton) iteration, started from a grid scan
of t0. The t0 errors are from the inverse Fisher information of each wire. The sharp edge
makes the likelihood asymmetric, so the ML t0 is late by O(1/n); the first-order (Cox-Snell)
bias, computed per wire from the fitted model, is subtracted (0.06-0.2 sigma at 700-100 hits).

Flags (payload ``status``; value NaN, never a silent fit):

* HOT: noise rate in the sideband above ``hot_factor`` times the median wire's of its layer
  (the background rate falls with the radius);
* DEAD: fewer hits than ``dead_fraction`` times its layer's median;
* NOT_ENOUGH_DATA: a live wire with fewer than ``min_hits_per_wire`` edge-window hits, or whose
  fit did not converge.

IoV: wire t0s are stable over a bucket: one payload per bucket (SingleIOV); not_enough_data
when more than ``max_fraction_low_wires`` of the live wires lack hits.

Payload ``CDCTimeZero``: channel = wire id 0-14335, value = t0 in ns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from iminuit import Minuit

from b2cal_assets import detector
from b2cal_assets.calibration.framework.contract import (
    Calibration,
    CalibrationInputError,
    CollectorOutput,
    MergingAlgorithm,
    ValidationLimits,
    channel_truth_pulls,
    files_of,
    flat,
    iterate_files,
    jagged,
)
from b2cal_assets.calibration.framework.results import Algorithm, AlgorithmOutcome, AlgorithmResult
from b2cal_assets.calibration.framework.settings import CalibrationSettings
from b2cal_assets.calibration.framework.strategies import SingleIOV
from b2cal_assets.conditions.iov import ExpRun
from b2cal_assets.conditions.payloads import STATUS_DEAD, STATUS_GOOD, STATUS_HOT, STATUS_NOT_ENOUGH_DATA, PayloadConstants

_SUPERLAYER = np.repeat(np.arange(len(detector.CDC_LAYERS_PER_SUPERLAYER)), detector.CDC_LAYERS_PER_SUPERLAYER)[detector.cdc_layer_of_wire(np.arange(detector.CDC_N_WIRES))]
PION_MASS_GEV = 0.13957  # PDG; the time-of-flight mass hypothesis (muons differ by < 1 ps at 5 GeV)

PAYLOAD = "CDCTimeZero"
STREAMS = ("hlt_mumu_2trk", "hlt_hadron")
N_WIRES = detector.CDC_N_WIRES
_LAYER = detector.cdc_layer_of_wire(np.arange(N_WIRES))

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

SETTINGS = CalibrationSettings(
    name="CDCTimeZero",
    expert_username="cdc_expert",
    subsystem="cdc",
    description="CDC wire time zeros (14336) from a leading-edge fit of the drift-time spectrum (hits of hlt_mumu_2trk and hlt_hadron)",
    input_data_formats=["cdst"],
    input_data_names=list(STREAMS),
    input_data_filters={
        "hlt_mumu_2trk": ["mumu_tight_or_highm_calib", "physics", "Good Or Recoverable", "On"],
        "hlt_hadron": ["hadron_calib", "physics", "Good Or Recoverable", "On"],
    },
    expert_config={
        "max_iterations": 1,
        "edge_window_ns": [40.0, 200.0],  # must contain every wire's t0 with >= 30 ns margin below
        "sideband_ns": [-200.0, 40.0],  # noise only: before any drift time
        "bin_width_ns": 1.0,
        "min_hits_per_wire": 300,  # edge-window hits: below ~200 the t0 pulls get non-Gaussian tails
        "max_fraction_low_wires": 0.01,
        "hot_factor": 10.0,
        "dead_fraction": 0.05,
        # Start values of the edge shape (alpha = 1 - 1/k for t ~ x^k near the wire, and the
        # resolution); fitted per superlayer unless fit_edge_shape is false.
        "edge_alpha": 0.2308,
        "edge_sigma_ns": 1.5,
        "fit_edge_shape": True,
        "shape_fit_wires": 300,  # wires per superlayer in the shape fit (more: slower, same bias)
        # Below these (in the shape fit's wire subsample) the superlayer keeps the nominal shape,
        # flagged: at 20,000 hits sigma is known to ~0.1 ns, which moves t0 by ~0.05 ns, a tenth
        # of a low-statistics wire's t0 error.
        "shape_fit_min_wires": 30,
        "shape_fit_min_hits": 20_000,
        "shape_fit_max_calls": 200,  # MIGRAD function calls per superlayer (~25 when it converges)
        # What the measured time holds besides t0 and the drift time (see the module doc).
        "subtract_event_t0": True,
        "subtract_time_of_flight": True,
        "subtract_propagation": True,
        "signal_speed_cm_per_ns": 27.25,  # along the sense wire, from the CDC geometry database
    },
    produced_payloads=[PAYLOAD],
)

# ---------------------------------------------------------------------------------------------
# Collector
# ---------------------------------------------------------------------------------------------

_BRANCHES = ("cdc_wire", "cdc_time", "cdc_layer", "cdc_track", "evt_t0", "trk_p", "trk_tanlambda", "trk_z0")
_BUFFERED_HITS = 4_000_000  # 32 MB of int64 bin indices
# Hits processed per numpy pass: the ~10 passes (masks, take, bin arithmetic) then run on
# arrays that stay in the CPU cache instead of streaming a whole file through memory each time.
_CHUNK_HITS = 1 << 18


def _layout(config: Mapping[str, Any]) -> dict[str, Any]:
    low, high = (float(v) for v in config["edge_window_ns"])
    width = float(config["bin_width_ns"])
    n_bins = int(round((high - low) / width))
    if n_bins < 20 or not math.isclose(n_bins * width, high - low):
        raise CalibrationInputError(
            f"{SETTINGS.name}: edge_window_ns {config['edge_window_ns']} is not a whole number (>= 20) of "
            f"bin_width_ns={width} bins; adjust one of them"
        )
    if not math.isclose(width / _GRID_STEP, round(width / _GRID_STEP)):
        raise CalibrationInputError(f"{SETTINGS.name}: bin_width_ns={width} must be a multiple of the edge tables' {_GRID_STEP} ns step")
    side_low, side_high = (float(v) for v in config["sideband_ns"])
    if side_high > low:
        raise CalibrationInputError(f"{SETTINGS.name}: sideband_ns {config['sideband_ns']} overlaps the edge window; it must end at or before {low}")
    return {"edge_window_ns": [low, high], "n_bins": n_bins, "sideband_ns": [side_low, side_high]}


def _count(index: np.ndarray, size: int) -> np.ndarray:
    """bincount that refuses out-of-range wire ids (cheaper than masking every hit beforehand)."""
    try:
        counts = np.bincount(index, minlength=size)
    except ValueError as error:  # negative index
        raise CalibrationInputError(f"{SETTINGS.name}: negative CDC wire id in the input; the files are corrupt") from error
    if counts.size != size:
        raise CalibrationInputError(f"{SETTINGS.name}: CDC wire id >= {N_WIRES} in the input; the files do not match this CDC geometry")
    return counts


class _WireHistograms:
    """The collector's accumulators: per-wire edge-window histogram and sideband hit count."""

    def __init__(self, layout: Mapping[str, Any]) -> None:
        self.low, self.high = layout["edge_window_ns"]
        self.side_low, self.side_high = layout["sideband_ns"]
        self.n_bins = int(layout["n_bins"])
        self.size = N_WIRES * self.n_bins
        # None until the first flush: the first bincount becomes the histogram, which spares
        # touching (page-faulting) and adding a second 14336 x n_bins array per run.
        self.histogram: np.ndarray | None = None
        self.sideband = np.zeros(N_WIRES, dtype=np.int64)
        # Bin indices are buffered over several files and counted in one go: a dense bincount
        # of 14336 x n_bins per 4000-event file would cost more than reading the file. int64
        # (intp) because bincount would otherwise convert them first.
        self.buffer = np.empty(_BUFFERED_HITS, dtype=np.int64)
        self.filled = 0

    def fill(self, wire: np.ndarray, time: np.ndarray) -> None:
        """Add the hits (flat arrays) of one batch."""
        for start in range(0, len(time), _CHUNK_HITS):
            self._fill_chunk(wire[start : start + _CHUNK_HITS], time[start : start + _CHUNK_HITS])

    def _fill_chunk(self, wire: np.ndarray, time: np.ndarray) -> None:
        low, high, n_bins = self.low, self.high, self.n_bins
        # Index arrays + take rather than boolean masks: a mask keeping a third of the hits at
        # random is branch-mispredicted per hit and costs several times the take.
        in_window = np.flatnonzero((time >= low) & (time < high))
        n_hits = len(in_window)
        if self.filled and self.filled + n_hits > len(self.buffer):
            self._flush()
        fits = n_hits <= len(self.buffer)  # False only with a buffer smaller than a chunk
        index = self.buffer[self.filled : self.filled + n_hits] if fits else np.empty(n_hits, dtype=np.int64)
        np.multiply(wire.take(in_window), n_bins, out=index, dtype=np.int64)
        # Same float32 arithmetic as bins = (t - low) * (n_bins / (high - low)), in place.
        scaled = time.take(in_window)
        np.subtract(scaled, low, out=scaled)
        np.multiply(scaled, n_bins / (high - low), out=scaled)
        bins = scaled.astype(np.int32)
        np.minimum(bins, n_bins - 1, out=bins)
        np.add(index, bins, out=index)
        if fits:
            self.filled += n_hits
        else:
            self._add(index)
        self.sideband += _count(wire.take(np.flatnonzero((time >= self.side_low) & (time < self.side_high))), N_WIRES)

    def _add(self, index: np.ndarray) -> np.ndarray:
        counts = _count(index, self.size)
        if self.histogram is None:
            self.histogram = counts
        else:
            self.histogram += counts
        return self.histogram

    def _flush(self) -> np.ndarray:
        histogram = self._add(self.buffer[: self.filled])
        self.filled = 0
        return histogram

    def arrays(self) -> dict[str, np.ndarray]:
        histogram = self._flush() if self.filled or self.histogram is None else self.histogram
        return {"histogram": histogram.reshape(N_WIRES, self.n_bins).astype(np.int32), "sideband": self.sideband}


def _corrections(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "event_t0": bool(config["subtract_event_t0"]),
        "time_of_flight": bool(config["subtract_time_of_flight"]),
        "propagation": bool(config["subtract_propagation"]),
        "signal_speed_cm_per_ns": float(config["signal_speed_cm_per_ns"]),
    }


def corrected_times(batch: Any, config: Mapping[str, Any]) -> np.ndarray:
    """Hit times (float32, ns) minus the event T0 and, for hits assigned to a track, its time of
    flight to the wire's layer (pion hypothesis, helix in the solenoid field) and the signal's
    propagation along the wire to the backward readout end."""
    hit_offsets, time = jagged(batch["cdc_time"])
    time = time[hit_offsets[0] : hit_offsets[-1]].astype(np.float64)
    counts = np.diff(hit_offsets)
    corrections = _corrections(config)
    if corrections["event_t0"]:
        # repeat of the per-event value: the same numbers as gathering it through a per-hit event index.
        time -= np.repeat(np.asarray(batch["evt_t0"], dtype=np.float64), counts)
    if corrections["time_of_flight"] or corrections["propagation"]:
        track = flat(batch["cdc_track"])
        assigned = np.flatnonzero(track >= 0)
        trk_offsets, p = jagged(batch["trk_p"])
        _, tanl = jagged(batch["trk_tanlambda"])
        _, z0 = jagged(batch["trk_z0"])
        # Everything that depends on the track alone is computed once per track and gathered per
        # hit (~50 hits per track); the per-hit arithmetic keeps the original expressions and
        # their order, so the times are bit for bit the same.
        p, tanl = p.astype(np.float64), tanl.astype(np.float64)
        dip = np.sqrt(1.0 + tanl**2)  # path length per transverse length
        pt = p / dip
        curvature = 100.0 * pt / (0.3 * detector.SOLENOID_FIELD_TESLA)
        per_track = {
            "diameter": 2.0 * curvature,
            "dip": dip,
            "speed": p / np.sqrt(p**2 + PION_MASS_GEV**2) * detector.SPEED_OF_LIGHT_CM_PER_NS,
            "tanl": tanl,
            "z0": z0,
        }
        track_start = np.repeat(trk_offsets[:-1], counts)
        layer = flat(batch["cdc_layer"])
        for start in range(0, len(assigned), _CHUNK_HITS):
            hits = assigned[start : start + _CHUNK_HITS]
            index = track_start.take(hits)
            index += track.take(hits)
            time[hits] = _track_corrections(time.take(hits), layer.take(hits), {k: v.take(index) for k, v in per_track.items()}, corrections)
    return time.astype(np.float32)


def _track_corrections(time: np.ndarray, layer: np.ndarray, track: Mapping[str, np.ndarray], corrections: Mapping[str, Any]) -> np.ndarray:
    """``time`` (float64, modified in place) of hits on tracks minus the time of flight and the
    signal propagation; ``track`` holds the per-track values of ``corrected_times`` per hit.
    Called per chunk of hits: its temporaries then stay in the CPU cache."""
    diameter = track["diameter"]
    radius = detector.CDC_LAYER_RADIUS.take(layer)
    np.divide(radius, diameter, out=radius)
    np.minimum(radius, 1.0, out=radius)
    arc = np.arcsin(radius, out=radius)
    arc *= diameter
    if corrections["time_of_flight"]:
        flight = arc * track["dip"]
        flight /= track["speed"]
        time -= flight
    if corrections["propagation"]:
        z_hit = arc * track["tanl"]
        z_hit += track["z0"]
        z_hit -= detector.CDC_WIRE_Z_BACKWARD
        np.maximum(z_hit, 0.0, out=z_hit)
        z_hit /= corrections["signal_speed_cm_per_ns"]
        time -= z_hit
    return time


def collect(
    run: ExpRun,
    files: Mapping[str, Sequence[Path]],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> CollectorOutput:
    """Per wire: drift-time histogram in the edge window and hit count in the noise sideband."""
    config = {**SETTINGS.expert_config, **expert_config}
    layout = {**_layout(config), "corrections": _corrections(config)}
    histograms = _WireHistograms(layout)
    events = 0
    for batch in iterate_files(files_of(files, STREAMS, SETTINGS.name), _BRANCHES):
        events += len(batch)
        histograms.fill(flat(batch["cdc_wire"]), corrected_times(batch, config))
    return CollectorOutput(SETTINGS.name, histograms.arrays(), layout, {run.format(): events})


# ---------------------------------------------------------------------------------------------
# Edge model
# ---------------------------------------------------------------------------------------------

_GRID_STEP = 0.05  # ns


class EdgeShape:
    """Tables of the smeared power-law edge: density g(u) and its integral G(u), u = t - t0."""

    def __init__(self, alpha: float, sigma: float, u_max: float) -> None:
        self.alpha, self.sigma = alpha, sigma
        # The grid is anchored at u = 0 (the power law's onset): a grid that moved with sigma
        # would sample the onset at a sigma-dependent phase and make the likelihood a sawtooth
        # in the shape parameters, which stalls MIGRAD. (That was superlayer 8's failure on the
        # demo data: profile-NLL jitter of +-0.04 against a curvature of 0.007 per 2 ps step in
        # sigma, so EDM stayed at 0.08 after 468 calls and MIGRAD called the minimum invalid.)
        margin = 8.0 * sigma + 1.0
        # u runs from -u_max (t0 at the window's end) to +u_max (t0 at its start).
        self.grid = np.arange(-math.ceil((u_max + margin) / _GRID_STEP), math.ceil((u_max + 2.0 * margin) / _GRID_STEP)) * _GRID_STEP
        half = _GRID_STEP / 2.0
        beta = 1.0 - alpha

        def integral(x: np.ndarray) -> np.ndarray:  # integral of u_+^(-alpha) from 0 to x
            return np.maximum(x, 0.0) ** beta / beta

        cell_density = (integral(self.grid + half) - integral(self.grid - half)) / _GRID_STEP  # exact cell average
        offsets = np.arange(-math.ceil(6 * sigma / _GRID_STEP), math.ceil(6 * sigma / _GRID_STEP) + 1) * _GRID_STEP
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel /= kernel.sum()
        self.density = np.convolve(cell_density, kernel, mode="same")
        self.cumulative = np.convolve(integral(self.grid), kernel, mode="same")
        self.slope = np.gradient(self.density, _GRID_STEP)
        # mode="same" is wrong within the kernel half-width of the grid's upper end: never used (margin).

        # Linear interpolation on the uniform grid by direct indexing (np.interp's binary search
        # per point was half of the calibration's time): values and steps per grid cell.
        self._tables = np.stack([self.cumulative, self.density])
        self._steps = np.diff(self._tables, axis=1, append=self._tables[:, -1:])

    def at_edges(self, edges: np.ndarray, t0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(G, g) at u = edges - t0 (wires x edges) for equally spaced edges whose spacing is a
        whole number of grid steps: every bin edge of a wire then shares the same position
        inside its grid cell, so each wire is one strided row of the tables, weighted by that
        one fraction (np.interp's binary search per point was half of the calibration's time)."""
        stride = int(round((edges[1] - edges[0]) / _GRID_STEP))
        span = stride * (len(edges) - 1)
        x = np.clip((edges[0] - t0 - self.grid[0]) * (1.0 / _GRID_STEP), 0.0, len(self.grid) - span - 1.0 - 1e-9)
        cell = x.astype(np.intp)
        fraction = (x - cell)[:, None]
        rows = np.lib.stride_tricks.sliding_window_view(self._tables, span + 1, axis=1)[:, cell, ::stride]
        steps = np.lib.stride_tricks.sliding_window_view(self._steps, span + 1, axis=1)[:, cell, ::stride]
        return rows[0] + fraction * steps[0], rows[1] + fraction * steps[1]

    def g_prime(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.grid, self.slope)

    def big_g(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.grid, self.cumulative)


def _expected(shape: EdgeShape, edges: np.ndarray, t0: np.ndarray, s: np.ndarray, b: np.ndarray):  # type: ignore[no-untyped-def]
    """Expected counts per bin (wires x bins) and their derivatives wrt t0, S, B."""
    big_g, g = shape.at_edges(edges, t0)
    widths = np.diff(edges)[None, :]
    signal = np.diff(big_g, axis=1)
    mu = b[:, None] * widths + s[:, None] * signal
    d_t0 = -s[:, None] * np.diff(g, axis=1)
    return mu, d_t0, signal, np.broadcast_to(widths, mu.shape)


def fit_wires(
    shape: EdgeShape,
    edges: np.ndarray,
    counts: np.ndarray,
    side_counts: np.ndarray,
    side_width: float,
    t0: np.ndarray,
    iterations: int = 12,
    tolerance: float = 0.0,
) -> dict[str, np.ndarray]:
    """Vectorised Fisher scoring of (t0, S, B) for every wire; returns estimates, errors, NLL.
    A wire stops iterating once its t0 step is below ``tolerance`` (ns; 0: never, as the shape
    fit's profile needs a function of the shape alone)."""
    window = edges[-1] - edges[0]
    b = np.maximum(side_counts, 0.5) / side_width
    t0 = np.array(t0, dtype=float)
    excess = np.maximum(counts.sum(axis=1) - b * window, 1.0)
    s = excess / np.maximum(shape.big_g(edges[-1] - t0) - shape.big_g(edges[0] - t0), 1e-3)
    t0_low, t0_high = edges[0] + 10.0, edges[-1] - 40.0
    last_step = np.full(len(t0), np.inf)
    active = np.arange(len(t0))
    for _ in range(iterations):
        if not len(active):
            break
        # Only the wires still moving: most converge in a few steps, a few need all of them.
        n, side_n, t0_a, s_a, b_a = counts[active], side_counts[active], t0[active], s[active], b[active]
        mu, d_t0, d_s, d_b = _expected(shape, edges, t0_a, s_a, b_a)
        mu = np.maximum(mu, 1e-9)
        residual = n / mu - 1.0
        derivs = (d_t0, d_s, d_b)
        score = np.stack([(residual * d).sum(axis=1) for d in derivs], axis=1)
        score[:, 2] += side_n / b_a - side_width  # the sideband "bin": mu = B * width
        info = np.empty((len(active), 3, 3))
        for i in range(3):
            for j in range(i, 3):
                info[:, i, j] = info[:, j, i] = (derivs[i] * derivs[j] / mu).sum(axis=1)
        info[:, 2, 2] += side_width**2 / b_a
        step = np.linalg.solve(info + 1e-12 * np.eye(3), score[:, :, None])[:, :, 0]
        # Damped steps keep every wire in the region where its likelihood is well behaved.
        t0[active] = np.clip(t0_a + np.clip(step[:, 0], -2.0, 2.0), t0_low, t0_high)
        s[active] = np.clip(s_a + step[:, 1], 0.3 * s_a, 3.0 * s_a + 1.0)
        b[active] = np.clip(b_a + step[:, 2], 0.3 * b_a, 3.0 * b_a + 1e-3)
        last_step[active] = np.abs(step[:, 0])
        active = active[last_step[active] >= tolerance]
    mu, d_t0, d_s, d_b = _expected(shape, edges, t0, s, b)
    mu = np.maximum(mu, 1e-9)
    derivs = (d_t0, d_s, d_b)
    info = np.empty((len(t0), 3, 3))
    for i in range(3):
        for j in range(i, 3):
            info[:, i, j] = info[:, j, i] = (derivs[i] * derivs[j] / mu).sum(axis=1)
    info[:, 2, 2] += side_width**2 / b
    covariance = np.linalg.inv(info)
    # First-order (Cox-Snell) bias of the t0 estimate: for Poisson bins with means mu_b(t0),
    # bias = -sum(mu' mu'' / mu) / (2 I^2), I = sum(mu'^2 / mu). The sharp edge makes the
    # likelihood asymmetric in t0, so the plain ML t0 is late by ~0.1-0.2 sigma at 100-700 hits.
    u = edges[None, :] - t0[:, None]
    d2_t0 = s[:, None] * np.diff(shape.g_prime(u), axis=1)
    fisher_t0 = (d_t0**2 / mu).sum(axis=1)
    bias = -(d_t0 * d2_t0 / mu).sum(axis=1) / (2.0 * fisher_t0**2)
    side_mu = b * side_width
    nll = (mu - counts * np.log(mu)).sum(axis=1) + side_mu - side_counts * np.log(side_mu)
    return {
        "t0": t0,
        "t0_bias": bias,
        "t0_error": np.sqrt(np.maximum(covariance[:, 0, 0], 0.0)),
        "s": s,
        "b": b,
        "nll": nll,
        # log of the t0 information with S and B profiled (Schur complement: 1 / var(t0)).
        "log_info_t0": -np.log(np.maximum(covariance[:, 0, 0], 1e-300)),
        "last_step": last_step,
    }


def start_values(shape: EdgeShape, edges: np.ndarray, counts: np.ndarray, side_counts: np.ndarray, side_width: float) -> np.ndarray:
    """Per-wire t0 start: the best point of a 1 ns grid scan (S, B from counts), then refined."""
    window = edges[-1] - edges[0]
    b = np.maximum(side_counts, 0.5) / side_width
    total = counts.sum(axis=1)
    candidates = np.arange(edges[0] + 10.0, edges[-1] - 40.0, 1.0)
    best = np.full(len(counts), np.inf)
    start = np.full(len(counts), candidates[0])
    widths = np.diff(edges)
    for t0 in candidates:
        shape_counts = np.diff(shape.big_g(edges - t0))
        s = np.maximum(total - b * window, 1.0) / shape_counts.sum()
        mu = np.maximum(b[:, None] * widths[None, :] + s[:, None] * shape_counts[None, :], 1e-9)
        nll = (mu - counts * np.log(mu)).sum(axis=1)
        better = nll < best
        best[better], start[better] = nll[better], t0
    return start


# ---------------------------------------------------------------------------------------------
# Algorithm
# ---------------------------------------------------------------------------------------------


def _flags(collected: CollectorOutput, config: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hot, dead, window hits) per wire."""
    counts = collected["histogram"]
    side = collected["sideband"].astype(float)
    window_hits = counts.sum(axis=1)
    # Beam background is far higher on the inner layers (~1/r^2): a wire is hot against its own
    # layer's noise, not the detector's (which would flag whole inner layers).
    side_median = np.array([np.median(side[_LAYER == layer]) for layer in range(detector.CDC_N_LAYERS)])[_LAYER]
    hot = side > float(config["hot_factor"]) * np.maximum(side_median, 1.0)
    total = window_hits + side
    layer_median = np.array([np.median(total[_LAYER == layer]) for layer in range(detector.CDC_N_LAYERS)])[_LAYER]
    dead = ~hot & (total <= float(config["dead_fraction"]) * layer_median)
    return hot, dead, window_hits


def fit_shape(
    edges: np.ndarray, counts: np.ndarray, side: np.ndarray, side_width: float, t0_start: np.ndarray, config: Mapping[str, Any]
) -> tuple[EdgeShape, Minuit]:
    """Common edge shape (alpha, sigma) by iminuit on the adjusted profile likelihood of a wire
    subsample. Profiling each wire's (t0, S, B) lets every t0 adapt to its wire's fluctuations,
    which makes the plain profile's sigma too small (Neyman-Scott: -6 to -18 % at 500-200
    hits per wire, biasing every t0 by up to -0.4 sigma); the Cox-Reid adjustment
    + 1/2 log I(t0) per wire (t0's information with S and B profiled; adjusting for S and B
    too over-corrects, +7 % in sigma) removes that to the next order."""
    u_max = float(edges[-1] - edges[0])

    def profile_nll(alpha: float, sigma: float) -> float:
        # Always from the same start: a warm start from the previous call would make the
        # function depend on Minuit's path, which stalls MIGRAD.
        shape = EdgeShape(alpha, sigma, u_max)
        result = fit_wires(shape, edges, counts, side, side_width, t0_start, iterations=8)
        return float(result["nll"].sum() + 0.5 * result["log_info_t0"].sum())

    minuit = Minuit(profile_nll, alpha=float(config["edge_alpha"]), sigma=float(config["edge_sigma_ns"]))
    minuit.errordef = Minuit.LIKELIHOOD
    minuit.limits["alpha"] = (0.0, 0.8)
    minuit.limits["sigma"] = (0.2, 10.0)
    minuit.strategy = 0  # a 2-parameter smooth problem; the default strategy's extra gradient passes cost time
    minuit.tol = 1.0  # EDM < 1e-3: far below the shape's statistical error
    max_calls = int(config["shape_fit_max_calls"])
    minuit.migrad(ncall=max_calls)
    if not minuit.valid and minuit.nfcn < max_calls:
        minuit.migrad(ncall=max_calls - minuit.nfcn)  # one restart from where it stopped, as MINUIT users do
    return EdgeShape(float(minuit.values["alpha"]), float(minuit.values["sigma"]), u_max), minuit


def superlayer_shape(
    edges: np.ndarray, counts: np.ndarray, side: np.ndarray, side_width: float, t0_start: np.ndarray, config: Mapping[str, Any]
) -> tuple[EdgeShape, dict[str, Any]]:
    """The edge shape of one superlayer's wires (rows of ``counts``) and what to record about it.

    The shape is a nuisance of the t0 fit: when it cannot be measured (too few hits, MIGRAD
    not converged, a parameter at its limit) the nominal shape from the x-t and resolution
    calibrations is used and the entry says so (``source: nominal`` and the reason), so the
    payload and the review show it; the wire t0s are still fitted."""
    nominal = EdgeShape(float(config["edge_alpha"]), float(config["edge_sigma_ns"]), float(edges[-1] - edges[0]))
    subsample = np.linspace(0, len(counts) - 1, min(int(config["shape_fit_wires"]), len(counts))).astype(int)
    hits = float(counts[subsample].sum())
    min_wires, min_hits = int(config["shape_fit_min_wires"]), float(config["shape_fit_min_hits"])
    if len(subsample) < min_wires or hits < min_hits:
        reason = f"too few entries for the shape fit: {len(subsample)} wires, {hits:.0f} edge-window hits (needs {min_wires} wires, {min_hits:.0f} hits)"
        return nominal, {"source": "nominal", "reason": reason}
    shape, minuit = fit_shape(edges, counts[subsample], side[subsample], side_width, t0_start[subsample], config)
    at_limit = minuit.fmin.has_parameters_at_limit
    if minuit.valid and not at_limit:
        return shape, {"source": "fit", "alpha_error": float(minuit.errors["alpha"]), "sigma_error_ns": float(minuit.errors["sigma"])}
    problems = [] if minuit.valid else [f"MIGRAD did not converge (EDM {minuit.fmin.edm:.3g}, {minuit.nfcn} calls{', call limit reached' if minuit.fmin.has_reached_call_limit else ''})"]
    tried = {"alpha": round(shape.alpha, 4), "sigma_ns": round(shape.sigma, 4)}
    if at_limit:
        problems.append(f"a parameter at its limit (alpha {tuple(minuit.limits['alpha'])}, sigma {tuple(minuit.limits['sigma'])} ns)")
    return nominal, {"source": "nominal", "reason": f"shape fit rejected: {'; '.join(problems)}; last point {tried}"}


def _calibrate(collected: CollectorOutput, runs: Sequence[ExpRun], config: Mapping[str, Any]) -> AlgorithmOutcome:
    layout = collected.layout
    low, high = layout["edge_window_ns"]
    edges = np.linspace(low, high, layout["n_bins"] + 1)
    side_width = float(layout["sideband_ns"][1] - layout["sideband_ns"][0])
    counts = collected["histogram"].astype(float)
    side = collected["sideband"].astype(float)
    hot, dead, window_hits = _flags(collected, config)
    live = ~hot & ~dead
    enough = live & (window_hits >= int(config["min_hits_per_wire"]))
    labels = [r.format() for r in runs]
    n_low = int((live & ~enough).sum())
    if n_low > float(config["max_fraction_low_wires"]) * live.sum():
        return AlgorithmOutcome(
            AlgorithmResult.not_enough_data,
            message=(
                f"runs {labels}: {n_low} of {int(live.sum())} live wires have fewer than {config['min_hits_per_wire']} "
                f"edge-window hits (allowed {float(config['max_fraction_low_wires']):.1%}); median {np.median(window_hits):.0f}"
            ),
        )
    fitted = np.flatnonzero(enough)
    nominal = EdgeShape(float(config["edge_alpha"]), float(config["edge_sigma_ns"]), float(high - low))
    # The x-t relation and the resolution differ per superlayer (cell size, gas gain): one edge
    # shape per superlayer, fitted on its wires unless fit_edge_shape is false (then, or when
    # the fit is not possible, the nominal shape, recorded as such).
    superlayer = _SUPERLAYER[fitted]
    t0_fit = np.full(len(fitted), np.nan)
    bias_fit = np.zeros(len(fitted))
    error_fit = np.full(len(fitted), np.nan)
    converged = np.zeros(len(fitted), dtype=bool)
    shapes: dict[str, dict[str, Any]] = {}
    for sl in np.unique(superlayer):
        members = np.flatnonzero(superlayer == sl)
        wires = fitted[members]
        shape = nominal
        start = start_values(shape, edges, counts[wires], side[wires], side_width)
        entry: dict[str, Any] = {"source": "nominal", "reason": "fit_edge_shape is false"}
        if config["fit_edge_shape"]:
            start = fit_wires(shape, edges, counts[wires], side[wires], side_width, start, tolerance=1e-3)["t0"]
            shape, entry = superlayer_shape(edges, counts[wires], side[wires], side_width, start, config)
        shapes[str(int(sl))] = {"alpha": shape.alpha, "sigma_ns": shape.sigma, **entry}
        result = fit_wires(shape, edges, counts[wires], side[wires], side_width, start, iterations=20, tolerance=1e-3)
        t0_fit[members], bias_fit[members], error_fit[members] = result["t0"], result["t0_bias"], result["t0_error"]
        converged[members] = (result["last_step"] < 1e-3) & (result["t0"] > low + 10.0) & (result["t0"] < high - 40.0)
    result = {"t0": t0_fit, "t0_bias": bias_fit, "t0_error": error_fit}

    fallback = [int(sl) for sl, entry in shapes.items() if config["fit_edge_shape"] and entry["source"] == "nominal"]
    notes = [
        f"edge shape of CDC superlayer {sl} is the nominal one (alpha {float(config['edge_alpha'])}, sigma {float(config['edge_sigma_ns'])} ns), "
        f"not fitted: {shapes[str(sl)]['reason']}; its wire t0s may be biased by an x-t or resolution mismatch"
        for sl in fallback
    ]
    value = np.full(N_WIRES, np.nan)
    error = np.full(N_WIRES, np.nan)
    status = np.full(N_WIRES, STATUS_NOT_ENOUGH_DATA, dtype=np.int32)
    good = fitted[converged]
    # The first-order bias correction makes pulls centred (checked down to ~100 hits per wire).
    value[good] = result["t0"][converged] - result["t0_bias"][converged]
    error[good], status[good] = result["t0_error"][converged], STATUS_GOOD
    status[hot], status[dead] = STATUS_HOT, STATUS_DEAD
    constants = PayloadConstants(
        value=value,
        error=error,
        status=status,
        attributes={
            "units": "ns",
            "quantity": "wire t0 (ns): onset of the drift-time spectrum",
            "runs": dict(collected.runs),
            "edge_shape_per_superlayer": shapes,
            "edge_shape_fitted": bool(config["fit_edge_shape"]),
            # Superlayers whose t0s rest on the nominal shape although a fit was asked for.
            "edge_shape_fallback_superlayers": fallback,
            "review_notes": notes,
            "corrections": collected.layout.get("corrections", {}),
            "hot_wires": np.flatnonzero(hot).tolist(),
            "dead_wires": np.flatnonzero(dead).tolist(),
            "not_converged_wires": fitted[~converged].tolist(),
            "median_edge_window_hits": float(np.median(window_hits)),
        },
    )
    message = f"{int(hot.sum())} hot and {int(dead.sum())} dead wires flagged; {int((~converged).sum())} fits not converged, {n_low} wires below {config['min_hits_per_wire']} hits"
    if notes:
        message += "; " + "; ".join(notes)
    return AlgorithmOutcome(AlgorithmResult.ok, {PAYLOAD: constants}, message=message)


def make_algorithm(
    collected: Mapping[ExpRun, CollectorOutput],
    upstream: Mapping[str, PayloadConstants],
    expert_config: Mapping[str, Any],
) -> Algorithm:
    config = {**SETTINGS.expert_config, **expert_config}
    return MergingAlgorithm(SETTINGS.name, collected, lambda merged, runs: _calibrate(merged, runs, config))


# ---------------------------------------------------------------------------------------------
# Truth comparison (synthetic data only)
# ---------------------------------------------------------------------------------------------


def truth_pulls(
    constants: PayloadConstants | Mapping[str, PayloadConstants], truth_dir: Path, runs: Sequence[ExpRun]
) -> np.ndarray:
    """(t0 - true t0) / error of the wires with status good."""
    return channel_truth_pulls(constants, PAYLOAD, truth_dir, runs[0].exp, "cdc_wires.csv", 2)


def figures(payloads: Sequence[Any], last_run: int) -> list[tuple[str, str, Any]]:
    """The report's t0 per layer with flagged wires, of the last IoV."""
    return [("cdc_t0_per_layer", "CDC t0 per layer", fig_t0_per_layer(payloads[-1]))]


def fig_t0_per_layer(payload: Any) -> Any:
    from matplotlib.ticker import MaxNLocator

    from b2cal_assets.validation.figures import new_figure

    c = payload.constants
    layer = detector.cdc_layer_of_wire(c.channel)
    good = (c.status == STATUS_GOOD) & np.isfinite(c.value)
    layers = np.arange(detector.CDC_N_LAYERS)
    stats = np.array([np.percentile(c.value[good & (layer == k)], [16, 50, 84]) if (good & (layer == k)).any() else [np.nan] * 3 for k in layers])
    fig, ax = new_figure(figsize=(9, 4.5))
    ax.fill_between(layers, stats[:, 0], stats[:, 2], color="tab:blue", alpha=0.3, label="16-84 % of wires")
    ax.plot(layers, stats[:, 1], "o-", ms=3, color="tab:blue", label="median t0")
    if payload.previous is not None:
        p = payload.previous.constants
        p_layer = detector.cdc_layer_of_wire(p.channel)
        p_good = (p.status == STATUS_GOOD) & np.isfinite(p.value)
        medians = [np.median(p.value[p_good & (p_layer == k)]) if (p_good & (p_layer == k)).any() else np.nan for k in layers]
        ax.plot(layers, medians, "--", color="tab:red", label=f"previous rev {payload.previous.revision}")
    ax.set_xlabel("layer (0 = innermost)")
    ax.set_ylabel("t0 (ns)")
    twin = ax.twinx()
    twin.bar(layers - 0.2, np.bincount(layer[c.status == STATUS_HOT], minlength=len(layers)), 0.4, color="tab:orange", alpha=0.7, label="hot wires")
    twin.bar(layers + 0.2, np.bincount(layer[c.status == STATUS_DEAD], minlength=len(layers)), 0.4, color="0.3", alpha=0.7, label="dead wires")
    twin.set_ylabel("flagged wires per layer (wires)")
    twin.yaxis.set_major_locator(MaxNLocator(integer=True))
    twin.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=7)
    twin.legend(loc="upper right", fontsize=7)
    ax.set_title(f"CDC t0 per layer, rev {payload.revision}, IoV {payload.iov}", fontsize=10)
    return fig


VALIDATION = ValidationLimits(
    description="CDC wire t0: hot and dead wires, fit convergence, precision, range, stability",
    limits={
        "median_error_max": 1.0,  # ns
        "max_not_enough_data_fraction": 0.02,
        "range": {"*": [40.0, 200.0]},  # ns: the edge window
        "change_sigmas": 5.0,
        "change_abs": {"*": 1.0},  # ns
        "max_changed_fraction": 0.002,
        "max_dead_fraction": 0.005,
        # 7 wires: a noisy front-end board (16 wires) must be masked by the CDC group first.
        "max_hot_fraction": 0.0005,
        "max_not_converged_fraction": 0.01,
    },
)


CALIBRATION = Calibration(
    settings=SETTINGS,
    strategy=SingleIOV,
    collect=collect,
    merge=CollectorOutput.merge,
    make_algorithm=make_algorithm,
    truth_pulls=truth_pulls,
    validation=VALIDATION,
    figures=figures,
)
