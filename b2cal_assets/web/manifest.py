"""The review manifest: what a validation report holds, in one small JSON file beside its PNGs.

The report asset writes ``review.json`` into ``<reports_dir>/<bucket>/<calibration>/`` next to
the figures and the PDF: the check outcomes with their numbers and the limits they applied, the
figure and PDF file names, and the change of every constant against the previous revision in
sigma. The review pages read it instead of recomputing checks (which reads every payload
file) on every request, and serve only the files it names.

Pure Python (numpy, json); no Dagster, no web framework.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from b2cal_assets.web.errors import WebError

MANIFEST_NAME = "review.json"
MANIFEST_VERSION = 1
# Payloads with more channels than this show their largest change only, not one row per channel.
LISTED_CHANNELS = 12

# The limits (validation settings keys) each check compares with, shown beside its numbers.
CHECK_LIMIT_KEYS: Mapping[str, tuple[str, ...]] = {
    "fit_converged": ("max_not_converged_fraction",),
    "statistical_precision": ("max_error", "median_error_max", "max_not_enough_data_fraction"),
    "physical_range": ("range",),
    "change_vs_previous": ("change_abs", "change_rel", "change_sigmas", "max_changed_fraction"),
    "iov_coverage": (),
    "bad_channel_fraction": ("max_dead_fraction", "max_hot_fraction"),
    "needs_a_look": ("warn_sigmas", "warn_changed_fraction"),
}


class ManifestError(WebError, ValueError):
    """A review.json that cannot be read (missing fields, wrong version, not JSON)."""


@dataclass(frozen=True)
class ManifestCheck:
    check: str
    severity: str
    passed: bool
    summary: str
    numbers: Mapping[str, Any] = field(default_factory=dict)
    limits: Mapping[str, Any] = field(default_factory=dict)
    failures: tuple[str, ...] = ()

    @property
    def blocking(self) -> bool:
        return self.severity == "ERROR"


@dataclass(frozen=True)
class ManifestFigure:
    name: str
    title: str
    file: str  # a file name inside the report directory, never a path


@dataclass(frozen=True)
class ConstantChange:
    """The largest change of one constant (channel name, or the worst channel of many) in sigma."""

    constant: str
    sigma: float | None  # None: not comparable (flagged or missing channel)
    change: float | None
    previous: float | None
    value: float | None


@dataclass(frozen=True)
class PayloadChange:
    payload: str
    revision: int
    compared_with: str  # e.g. "BeamSpot rev 3 (prompt_running, IoV 26,1,26,-1)"
    channels: int
    constants: tuple[ConstantChange, ...]
    largest_sigma: float | None
    beyond_5_sigma: int


@dataclass(frozen=True)
class ReviewManifest:
    calibration: str
    bucket: str
    bucket_version: str
    calibration_run_id: str
    written_at: str
    checks: tuple[ManifestCheck, ...]
    figures: tuple[ManifestFigure, ...]
    pdf: str | None
    changes: tuple[PayloadChange, ...] = ()

    @property
    def failed_blocking(self) -> tuple[str, ...]:
        return tuple(c.check for c in self.checks if c.blocking and not c.passed)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(c.check for c in self.checks if not c.blocking and not c.passed)

    def file_names(self) -> frozenset[str]:
        """Every file of the report directory the pages may serve."""
        return frozenset([f.file for f in self.figures] + ([self.pdf] if self.pdf else []))


def _finite(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays and tuples to plain JSON; NaN/inf to None (JSON has neither)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in list(value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _finite(value)
    return value if value is None or isinstance(value, str) else str(value)


def payload_changes(payloads: Sequence[Any]) -> list[PayloadChange]:
    """Per payload with a previous revision: every constant's change in sigma
    (|value - previous| / sqrt(error^2 + previous error^2)), channels matched by number, only
    channels GOOD in both. ``payloads``: validation.rules.PayloadRecord objects."""
    changes: list[PayloadChange] = []
    for record in payloads:
        if record.previous is None:
            continue
        c, p = record.constants, record.previous.constants
        names_attr = c.attributes.get("channels")
        names = [str(n) for n in names_attr] if isinstance(names_attr, list) and len(names_attr) == len(c.value) else [str(int(ch)) for ch in c.channel]
        index = {int(ch): i for i, ch in enumerate(p.channel)}
        j = np.array([index.get(int(ch), -1) for ch in c.channel], dtype=np.int64)
        has = j >= 0
        jj = np.where(has, j, 0)
        prev_value, prev_error, prev_status = p.value[jj], p.error[jj], p.status[jj]
        with np.errstate(invalid="ignore", divide="ignore"):
            sigma = np.sqrt(np.nan_to_num(c.error) ** 2 + np.nan_to_num(prev_error) ** 2)
            comparable = has & (c.status == 0) & (prev_status == 0) & np.isfinite(c.value) & np.isfinite(prev_value) & (sigma > 0)
            delta = np.where(comparable, c.value - prev_value, np.nan)
            pulls = np.where(comparable, np.abs(delta) / np.where(sigma > 0, sigma, 1.0), np.nan)
        rows: list[ConstantChange] = []
        if len(c.value) <= LISTED_CHANNELS:
            for i, name in enumerate(names):
                ok = bool(comparable[i])
                rows.append(ConstantChange(name, _finite(pulls[i]) if ok else None, _finite(delta[i]) if ok else None,
                                           _finite(prev_value[i]) if has[i] else None, _finite(c.value[i])))
        elif comparable.any():
            worst = int(np.nanargmax(pulls))
            rows.append(ConstantChange(f"worst channel {names[worst]}", _finite(pulls[worst]), _finite(delta[worst]),
                                       _finite(prev_value[worst]), _finite(c.value[worst])))
        largest = _finite(np.nanmax(pulls)) if comparable.any() else None
        beyond = int(np.sum(np.nan_to_num(pulls, nan=0.0) > 5.0))
        changes.append(PayloadChange(record.name, int(record.revision), record.previous.label, len(c.value), tuple(rows), largest, beyond))
    return changes


def build_manifest(inputs: Any, outcomes: Sequence[Any], settings: Any, figures: Sequence[tuple[str, str, Path]], pdf: Path | None) -> ReviewManifest:
    """The manifest of one report. ``inputs``: CalibrationInputs; ``outcomes``: CheckOutcome list;
    ``settings``: the calibration's ValidationSettings; ``figures``: (name, title, png path)."""
    checks = []
    for outcome in outcomes:
        limits = {key: settings.limit(key) for key in CHECK_LIMIT_KEYS.get(outcome.check, ())}
        checks.append(ManifestCheck(outcome.check, outcome.severity, bool(outcome.passed), outcome.summary,
                                    _jsonable(dict(outcome.numbers)), _jsonable(limits), tuple(outcome.failures)))
    return ReviewManifest(
        calibration=inputs.calibration, bucket=inputs.bucket, bucket_version=str(inputs.bucket_version),
        calibration_run_id=str(inputs.calibration_run_id or ""), written_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        checks=tuple(checks), figures=tuple(ManifestFigure(name, title, Path(png).name) for name, title, png in figures),
        pdf=Path(pdf).name if pdf is not None else None, changes=tuple(payload_changes(inputs.payloads)),
    )


def manifest_to_json(manifest: ReviewManifest) -> dict[str, Any]:
    return {
        "version": MANIFEST_VERSION,
        "calibration": manifest.calibration,
        "bucket": manifest.bucket,
        "bucket_version": manifest.bucket_version,
        "calibration_run_id": manifest.calibration_run_id,
        "written_at": manifest.written_at,
        "checks": [
            {"check": c.check, "severity": c.severity, "passed": c.passed, "summary": c.summary, "numbers": _jsonable(c.numbers),
             "limits": _jsonable(c.limits), "failures": list(c.failures)}
            for c in manifest.checks
        ],
        "figures": [{"name": f.name, "title": f.title, "file": f.file} for f in manifest.figures],
        "pdf": manifest.pdf,
        "changes": [
            {"payload": p.payload, "revision": p.revision, "compared_with": p.compared_with, "channels": p.channels,
             "largest_sigma": p.largest_sigma, "beyond_5_sigma": p.beyond_5_sigma,
             "constants": [{"constant": k.constant, "sigma": k.sigma, "change": k.change, "previous": k.previous, "value": k.value}
                           for k in p.constants]}
            for p in manifest.changes
        ],
    }


def _plain_name(name: Any) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or any(ch in name for ch in "/\\\x00"):
        raise ManifestError(f"file name {name!r} is not a plain file name")
    return name


def manifest_from_json(data: Any) -> ReviewManifest:
    """Parse a manifest; ManifestError on anything unexpected (file names must be plain names)."""
    try:
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"not a version-{MANIFEST_VERSION} review manifest")
        checks = tuple(
            ManifestCheck(str(c["check"]), str(c["severity"]), bool(c["passed"]), str(c["summary"]), dict(c.get("numbers") or {}),
                          dict(c.get("limits") or {}), tuple(str(f) for f in c.get("failures") or ()))
            for c in data["checks"]
        )
        figures = tuple(ManifestFigure(str(f["name"]), str(f["title"]), _plain_name(f["file"])) for f in data["figures"])
        changes = tuple(
            PayloadChange(str(p["payload"]), int(p["revision"]), str(p["compared_with"]), int(p["channels"]),
                          tuple(ConstantChange(str(k["constant"]), k.get("sigma"), k.get("change"), k.get("previous"), k.get("value"))
                                for k in p["constants"]),
                          p.get("largest_sigma"), int(p.get("beyond_5_sigma") or 0))
            for p in data.get("changes") or ()
        )
        return ReviewManifest(
            calibration=str(data["calibration"]), bucket=str(data["bucket"]), bucket_version=str(data["bucket_version"]),
            calibration_run_id=str(data["calibration_run_id"]), written_at=str(data["written_at"]), checks=checks, figures=figures,
            pdf=None if data.get("pdf") is None else _plain_name(data["pdf"]), changes=changes,
        )
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, ManifestError):
            raise
        raise ManifestError(f"malformed review manifest: {error!r}") from None


def write_manifest(directory: Path, manifest: ReviewManifest) -> Path:
    """Write ``review.json`` atomically (readers never see half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST_NAME
    partial = path.with_name(MANIFEST_NAME + ".part")
    partial.write_text(json.dumps(manifest_to_json(manifest), indent=1, allow_nan=False))
    os.replace(partial, path)
    return path


def read_manifest(directory: Path) -> ReviewManifest | None:
    """The manifest in ``directory``; None when there is none yet (ManifestError when unreadable)."""
    try:
        text = (directory / MANIFEST_NAME).read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ManifestError(f"cannot read {directory / MANIFEST_NAME}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ManifestError(f"{directory / MANIFEST_NAME} is not JSON: {error}") from None
    return manifest_from_json(data)
