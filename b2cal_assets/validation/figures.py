"""Validation report figures (matplotlib, Agg): full-resolution PNGs, thumbnails, one PDF.

Per calibration and bucket, what a reviewer expects to see:

* constants vs run, with the IoV boundaries and the previous payload (running tag) overlaid;
* difference to the previous payload; pull distribution of the change with a unit Gaussian
  (without anything to compare with: the distribution of the values, never pseudo-pulls);
* the figures each calibration declares beside its algorithm (``Calibration.figures``: ECL
  crystal map, CDC t0 per layer, beam-spot trends), drawn with the helpers of this module.

Every axis names its quantity and unit; figures use matplotlib's constrained layout so titles
are never clipped.

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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from PIL import Image

from b2cal_assets.conditions.payloads import STATUS_GOOD  # noqa: E402
from b2cal_assets.validation.rules import CalibrationInputs, CheckOutcome, PayloadRecord, channel_names  # noqa: E402

__all__ = ["FULL_DPI", "THUMBNAIL_MAX_BYTES", "ReportFigure", "ValidationReport", "write_report"]

FULL_DPI = 130
THUMBNAIL_DPI = 42
THUMBNAIL_MAX_BYTES = 60_000  # base64 lands in the event log: keep each embedded plot small
MANY_CHANNELS = 12
ONE_PANEL = (7.0, 4.2)  # inches: 910 x 546 px at FULL_DPI, as the pulls figure


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


def iov_span(payload: PayloadRecord, last_run: int) -> tuple[float, float]:
    """Run range drawn for an IoV: from its first run to its last (open ends stop at the bucket's last run)."""
    iov = payload.iov
    end = iov.final_run if iov.final_exp == iov.first_exp and iov.final_run >= 0 else last_run
    return float(iov.first_run), float(max(end, iov.first_run)) + 1.0


def _by_name(inputs: CalibrationInputs) -> dict[str, list[PayloadRecord]]:
    grouped: dict[str, list[PayloadRecord]] = {}
    for payload in inputs.payloads:
        grouped.setdefault(payload.name, []).append(payload)
    return grouped


def first_previous(payloads: Sequence[PayloadRecord]) -> PayloadRecord | None:
    return payloads[0] if payloads and payloads[0].previous is not None and payloads[0].previous.tag != "this bucket" else None


def _good(payload: PayloadRecord) -> np.ndarray:
    c = payload.constants
    return (c.status == STATUS_GOOD) & np.isfinite(c.value)


def channel_unit(payload: PayloadRecord, channel: str) -> str:
    """Unit of a channel from the payload's ``attributes["units"]`` (a string for every channel,
    or {"position": ..., "covariance": ...} as BeamSpot writes), "" when dimensionless."""
    units = payload.constants.attributes.get("units", "")
    if isinstance(units, dict):
        return str(units.get("covariance" if channel.startswith("cov_") else "position", ""))
    return str(units)


def axis_label(quantity: str, unit: str) -> str:
    return f"{quantity} ({unit})" if unit and unit != "1" else f"{quantity} (dimensionless)"


def new_figure(rows: int = 1, cols: int = 1, *, figsize: tuple[float, float], **kwargs):  # type: ignore[no-untyped-def]
    """(Figure, axes) with constrained layout (titles and labels never clipped), no pyplot."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(rows, cols, **kwargs)


def draw_iov_boundaries(ax, payloads: Sequence[PayloadRecord], last_run: int) -> None:  # type: ignore[no-untyped-def]
    for payload in payloads[1:]:
        ax.axvline(iov_span(payload, last_run)[0], color="0.6", lw=0.8, ls=":")


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
    # One panel alone (a many-channel payload's median) gets the size of the other one-panel
    # figures, not a third of a row: 546 px wide at FULL_DPI was too small to read full size.
    figsize = (4.2 * cols, 2.9 * rows) if cols > 1 else ONE_PANEL
    fig, axes = new_figure(rows, cols, figsize=figsize, squeeze=False)
    for ax, (name, label, payloads, index) in zip(axes.flat, panels):
        for payload in payloads:
            lo, hi = iov_span(payload, last_run)
            c = payload.constants
            if index is None:
                good = _good(payload)
                values = c.value[good]
                mid, low, high = (np.percentile(values, q) if values.size else math.nan for q in (50, 16, 84))
            else:
                mid, low, high = c.value[index], c.value[index] - c.error[index], c.value[index] + c.error[index]
            ax.fill_between([lo, hi], [low, low], [high, high], color="tab:blue", alpha=0.25, lw=0)
            ax.plot([lo, hi], [mid, mid], color="tab:blue", lw=1.6)
        first = first_previous(payloads)
        if first is not None and first.previous is not None:
            p = first.previous.constants
            value = np.nanmedian(p.value[p.status == STATUS_GOOD]) if index is None else p.value[index]
            ax.axhline(value, color="tab:red", ls="--", lw=1.0, label=f"previous rev {first.previous.revision}")
            ax.legend(fontsize=7, loc="best")
        draw_iov_boundaries(ax, payloads, last_run)
        ax.set_title(f"{name}: {label}", fontsize=8)
        ax.set_xlabel("run number", fontsize=7)
        unit = channel_unit(payloads[0], label if index is not None else "")
        ax.set_ylabel(axis_label(label if index is not None else "value", unit), fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{inputs.calibration} {inputs.bucket}: constants vs run (band: +-1 sigma or 16-84 %; dotted: IoV boundaries)", fontsize=10)
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
    fig, ax = new_figure(figsize=(8, 4.2))
    if not changes:
        ax.text(0.5, 0.5, "no previous payload to compare with\n(first calibration of this payload)", ha="center", va="center")
        ax.set_axis_off()
    elif len(inputs.payloads[0].constants.value) <= MANY_CHANNELS:
        names = channel_names(inputs.payloads[0].constants)
        width = 0.8 / len(changes)
        for k, (payload, change, sigma, idx) in enumerate(changes):
            ax.bar(idx + k * width, change / np.where(sigma > 0, sigma, 1), width, label=f"rev {payload.revision} - rev {payload.previous.revision}")  # type: ignore[union-attr]
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=7)
        ax.set_xlabel("channel")
        ax.set_ylabel("(new - previous) / sigma (dimensionless)")
        ax.axhline(0, color="k", lw=0.6)
        ax.legend(fontsize=6, ncol=2)
    else:
        for payload, change, _, _ in changes:
            ax.hist(change, bins=80, histtype="step", label=f"rev {payload.revision} - {payload.previous.label}")  # type: ignore[union-attr]
        ax.set_xlabel(axis_label("new - previous", channel_unit(inputs.payloads[0], "")))
        ax.set_ylabel("channels per bin")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_title(f"{inputs.calibration} {inputs.bucket}: difference to the previous payload", fontsize=10)
    return fig


def fig_pulls(inputs: CalibrationInputs) -> Figure:
    """Pulls of the change vs the previous payload with the unit Gaussian they should follow.
    With nothing to compare with there are no pulls: the values' distribution is shown instead
    (a spread of true constants is not a unit Gaussian, so none is drawn)."""
    changes = _changes(inputs)
    fig, ax = new_figure(figsize=(7, 4.2))
    pulls = np.concatenate([change[sigma > 0] / sigma[sigma > 0] for _, change, sigma, _ in changes]) if changes else np.array([])
    if pulls.size:
        limit = 6.0
        inside = pulls[np.abs(pulls) <= limit]
        bins = np.linspace(-limit, limit, 49 if pulls.size > 200 else 13)
        outside = int(pulls.size - inside.size)
        ax.hist(inside, bins=bins, color="tab:blue", alpha=0.7, label=f"n={pulls.size}, mean {np.mean(pulls):+.2f}, rms {np.std(pulls):.2f}; {outside} beyond +-{limit:.0f}")
        x = np.linspace(-limit, limit, 400)
        ax.plot(x, pulls.size * (bins[1] - bins[0]) * np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi), "r-", lw=1, label="unit Gaussian (same n)")
        ax.set_xlabel("(new - previous) / sqrt(err^2 + err_prev^2) (dimensionless)")
        ax.set_ylabel("channels per bin")
        ax.legend(fontsize=7)
        title = "pulls of the change vs previous"
    else:
        values = [payload.constants.value[_good(payload)] for payload in inputs.payloads]
        values = np.concatenate(values) if values else np.array([])
        if values.size:
            ax.hist(values, bins=60 if values.size > 200 else 12, color="tab:gray", alpha=0.8, label=f"{values.size} good channels")
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "nothing to show", ha="center", va="center")
        ax.set_xlabel(axis_label("value", channel_unit(inputs.payloads[0], "")) if inputs.payloads else "value")
        ax.set_ylabel("channels per bin")
        title = "values (no previous payload: no pulls)"
    ax.set_title(f"{inputs.calibration} {inputs.bucket}: {title}", fontsize=10)
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


def render_png(fig: Figure, path: Path) -> Image.Image:
    """Draw ``fig`` once with Agg at FULL_DPI, write it to ``path`` as PNG; the rendered image.

    One draw serves the PNG, the thumbnail (resampled from it) and the PDF page: the figure's
    constrained layout is frozen after this draw, so the PDF draw does not solve it again (the
    layout is in figure fractions and points, the same at any dpi). Drawing each figure three
    times, a layout solve each, was 2/3 of a report's time.
    """
    canvas = FigureCanvasAgg(fig)
    original_dpi = fig.dpi
    fig.set_dpi(FULL_DPI)
    try:
        canvas.draw()
        image = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")
    finally:
        fig.set_dpi(original_dpi)
    fig.set_layout_engine("none")  # keeps the positions the draw computed
    image.save(path, format="png", dpi=(FULL_DPI, FULL_DPI))
    return image


def _thumbnail(image: Image.Image) -> str:
    """The full-resolution render scaled to THUMBNAIL_DPI (smaller until under the byte limit)."""
    dpi = THUMBNAIL_DPI
    while True:
        scale = dpi / FULL_DPI
        small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        small.save(buffer, format="png")
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
    # Figures of the calibration's own, declared in its module (Calibration.figures).
    from b2cal_assets.calibration.plugins import discover_calibrations

    calibration = discover_calibrations().get(inputs.calibration)
    if calibration is not None and inputs.payloads:
        figures += calibration.figures(list(inputs.payloads), last_run)
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
            image = render_png(fig, partial)
            partial.replace(png)
            pdf.savefig(fig)
            written.append(ReportFigure(name, title, png, _thumbnail(image)))
    partial_pdf.replace(pdf_path)
    return ValidationReport(inputs.calibration, inputs.bucket, directory, pdf_path, tuple(written))
