"""The validation checks of a bucket's calibration constants: plain functions over payloads.

Each check takes the payloads one calibration wrote for one bucket (with the previous IoV's
payload of each, where there is one) and the calibration's :class:`ValidationSettings`, and
returns a :class:`CheckOutcome`: passed or not, a one-line summary, the numbers it compared,
and one line per failure naming the payload revision, the channel and the numbers at fault.
ERROR checks block promotion; WARN checks ask for a human look. Pure Python, no Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from b2cal_assets.conditions.iov import IoV, find_gaps, find_overlaps
from b2cal_assets.conditions.payloads import STATUS_DEAD, STATUS_GOOD, STATUS_HOT, STATUS_NOT_ENOUGH_DATA, PayloadConstants
from b2cal_assets.validation.settings import ValidationSettings

__all__ = [
    "BLOCKING_CHECKS",
    "CHECKS",
    "CalibrationInputs",
    "CheckOutcome",
    "PayloadRecord",
    "PreviousPayload",
    "SEVERITY_ERROR",
    "SEVERITY_WARN",
    "evaluate_calibration",
]

SEVERITY_ERROR = "ERROR"
SEVERITY_WARN = "WARN"
MAX_LISTED_FAILURES = 20  # failures listed per check; the count is always complete


@dataclass(frozen=True)
class PreviousPayload:
    """The payload of the previous IoV a new payload is compared with."""

    name: str
    revision: int
    tag: str
    iov: IoV
    constants: PayloadConstants

    @property
    def label(self) -> str:
        return f"{self.name} rev {self.revision} ({self.tag}, IoV {self.iov})"


@dataclass(frozen=True)
class PayloadRecord:
    """One payload a calibration wrote for the bucket, with its previous IoV's payload."""

    name: str
    revision: int
    iov: IoV
    runs: tuple[str, ...]
    constants: PayloadConstants
    previous: PreviousPayload | None = None

    @property
    def label(self) -> str:
        return f"{self.name} rev {self.revision} (IoV {self.iov})"


@dataclass(frozen=True)
class CalibrationInputs:
    """What the checks of one calibration and bucket look at."""

    calibration: str
    bucket: str
    bucket_version: str
    requested: IoV  # open-ended from the bucket's first run
    produced_payloads: tuple[str, ...]
    payloads: tuple[PayloadRecord, ...]
    calibration_run_id: str = ""
    staging_tag: str = ""


@dataclass(frozen=True)
class CheckOutcome:
    """Result of one check: what Dagster shows on the asset and what promotion reads."""

    check: str
    severity: str
    passed: bool
    summary: str
    numbers: Mapping[str, Any] = field(default_factory=dict)
    failures: tuple[str, ...] = ()

    @property
    def blocking(self) -> bool:
        return self.severity == SEVERITY_ERROR

    def describe(self) -> str:
        state = "passed" if self.passed else ("FAILED" if self.blocking else "WARN")
        return f"{self.check} {state}: {self.summary}"


def channel_names(constants: PayloadConstants) -> list[str]:
    """``attributes["channels"]`` when it names every channel, else the channel numbers."""
    names = constants.attributes.get("channels")
    if isinstance(names, list) and len(names) == len(constants.value):
        return [str(name) for name in names]
    return [str(int(ch)) for ch in constants.channel]


def _per_channel(limits: Mapping[str, Any], names: Sequence[str], default: float = math.nan) -> np.ndarray:
    """Limit per channel from a {channel or "*": limit} mapping (NaN: no limit)."""
    fallback = limits.get("*", default)
    return np.array([float(limits.get(name, fallback)) if limits.get(name, fallback) is not None else math.nan for name in names])


def _ranges(limits: Mapping[str, Any], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    fallback = limits.get("*")
    low = np.full(len(names), -math.inf)
    high = np.full(len(names), math.inf)
    for i, name in enumerate(names):
        bounds = limits.get(name, fallback)
        if bounds is not None:
            low[i], high[i] = float(bounds[0]), float(bounds[1])
    return low, high


def _listed(failures: list[str], total: int) -> tuple[str, ...]:
    listed = failures[:MAX_LISTED_FAILURES]
    if total > len(listed):
        listed.append(f"... and {total - len(listed)} more")
    return tuple(listed)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


# ---------------------------------------------------------------------------------------------
# ERROR checks
# ---------------------------------------------------------------------------------------------


def check_fit_converged(inputs: CalibrationInputs, settings: ValidationSettings) -> CheckOutcome:
    """Every calibration produced its payloads; good channels have finite values and positive
    finite errors; channels whose fit did not converge stay below the limit."""
    limit = float(settings.limit("max_not_converged_fraction"))
    failures: list[str] = []
    numbers: dict[str, Any] = {"payloads": len(inputs.payloads), "max_not_converged_fraction": limit}
    missing = sorted(set(inputs.produced_payloads) - {p.name for p in inputs.payloads})
    if missing:
        failures.append(f"no payload {', '.join(missing)} for bucket {inputs.bucket}: the calibration did not succeed")
    worst = 0.0
    for payload in inputs.payloads:
        c = payload.constants
        good = c.status == STATUS_GOOD
        bad_value = good & ~(np.isfinite(c.value) & np.isfinite(c.error) & (c.error > 0))
        if bad_value.any():
            channels = [channel_names(c)[i] for i in np.flatnonzero(bad_value)[:5]]
            failures.append(f"{payload.label}: {int(bad_value.sum())} good channel(s) with non-finite value or error <= 0 (e.g. {channels})")
        not_converged = c.attributes.get("not_converged_wires") or c.attributes.get("not_converged_channels") or []
        fraction = len(not_converged) / max(len(c.value), 1)
        worst = max(worst, fraction)
        if fraction > limit:
            failures.append(f"{payload.label}: {len(not_converged)} channel fits did not converge ({fraction:.3%} > {limit:.3%})")
        if not good.any():
            failures.append(f"{payload.label}: no channel has status GOOD")
    numbers["worst_not_converged_fraction"] = worst
    passed = not failures
    summary = f"{len(inputs.payloads)} payload(s) converged" if passed else f"{len(failures)} problem(s): {failures[0]}"
    return CheckOutcome("fit_converged", SEVERITY_ERROR, passed, summary, numbers, _listed(failures, len(failures)))


def check_statistical_precision(inputs: CalibrationInputs, settings: ValidationSettings) -> CheckOutcome:
    """Uncertainties within the expert limits: per channel (``max_error``), median over good
    channels (``median_error_max``), and few enough NOT_ENOUGH_DATA channels."""
    max_error = settings.limit("max_error")
    median_max = settings.limit("median_error_max")
    ned_max = float(settings.limit("max_not_enough_data_fraction"))
    failures: list[str] = []
    total_bad = 0
    worst_ratio = 0.0
    worst_median = 0.0
    worst_ned = 0.0
    for payload in inputs.payloads:
        c = payload.constants
        names = channel_names(c)
        good = c.status == STATUS_GOOD
        limits = _per_channel(max_error, names)
        with np.errstate(invalid="ignore"):
            ratio = np.where(np.isfinite(limits) & good, c.error / limits, 0.0)
        worst_ratio = max(worst_ratio, float(np.nanmax(ratio)) if ratio.size else 0.0)
        for i in np.flatnonzero(ratio > 1.0):
            total_bad += 1
            failures.append(
                f"{payload.label} channel {names[i]}: error {_fmt(c.error[i])} > limit {_fmt(limits[i])} "
                f"(value {_fmt(c.value[i])}; runs {', '.join(payload.runs)})"
            )
        if median_max is not None and good.any():
            median = float(np.median(c.error[good]))
            worst_median = max(worst_median, median)
            if median > float(median_max):
                total_bad += 1
                failures.append(f"{payload.label}: median error of good channels {_fmt(median)} > limit {_fmt(float(median_max))}")
        ned = float(np.mean(c.status == STATUS_NOT_ENOUGH_DATA)) if c.status.size else 0.0
        worst_ned = max(worst_ned, ned)
        if ned > ned_max:
            total_bad += 1
            failures.append(f"{payload.label}: {int((c.status == STATUS_NOT_ENOUGH_DATA).sum())} channels NOT_ENOUGH_DATA ({ned:.2%} > {ned_max:.2%})")
    numbers = {
        "worst_error_over_limit": round(worst_ratio, 4),
        "worst_median_error": worst_median,
        "worst_not_enough_data_fraction": worst_ned,
        "max_not_enough_data_fraction": ned_max,
    }
    passed = not failures
    summary = (
        f"every uncertainty within limits (worst error/limit {worst_ratio:.2f})" if passed else f"{total_bad} precision failure(s): {failures[0]}"
    )
    return CheckOutcome("statistical_precision", SEVERITY_ERROR, passed, summary, numbers, _listed(failures, total_bad))


def check_physical_range(inputs: CalibrationInputs, settings: ValidationSettings) -> CheckOutcome:
    """Values of good channels inside their physical range."""
    ranges = settings.limit("range")
    failures: list[str] = []
    total = 0
    checked = 0
    for payload in inputs.payloads:
        c = payload.constants
        names = channel_names(c)
        low, high = _ranges(ranges, names)
        good = (c.status == STATUS_GOOD) & np.isfinite(c.value)
        checked += int(good.sum())
        outside = good & ((c.value < low) | (c.value > high))
        total += int(outside.sum())
        for i in np.flatnonzero(outside)[:MAX_LISTED_FAILURES]:
            failures.append(f"{payload.label} channel {names[i]}: {_fmt(c.value[i])} outside [{_fmt(low[i])}, {_fmt(high[i])}]")
    passed = total == 0
    summary = f"{checked} good channel value(s) in range" if passed else f"{total} value(s) outside their physical range: {failures[0]}"
    return CheckOutcome("physical_range", SEVERITY_ERROR, passed, summary, {"checked": checked, "outside": total}, _listed(failures, total))


def change_significance(
    payload: PayloadRecord, settings: ValidationSettings, *, sigmas_key: str = "change_sigmas"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(change, allowed change, mask of comparable channels, channel names) vs the previous payload.

    The allowed change is max(floor, k sigma): a change fails only when it is both beyond
    ``change_sigmas`` combined standard deviations and beyond the physical floor
    (``change_abs + change_rel * |previous|``). Channels are matched by channel number; both
    must be GOOD and finite to be compared.
    """
    assert payload.previous is not None
    c, p = payload.constants, payload.previous.constants
    names = channel_names(c)
    index = {int(ch): i for i, ch in enumerate(p.channel)}
    j = np.array([index.get(int(ch), -1) for ch in c.channel])
    has = j >= 0
    jj = np.where(has, j, 0)
    prev_value, prev_error, prev_status = p.value[jj], p.error[jj], p.status[jj]
    comparable = has & (c.status == STATUS_GOOD) & (prev_status == STATUS_GOOD) & np.isfinite(c.value) & np.isfinite(prev_value)
    change = np.where(comparable, c.value - prev_value, 0.0)
    sigma = np.sqrt(np.nan_to_num(c.error) ** 2 + np.nan_to_num(prev_error) ** 2)
    # Significant (k sigma) and physically relevant (above the floor): the larger of the two.
    floor = np.nan_to_num(_per_channel(settings.limit("change_abs"), names, 0.0)) + np.nan_to_num(
        _per_channel(settings.limit("change_rel"), names, 0.0)
    ) * np.abs(np.nan_to_num(prev_value))
    allowed = np.maximum(floor, float(settings.limit(sigmas_key)) * sigma)
    return change, allowed, comparable, names


def check_change_vs_previous(inputs: CalibrationInputs, settings: ValidationSettings) -> CheckOutcome:
    """Change with respect to the previous IoV's payload within the configured tolerance.

    The previous payload of a bucket's first IoV is the running tag's payload for the run before
    the bucket; of a later IoV, the bucket's own payload of the IoV before. Each failure names
    the payload revision compared with.
    """
    max_fraction = float(settings.limit("max_changed_fraction"))
    failures: list[str] = []
    compared: list[str] = []
    worst = 0.0
    n_bad = 0
    for payload in inputs.payloads:
        if payload.previous is None:
            continue
        compared.append(f"{payload.label} vs {payload.previous.label}")
        change, allowed, comparable, names = change_significance(payload, settings)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(comparable & (allowed > 0), np.abs(change) / allowed, 0.0)
        worst = max(worst, float(ratio.max()) if ratio.size else 0.0)
        beyond = comparable & (np.abs(change) > allowed)
        fraction = float(beyond.sum()) / max(int(comparable.sum()), 1)
        if beyond.any() and fraction > max_fraction:
            n_bad += int(beyond.sum())
            for i in np.flatnonzero(beyond)[:MAX_LISTED_FAILURES]:
                failures.append(
                    f"{payload.label} channel {names[i]}: changed by {_fmt(change[i])} vs {payload.previous.label}, "
                    f"allowed {_fmt(allowed[i])}"
                )
            if len(change) > 20:
                failures.append(f"{payload.label}: {int(beyond.sum())} of {int(comparable.sum())} channels ({fraction:.3%}) beyond tolerance, allowed {max_fraction:.3%}")
    numbers = {"comparisons": len(compared), "worst_change_over_allowed": round(worst, 4), "compared_with": "; ".join(compared) or "none"}
    passed = not failures
    if passed:
        summary = f"{len(compared)} comparison(s) within tolerance" if compared else "no previous payload to compare with (first calibration)"
    else:
        summary = f"{n_bad} channel change(s) beyond tolerance: {failures[0]}"
    return CheckOutcome("change_vs_previous", SEVERITY_ERROR, passed, summary, numbers, _listed(failures, len(failures)))


def check_iov_coverage(inputs: CalibrationInputs, settings: ValidationSettings) -> CheckOutcome:
    """Per payload name, the IoVs cover the requested range (open-ended from the bucket's first
    run) without gap and without overlap."""
    failures: list[str] = []
    for name in inputs.produced_payloads:
        iovs = [p.iov for p in inputs.payloads if p.name == name]
        if not iovs:
            failures.append(f"{name}: no IoV at all for {inputs.requested}")
            continue
        for gap in find_gaps(iovs, inputs.requested):
            failures.append(f"{name}: gap {gap} (requested {inputs.requested})")
        for first, second in find_overlaps(iovs):
            failures.append(f"{name}: IoVs {first} and {second} overlap")
    passed = not failures
    n_iovs = len(inputs.payloads)
    summary = f"{n_iovs} IoV(s) cover {inputs.requested} without gap or overlap" if passed else f"{len(failures)} coverage problem(s): {failures[0]}"
    return CheckOutcome("iov_coverage", SEVERITY_ERROR, passed, summary, {"iovs": n_iovs, "requested": str(inputs.requested)}, _listed(failures, len(failures)))


def check_bad_channel_fraction(inputs: CalibrationInputs, settings: ValidationSettings) -> CheckOutcome:
    """DEAD and HOT channels below their limits (of all channels of each payload)."""
    limits = {"dead": (STATUS_DEAD, float(settings.limit("max_dead_fraction"))), "hot": (STATUS_HOT, float(settings.limit("max_hot_fraction")))}
    failures: list[str] = []
    numbers: dict[str, Any] = {f"max_{kind}_fraction": limit for kind, (_, limit) in limits.items()}
    for kind, (flag, limit) in limits.items():
        worst = 0.0
        for payload in inputs.payloads:
            c = payload.constants
            flagged = np.flatnonzero(c.status == flag)
            fraction = flagged.size / max(c.value.size, 1)
            worst = max(worst, fraction)
            if fraction > limit:
                channels = ", ".join(str(int(c.channel[i])) for i in flagged[:16])
                failures.append(
                    f"{payload.label}: {flagged.size} {kind} channels ({fraction:.3%} > {limit:.3%}); "
                    f"channels {channels}{' ...' if flagged.size > 16 else ''}"
                )
        numbers[f"{kind}_fraction"] = worst
    passed = not failures
    summary = (
        f"dead {numbers['dead_fraction']:.3%}, hot {numbers['hot_fraction']:.3%} within limits" if passed else f"{len(failures)} payload(s) over the limit: {failures[0]}"
    )
    return CheckOutcome("bad_channel_fraction", SEVERITY_ERROR, passed, summary, numbers, _listed(failures, len(failures)))


# ---------------------------------------------------------------------------------------------
# WARN check
# ---------------------------------------------------------------------------------------------


def check_needs_a_look(inputs: CalibrationInputs, settings: ValidationSettings) -> CheckOutcome:
    """What should not block but a reviewer should see: channels without enough data, several
    runs merged into one payload (low statistics), many channels moving by more than
    ``warn_sigmas`` while still within tolerance, and what the calibration itself asks the
    reviewer to look at (payload attribute ``review_notes``, e.g. a nuisance fit that fell back
    to nominal values)."""
    notes: list[str] = []
    for payload in inputs.payloads:
        c = payload.constants
        notes.extend(f"{payload.label}: {note}" for note in c.attributes.get("review_notes") or [])
        ned = int((c.status == STATUS_NOT_ENOUGH_DATA).sum())
        if ned:
            notes.append(f"{payload.label}: {ned} channel(s) NOT_ENOUGH_DATA")
        if len(payload.runs) > 1 and len(inputs.payloads) > 1:
            notes.append(f"{payload.label}: runs {', '.join(payload.runs)} were merged (not enough data in one run)")
        if payload.previous is not None:
            change, _, comparable, _ = change_significance(payload, settings)
            sigma = np.sqrt(np.nan_to_num(c.error) ** 2)
            prev_sigma = np.zeros_like(sigma)
            index = {int(ch): i for i, ch in enumerate(payload.previous.constants.channel)}
            for k, ch in enumerate(c.channel):
                if int(ch) in index:
                    prev_sigma[k] = np.nan_to_num(payload.previous.constants.error[index[int(ch)]])
            combined = np.sqrt(sigma**2 + prev_sigma**2)
            with np.errstate(invalid="ignore", divide="ignore"):
                pulls = np.where(comparable & (combined > 0), np.abs(change) / combined, 0.0)
            moved = int((pulls > float(settings.limit("warn_sigmas"))).sum())
            if moved and moved / max(int(comparable.sum()), 1) > float(settings.limit("warn_changed_fraction")):
                notes.append(f"{payload.label}: {moved} channel(s) moved by > {settings.limit('warn_sigmas')} sigma vs {payload.previous.label}")
    passed = not notes
    summary = "nothing unusual" if passed else f"{len(notes)} note(s): {notes[0]}"
    return CheckOutcome("needs_a_look", SEVERITY_WARN, passed, summary, {"notes": len(notes)}, _listed(notes, len(notes)))


CheckFunction = Callable[[CalibrationInputs, ValidationSettings], CheckOutcome]

CHECKS: dict[str, tuple[str, CheckFunction, str]] = {
    "fit_converged": (SEVERITY_ERROR, check_fit_converged, "The calibration produced its payloads and every good channel's fit converged."),
    "statistical_precision": (SEVERITY_ERROR, check_statistical_precision, "Uncertainties within the expert_config limits."),
    "physical_range": (SEVERITY_ERROR, check_physical_range, "Constants inside their physical range."),
    "change_vs_previous": (SEVERITY_ERROR, check_change_vs_previous, "Change vs the previous IoV's payload within tolerance (names the revision compared with)."),
    "iov_coverage": (SEVERITY_ERROR, check_iov_coverage, "IoVs cover the bucket's requested range with no gap or overlap."),
    "bad_channel_fraction": (SEVERITY_ERROR, check_bad_channel_fraction, "Dead and hot channel fractions below their limits."),
    "needs_a_look": (SEVERITY_WARN, check_needs_a_look, "Not blocking: what a reviewer should look at."),
}
BLOCKING_CHECKS: tuple[str, ...] = tuple(name for name, (severity, _, _) in CHECKS.items() if severity == SEVERITY_ERROR)


def evaluate_calibration(inputs: CalibrationInputs, settings: ValidationSettings) -> list[CheckOutcome]:
    """Every check of one calibration and bucket, in CHECKS order."""
    return [function(inputs, settings) for _, function, _ in CHECKS.values()]


def missing_result_outcomes(calibration: str, bucket: str, reason: str) -> list[CheckOutcome]:
    """Every check failed, for a calibration with nothing to check (no successful result)."""
    return [
        CheckOutcome(name, severity, False, f"{calibration} has no result for bucket {bucket}: {reason}", {}, (reason,))
        for name, (severity, _, _) in CHECKS.items()
    ]
