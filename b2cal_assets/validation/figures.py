"""Validation report figures (matplotlib, Agg): full-resolution PNGs, thumbnails, one PDF.

Per calibration and bucket, what a reviewer expects to see:

* constants vs run, with the IoV boundaries and the previous payload (running tag) overlaid;
* difference to the previous payload; pull distribution of the change (and residuals to the
  ring/layer median when there is nothing to compare with);
* ECLCrystalEnergy: crystal map of gains (theta id vs phi id), dead crystals marked;
* CDCTimeZero: t0 per layer (median and spread) with hot/dead wires per layer;
* BeamSpot: x, y, z and sigma_x, sigma_y, sigma_z trends.

Each figure is written as a PNG at full resolution and a small PNG thumbnail (returned as
base64, for the Dagster UI); all of them plus the check results go into one PDF. Pure Python.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Figures are made without pyplot, so no backend is chosen at import (or anywhere): a Figure
# renders PNG/PDF through its own canvas on workers and in tests without a display.
import numpy as np  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from b2cal_assets import detector  # noqa: E402
from b2cal_assets.conditions.payloads import STATUS_DEAD, STATUS_GOOD, STATUS_HOT  # noqa: E402
from b2cal_assets.validation.rules import CalibrationInputs, CheckOutcome, PayloadRecord, channel_names  # noqa: E402

__all__ = ["FULL_DPI", "THUMBNAIL_MAX_BYTES", "ReportFigure", "ValidationReport", "write_report"]

FULL_DPI = 130
THUMBNAIL_DPI = 42
THUMBNAIL_MAX_BYTES = 60_000  # base64 lands in the event log: keep each embedded plot small
MANY_CHANNELS = 12


@dataclass(frozen=True)
class ReportFigure:
    name: str
    title: str
    png: Path
    thumbnail_png_base64: str

    @property
    def thumbnail_bytes(self) -> int:
        return len(self.thumbnail_png_base64) * 3 // 4


@dataclass(frozen=True)
class ValidationReport:
    calibration: str
    bucket: str
    directory: Path
    pdf: Path
    figures: tuple[ReportFigure, ...]


def _span(payload: PayloadRecord, last_run: int) -> tuple[float, float]:
    """Run range drawn for an IoV: from its first run to its last (open ends stop at the bucket's last run)."""
    iov = payload.iov
    end = iov.final_run if iov.final_exp == iov.first_exp and iov.final_run >= 0 else last_run
    return float(iov.first_run), float(max(end, iov.first_run)) + 1.0


def _by_name(inputs: CalibrationInputs) -> dict[str, list[PayloadRecord]]:
    grouped: dict[str, list[PayloadRecord]] = {}
    for payload in inputs.payloads:
        grouped.setdefault(payload.name, []).append(payload)
    return grouped


def _first_previous(payloads: Sequence[PayloadRecord]) -> PayloadRecord | None:
    return payloads[0] if payloads and payloads[0].previous is not None and payloads[0].previous.tag != "this bucket" else None


def _good(payload: PayloadRecord) -> np.ndarray:
    c = payload.constants
    return (c.status == STATUS_GOOD) & np.isfinite(c.value)


def _boundaries(ax, payloads: Sequence[PayloadRecord], last_run: int) -> None:  # type: ignore[no-untyped-def]
    for payload in payloads[1:]:
        ax.axvline(_span(payload, last_run)[0], color="0.6", lw=0.8, ls=":")


def fig_constants_vs_run(inputs: CalibrationInputs, last_run: int) -> Figure:
    """Per channel (few-channel payloads) or channel median (many), stepwise over the IoVs."""
    panels: list[tuple[str, str, list[PayloadRecord], int | None]] = []
    for name, payloads in _by_name(inputs).items():
        n = len(payloads[0].constants.value)
        if n <= MANY_CHANNELS:
            panels += [(name, channel, payloads, i) for i, channel in enumerate(channel_names(payloads[0].constants))]
        else:
            panels.append((name, "median of good channels", payloads, None))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (name, label, payloads, index) in zip(axes.flat, panels):
        for payload in payloads:
            lo, hi = _span(payload, last_run)
            c = payload.constants
            if index is None:
                good = _good(payload)
                values = c.value[good]
                mid, low, high = (np.percentile(values, q) if values.size else math.nan for q in (50, 16, 84))
            else:
                mid, low, high = c.value[index], c.value[index] - c.error[index], c.value[index] + c.error[index]
            ax.fill_between([lo, hi], [low, low], [high, high], color="tab:blue", alpha=0.25, lw=0)
            ax.plot([lo, hi], [mid, mid], color="tab:blue", lw=1.6)
        first = _first_previous(payloads)
        if first is not None and first.previous is not None:
            p = first.previous.constants
            value = np.nanmedian(p.value[p.status == STATUS_GOOD]) if index is None else p.value[index]
            ax.axhline(value, color="tab:red", ls="--", lw=1.0, label=f"previous rev {first.previous.revision}")
            ax.legend(fontsize=7, loc="best")
        _boundaries(ax, payloads, last_run)
        ax.set_title(f"{name}: {label}", fontsize=8)
        ax.set_xlabel("run", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{inputs.calibration} {inputs.bucket}: constants vs run (dotted: IoV boundaries)", fontsize=10)
    fig.tight_layout()
    return fig


def _changes(inputs: CalibrationInputs) -> list[tuple[PayloadRecord, np.ndarray, np.ndarray, np.ndarray]]:
    """(payload, change, combined sigma, channel index) for channels comparable with the previous payload."""
    result = []
    for payload in inputs.payloads:
        if payload.previous is None:
            continue
        c, p = payload.constants, payload.previous.constants
        index = {int(ch): i for i, ch in enumerate(p.channel)}
        j = np.array([index.get(int(ch), -1) for ch in c.channel])
        jj = np.where(j >= 0, j, 0)
        ok = (j >= 0) & (c.status == STATUS_GOOD) & (p.status[jj] == STATUS_GOOD) & np.isfinite(c.value) & np.isfinite(p.value[jj])
        change = c.value - p.value[jj]
        sigma = np.sqrt(np.nan_to_num(c.error) ** 2 + np.nan_to_num(p.error[jj]) ** 2)
        result.append((payload, change[ok], sigma[ok], np.flatnonzero(ok)))
    return result


def fig_difference_to_previous(inputs: CalibrationInputs) -> Figure:
    changes = _changes(inputs)
    fig = Figure(figsize=(8, 4.2))
    ax = fig.subplots()
    if not changes:
        ax.text(0.5, 0.5, "no previous payload to compare with\n(first calibration of this payload)", ha="center", va="center")
        ax.set_axis_off()
    elif len(inputs.payloads[0].constants.value) <= MANY_CHANNELS:
        names = channel_names(inputs.payloads[0].constants)
        width = 0.8 / len(changes)
        for k, (payload, change, sigma, idx) in enumerate(changes):
            ax.bar(idx + k * width, change / np.where(sigma > 0, sigma, 1), width, label=f"rev {payload.revision} - rev {payload.previous.revision}")  # type: ignore[union-attr]
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=7)
        ax.set_ylabel("(new - previous) / sigma")
        ax.axhline(0, color="k", lw=0.6)
        ax.legend(fontsize=6, ncol=2)
    else:
        for payload, change, _, _ in changes:
            ax.hist(change, bins=80, histtype="step", label=f"rev {payload.revision} - {payload.previous.label}")  # type: ignore[union-attr]
        ax.set_xlabel("new - previous")
        ax.set_ylabel("channels")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_title(f"{inputs.calibration} {inputs.bucket}: difference to the previous payload", fontsize=10)
    fig.tight_layout()
    return fig


def fig_pulls(inputs: CalibrationInputs) -> Figure:
    """Pulls of the change vs the previous payload, or residuals to the group median."""
    changes = _changes(inputs)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    pulls = np.concatenate([change[sigma > 0] / sigma[sigma > 0] for _, change, sigma, _ in changes]) if changes else np.array([])
    if pulls.size:
        title, label = "pulls of the change vs previous", "(new - previous) / sqrt(err^2 + err_prev^2)"
    else:
        title, label = "residuals to the median of good channels", "(value - median) / error"
        parts = []
        for payload in inputs.payloads:
            good = _good(payload) & (payload.constants.error > 0)
            if good.sum() > 1:
                c = payload.constants
                parts.append((c.value[good] - np.median(c.value[good])) / c.error[good])
        pulls = np.concatenate(parts) if parts else np.array([])
    if pulls.size:
        clipped = np.clip(pulls, -8, 8)
        bins = np.linspace(-8, 8, 65 if pulls.size > 200 else 17)
        ax.hist(clipped, bins=bins, color="tab:blue", alpha=0.7, label=f"n={pulls.size}, mean {np.mean(pulls):+.2f}, rms {np.std(pulls):.2f}")
        x = np.linspace(-8, 8, 400)
        ax.plot(x, pulls.size * (bins[1] - bins[0]) * np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi), "r-", lw=1, label="unit Gaussian")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center")
    ax.set_xlabel(label)
    ax.set_title(f"{inputs.calibration} {inputs.bucket}: {title}", fontsize=10)
    fig.tight_layout()
    return fig


def fig_ecl_crystal_map(payload: PayloadRecord) -> Figure:
    """Gains on a (theta id, phi id) grid; rings with fewer crystals are stretched over 144 bins."""
    c = payload.constants
    theta_id, phi_id = detector.ecl_theta_phi_id(c.channel)
    n_rings = len(detector.ECL_RING_SIZES)
    grid = np.full((n_rings, 144), np.nan)
    dead = np.zeros((n_rings, 144), dtype=bool)
    for ring in range(n_rings):
        size = int(detector.ECL_RING_SIZES[ring])
        in_ring = theta_id == ring
        columns = (np.arange(144) * size) // 144  # phi id shown in each of the 144 columns
        values = np.full(size, np.nan)
        flags = np.zeros(size, dtype=bool)
        values[phi_id[in_ring]] = np.where(c.status[in_ring] == STATUS_GOOD, c.value[in_ring], np.nan)
        flags[phi_id[in_ring]] = c.status[in_ring] == STATUS_DEAD
        grid[ring] = values[columns]
        dead[ring] = flags[columns]
    fig = Figure(figsize=(9, 4.8))
    ax = fig.subplots()
    image = ax.imshow(grid.T, origin="lower", aspect="auto", cmap="viridis", vmin=0.85, vmax=1.15, interpolation="nearest")
    if dead.any():
        ax.imshow(np.where(dead.T, 1.0, np.nan), origin="lower", aspect="auto", cmap="autumn", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="gain")
    ax.set_xlabel("theta id (ring)")
    ax.set_ylabel("phi id (scaled to 144)")
    ax.set_title(f"ECL crystal gains rev {payload.revision}, IoV {payload.iov}: red = dead ({int((c.status == STATUS_DEAD).sum())})", fontsize=10)
    fig.tight_layout()
    return fig


def fig_cdc_t0_per_layer(payload: PayloadRecord) -> Figure:
    c = payload.constants
    layer = detector.cdc_layer_of_wire(c.channel)
    good = (c.status == STATUS_GOOD) & np.isfinite(c.value)
    layers = np.arange(detector.CDC_N_LAYERS)
    stats = np.array([np.percentile(c.value[good & (layer == k)], [16, 50, 84]) if (good & (layer == k)).any() else [np.nan] * 3 for k in layers])
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    ax.fill_between(layers, stats[:, 0], stats[:, 2], color="tab:blue", alpha=0.3, label="16-84% of wires")
    ax.plot(layers, stats[:, 1], "o-", ms=3, color="tab:blue", label="median t0")
    if payload.previous is not None:
        p = payload.previous.constants
        p_layer = detector.cdc_layer_of_wire(p.channel)
        p_good = (p.status == STATUS_GOOD) & np.isfinite(p.value)
        medians = [np.median(p.value[p_good & (p_layer == k)]) if (p_good & (p_layer == k)).any() else np.nan for k in layers]
        ax.plot(layers, medians, "--", color="tab:red", label=f"previous rev {payload.previous.revision}")
    ax.set_xlabel("layer")
    ax.set_ylabel("t0 (ns)")
    twin = ax.twinx()
    twin.bar(layers - 0.2, np.bincount(layer[c.status == STATUS_HOT], minlength=len(layers)), 0.4, color="tab:orange", alpha=0.7, label="hot wires")
    twin.bar(layers + 0.2, np.bincount(layer[c.status == STATUS_DEAD], minlength=len(layers)), 0.4, color="0.3", alpha=0.7, label="dead wires")
    twin.set_ylabel("flagged wires")
    ax.legend(loc="upper left", fontsize=7)
    twin.legend(loc="upper right", fontsize=7)
    ax.set_title(f"CDC t0 per layer, rev {payload.revision}, IoV {payload.iov}", fontsize=10)
    fig.tight_layout()
    return fig


def fig_beam_spot_trends(payloads: Sequence[PayloadRecord], last_run: int) -> Figure:
    """x, y, z (um) and sizes sigma_x, sigma_y, sigma_z (um) vs run."""
    fig = Figure(figsize=(12, 5.5))
    axes = fig.subplots(2, 3)
    cm_to_um = 1e4
    quantities = [("x", 0, False), ("y", 1, False), ("z", 2, False), ("sigma_x", 3, True), ("sigma_y", 6, True), ("sigma_z", 8, True)]
    for ax, (label, index, is_size) in zip(axes.flat, quantities):
        for payload in payloads:
            c = payload.constants
            lo, hi = _span(payload, last_run)
            value, error = c.value[index], c.error[index]
            if is_size:
                # sigma = sqrt(cov); error propagated; a negative measured cov_yy is drawn at 0.
                sigma = math.sqrt(max(value, 0.0))
                err = error / (2 * sigma) if sigma > 0 else math.sqrt(max(error, 0.0))
                value, error = sigma, err
            ax.fill_between([lo, hi], [(value - error) * cm_to_um] * 2, [(value + error) * cm_to_um] * 2, color="tab:blue", alpha=0.3, lw=0)
            ax.plot([lo, hi], [value * cm_to_um] * 2, color="tab:blue")
        first = _first_previous(payloads)
        if first is not None and first.previous is not None:
            p = first.previous.constants.value[index]
            ax.axhline((math.sqrt(max(p, 0.0)) if is_size else p) * cm_to_um, color="tab:red", ls="--", lw=1, label=f"previous rev {first.previous.revision}")
            ax.legend(fontsize=7)
        _boundaries(ax, payloads, last_run)
        ax.set_title(f"{label} (um)", fontsize=9)
        ax.set_xlabel("run", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle("beam spot trends (dotted: IoV boundaries)", fontsize=10)
    fig.tight_layout()
    return fig


def fig_check_summary(inputs: CalibrationInputs, outcomes: Sequence[CheckOutcome]) -> Figure:
    """A text page for the PDF: every check with its summary and first failures."""
    fig = Figure(figsize=(8.27, 11.69))
    lines = [f"{inputs.calibration}, bucket {inputs.bucket} (version {inputs.bucket_version})", ""]
    for outcome in outcomes:
        lines.append(f"[{outcome.severity}] {outcome.describe()}"[:150])
        lines += [f"      {failure}"[:150] for failure in outcome.failures[:6]]
    fig.text(0.04, 0.97, "\n".join(lines), va="top", family="monospace", fontsize=6.5)
    return fig


def _thumbnail(fig: Figure) -> str:
    dpi = THUMBNAIL_DPI
    while True:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        if buffer.tell() <= THUMBNAIL_MAX_BYTES or dpi <= 15:
            return base64.b64encode(buffer.getvalue()).decode("ascii")
        dpi = int(dpi * 0.75)


def build_figures(inputs: CalibrationInputs, last_run: int) -> list[tuple[str, str, Figure]]:
    """(name, title, figure) of every figure of the report."""
    figures = [
        ("constants_vs_run", "Constants vs run, IoV boundaries, previous payload", fig_constants_vs_run(inputs, last_run)),
        ("difference_to_previous", "Difference to the previous payload", fig_difference_to_previous(inputs)),
        ("pulls", "Pull / residual distribution", fig_pulls(inputs)),
    ]
    for name, payloads in _by_name(inputs).items():
        if name == "ECLCrystalEnergy":
            figures.append(("ecl_crystal_map", "ECL crystal map of gains", fig_ecl_crystal_map(payloads[-1])))
        elif name == "CDCTimeZero":
            figures.append(("cdc_t0_per_layer", "CDC t0 per layer", fig_cdc_t0_per_layer(payloads[-1])))
        elif name == "BeamSpot":
            figures.append(("beam_spot_trends", "Beam spot x, y, z and size trends", fig_beam_spot_trends(payloads, last_run)))
    return figures


def write_report(inputs: CalibrationInputs, outcomes: Sequence[CheckOutcome], directory: Path, last_run: int) -> ValidationReport:
    """Write the PNGs and the PDF under ``directory`` (replaced atomically per file)."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[ReportFigure] = []
    pdf_path = directory / f"{inputs.calibration}_{inputs.bucket}_validation.pdf"
    partial_pdf = pdf_path.with_name(pdf_path.name + ".part")
    with PdfPages(partial_pdf) as pdf:
        summary = fig_check_summary(inputs, outcomes)
        pdf.savefig(summary)
        for name, title, fig in build_figures(inputs, last_run):
            png = directory / f"{inputs.calibration}_{name}.png"
            partial = png.with_name(png.name + ".part")
            fig.savefig(partial, format="png", dpi=FULL_DPI)
            partial.replace(png)
            pdf.savefig(fig)
            written.append(ReportFigure(name, title, png, _thumbnail(fig)))
    partial_pdf.replace(pdf_path)
    return ValidationReport(inputs.calibration, inputs.bucket, directory, pdf_path, tuple(written))
