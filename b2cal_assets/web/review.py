"""What the review pages show: pure page logic over facts read from the stores.

The handlers (``console.py``) ask a :class:`ReviewSource` for facts (buckets, calibration
results, staging tags, review manifests, runs) and hand them to the functions here, which
decide every cell's state and build plain view objects for the templates. No database,
web framework or Dagster import: the tests feed facts directly.

Cell states, per (bucket, calibration), in the order they are decided:

* ``rejected``: the bucket's newest staging tag is INVALID (a reviewer rejected it);
* ``promoted``: the newest staging tag is VALIDATED (or later), by the approver recorded;
* ``collecting``: the bucket is open, or the calibration has no result yet;
* ``calibrated``: a result exists but is for an older bucket version, or its report is not
  written yet;
* ``checks failed``: the report's blocking checks failed (named);
* ``awaiting sign-off``: closed, calibrated on the final version, every blocking check passed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from b2cal_assets.conditions.staging import STAGING_TAG_PREFIX, parse_staging_tag
from b2cal_assets.web.errors import WebError

from .manifest import ReviewManifest

BUCKET_KEY = re.compile(r"^e\d{4}\.b\d{4}$")
STAGING_PREFIX = STAGING_TAG_PREFIX
PROMOTED_STATES = frozenset({"VALIDATED", "PUBLISHED", "RUNNING"})
PAGE_SIZES = (20, 50, 100, 200, 1000)
DEFAULT_PAGE_SIZE = 50


class CellState(StrEnum):
    COLLECTING = "collecting"
    CALIBRATED = "calibrated"
    CHECKS_FAILED = "checks failed"
    AWAITING = "awaiting sign-off"
    PROMOTED = "promoted"
    REJECTED = "rejected"

    @property
    def css(self) -> str:
        return self.value.replace(" ", "-").replace("-off", "")


# -- facts (what the stores say) -------------------------------------------------------------------


@dataclass(frozen=True)
class BucketFacts:
    key: str
    exp: int
    number: int
    closed: bool
    opened_at: datetime | None
    closed_at: datetime | None
    n_runs: int
    luminosity_pb: float
    first_run: int | None
    last_run: int | None
    close_reason: str = ""

    @property
    def version(self) -> str:
        """As BucketVersion renders it: run count and o(pen)/c(losed)."""
        return f"{self.n_runs}{'c' if self.closed else 'o'}"


@dataclass(frozen=True)
class ResultFacts:
    """The latest successful result of one calibration on one bucket."""

    calibration: str
    bucket: str
    bucket_version: str
    dagster_run_id: str
    created_at: datetime | None
    payloads: tuple[Mapping[str, Any], ...]  # {name, revision, iov, runs, md5}
    runs: tuple[str, ...]


@dataclass(frozen=True)
class TagChange:
    from_state: str | None
    to_state: str
    reason: str
    changed_at: datetime | None


@dataclass(frozen=True)
class TagFacts:
    name: str
    state: str
    updated_at: datetime | None
    iov_count: int = 0
    history: tuple[TagChange, ...] = ()


@dataclass(frozen=True)
class RunFacts:
    key: str
    status: str
    reason: str
    data_quality: str
    run_type: str
    luminosity_pb: float
    events: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class CalibrationInfo:
    """A calibration as the pages name it: its asset key path in the Dagster UI."""

    name: str
    subsystem: str


class ReviewSource(Protocol):
    """What the pages read. ``queries.StoreReviewSource`` implements it over the platform stores."""

    def calibrations(self) -> Sequence[CalibrationInfo]: ...

    def experiments(self) -> Sequence[int]: ...

    def count_buckets(self, exp: int | None) -> int: ...

    def buckets(self, exp: int | None, offset: int, limit: int | None) -> Sequence[BucketFacts]: ...

    def bucket(self, key: str) -> BucketFacts | None: ...

    def latest_results(self, buckets: Sequence[str]) -> Mapping[tuple[str, str], ResultFacts]: ...

    def staging_tags(self, buckets: Sequence[str]) -> Mapping[str, TagFacts]: ...

    def global_tags(self) -> Sequence[TagFacts]: ...

    def manifest(self, bucket: str, calibration: str) -> ReviewManifest | None: ...

    def runs(self, run_keys: Sequence[str]) -> Sequence[RunFacts]: ...

    def bucket_runs(self, bucket: str) -> Sequence[str]: ...


# -- derived ------------------------------------------------------------------------------------------


def staging_attempt(tag: str, bucket: str) -> int | None:
    """1 for ``staging_prompt_<bucket>``, n for ``..._v<n>``; None for another bucket's tag."""
    parsed = parse_staging_tag(tag)
    return parsed.attempt if parsed is not None and parsed.bucket == bucket else None


def newest_staging(tags: Iterable[TagFacts], bucket: str) -> TagFacts | None:
    """The bucket's staging tag of the highest attempt (what the review is about)."""
    best: tuple[int, TagFacts] | None = None
    for tag in tags:
        attempt = staging_attempt(tag.name, bucket)
        if attempt is not None and (best is None or attempt > best[0]):
            best = (attempt, tag)
    return best[1] if best else None


_VALIDATED_BY = re.compile(r"^validated by (?P<who>.+?)(?: \(roles [^)]*\))?(?: \[DEMO SIGN-OFF\])?: ")
_REJECTED_BY = re.compile(r"^rejected by (?P<who>.+?)(?: \(roles [^)]*\))?(?: \[DEMO SIGN-OFF\])?: (?P<reason>.*)$", re.S)


def decision_of(tag: TagFacts | None) -> tuple[str | None, str | None, datetime | None]:
    """(who, reason, when) of the staging tag's sign-off or rejection, from its history."""
    if tag is None:
        return None, None, None
    for change in reversed(tag.history):
        if change.to_state == "VALIDATED":
            match = _VALIDATED_BY.match(change.reason)
            return (match.group("who") if match else change.reason), None, change.changed_at
        if change.to_state == "INVALID":
            match = _REJECTED_BY.match(change.reason)
            if match:
                return match.group("who"), match.group("reason"), change.changed_at
            return None, change.reason, change.changed_at
    return None, None, None


@dataclass(frozen=True)
class Cell:
    calibration: str
    state: CellState
    detail: str = ""
    failed_checks: tuple[str, ...] = ()
    run_count: int = 0
    dagster_run_id: str = ""
    asset_url: str = ""
    run_url: str = ""


def cell_state(bucket: BucketFacts, result: ResultFacts | None, staging: TagFacts | None,
               manifest: ReviewManifest | None) -> tuple[CellState, str, tuple[str, ...]]:
    """(state, detail, failed blocking checks) of one calibration on one bucket (module doc)."""
    if staging is not None and staging.state == "INVALID":
        who, reason, _ = decision_of(staging)
        return CellState.REJECTED, f"by {who}" if who else (reason or ""), ()
    if staging is not None and staging.state in PROMOTED_STATES:
        who, _, _ = decision_of(staging)
        return CellState.PROMOTED, f"by {who}" if who else "", ()
    if not bucket.closed:
        detail = f"calibrated on {result.bucket_version[:-1]} run(s) so far" if result else "bucket open"
        return CellState.COLLECTING, detail, ()
    if result is None:
        return CellState.COLLECTING, "no result yet", ()
    if result.bucket_version != bucket.version:
        return CellState.CALIBRATED, f"on version {result.bucket_version}; recalibration due", ()
    if manifest is None or (manifest.calibration_run_id and manifest.calibration_run_id != result.dagster_run_id):
        return CellState.CALIBRATED, "report pending", ()
    failed = manifest.failed_blocking
    if failed:
        return CellState.CHECKS_FAILED, ", ".join(failed), failed
    return CellState.AWAITING, "all blocking checks passed", ()


def age_text(since: datetime | None, now: datetime) -> str:
    """'3 d', '5 h', '12 min' since ``since``."""
    if since is None:
        return "-"
    seconds = max(0.0, (now - since).total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min"


@dataclass(frozen=True)
class Links:
    """URLs of the pages and of the Dagster UI, both under the proxy's path prefix (same origin)."""

    prefix: str = ""  # the webserver's -l prefix, e.g. /dagster

    @property
    def web(self) -> str:
        return f"{self.prefix}/b2cal"

    def overview(self, **query: Any) -> str:
        params = {k: v for k, v in query.items() if v not in (None, "") and not (k == "page" and v == 1)}
        return f"{self.web}/" + (f"?{urlencode(params)}" if params else "")

    def bucket(self, key: str) -> str:
        return f"{self.web}/buckets/{quote(key, safe='')}"

    def file(self, bucket: str, calibration: str, name: str) -> str:
        return f"{self.web}/files/{quote(bucket, safe='')}/{quote(calibration, safe='')}/{quote(name, safe='')}"

    def asset(self, calibration: CalibrationInfo, bucket: str | None = None) -> str:
        path = f"{self.prefix}/assets/{quote(calibration.subsystem, safe='')}/{quote(calibration.name, safe='')}"
        return path + (f"?{urlencode({'partition': bucket})}" if bucket else "")

    def report_asset(self, calibration: CalibrationInfo, bucket: str) -> str:
        return (f"{self.prefix}/assets/validation/{quote(calibration.subsystem, safe='')}/{quote(calibration.name + '_report', safe='')}"
                f"?{urlencode({'partition': bucket})}")

    def promotion_asset(self, bucket: str) -> str:
        return f"{self.prefix}/assets/validation/bucket_promotion?{urlencode({'partition': bucket})}"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}/runs/{quote(run_id, safe='')}"


# -- overview -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverviewRow:
    bucket: BucketFacts
    cells: tuple[Cell, ...]
    staging: TagFacts | None
    age: str
    url: str

    @property
    def states(self) -> frozenset[CellState]:
        return frozenset(c.state for c in self.cells)


@dataclass(frozen=True)
class Overview:
    calibrations: tuple[CalibrationInfo, ...]
    rows: tuple[OverviewRow, ...]
    tags: tuple[TagFacts, ...]
    experiments: tuple[int, ...]
    exp: int | None
    state: CellState | None
    page: int
    pages: int
    per_page: int
    total: int
    counts: Mapping[str, int] = field(default_factory=dict)  # state -> cells on this page


class BadQuery(WebError, ValueError):
    """A query parameter the overview cannot use (the page answers 400 with this message)."""


def parse_overview_query(query: Mapping[str, str]) -> tuple[int | None, CellState | None, int, int]:
    """(exp, state, page, per_page) from the query string; BadQuery names the bad parameter."""
    exp: int | None = None
    if query.get("exp"):
        if not query["exp"].isdigit() or len(query["exp"]) > 4:
            raise BadQuery(f"exp={query['exp']!r}: give an experiment number, e.g. exp=26")
        exp = int(query["exp"])
    state: CellState | None = None
    if query.get("state"):
        try:
            state = CellState(query["state"])
        except ValueError:
            raise BadQuery(f"state={query['state']!r}: one of {', '.join(s.value for s in CellState)}") from None
    page = 1
    if query.get("page"):
        if not query["page"].isdigit() or int(query["page"]) < 1 or len(query["page"]) > 6:
            raise BadQuery(f"page={query['page']!r}: a page number from 1")
        page = int(query["page"])
    per_page = DEFAULT_PAGE_SIZE
    if query.get("per_page"):
        if not query["per_page"].isdigit() or int(query["per_page"]) not in PAGE_SIZES:
            raise BadQuery(f"per_page={query['per_page']!r}: one of {', '.join(map(str, PAGE_SIZES))}")
        per_page = int(query["per_page"])
    return exp, state, page, per_page


def _row(bucket: BucketFacts, calibrations: Sequence[CalibrationInfo], results: Mapping[tuple[str, str], ResultFacts],
         staging: TagFacts | None, source: ReviewSource, links: Links, now: datetime) -> OverviewRow:
    cells = []
    for calibration in calibrations:
        result = results.get((bucket.key, calibration.name))
        # The manifest is read only where it can change the state (a closed bucket's current result).
        needs_manifest = (result is not None and bucket.closed and result.bucket_version == bucket.version
                          and not (staging is not None and (staging.state == "INVALID" or staging.state in PROMOTED_STATES)))
        manifest = source.manifest(bucket.key, calibration.name) if needs_manifest else None
        state, detail, failed = cell_state(bucket, result, staging, manifest)
        run_id = result.dagster_run_id if result else ""
        cells.append(Cell(calibration.name, state, detail, failed, len(result.runs) if result else 0, run_id,
                          links.asset(calibration, bucket.key), links.run(run_id) if run_id else ""))
    return OverviewRow(bucket, tuple(cells), staging, age_text(bucket.opened_at, now), links.bucket(bucket.key))


def build_overview(source: ReviewSource, links: Links, query: Mapping[str, str], now: datetime | None = None) -> Overview:
    """The overview page: buckets newest first x calibrations, filtered and paginated."""
    now = now or datetime.now(timezone.utc)
    exp, state, page, per_page = parse_overview_query(query)
    calibrations = tuple(source.calibrations())
    if state is None:
        total = source.count_buckets(exp)
        pages = max(1, math.ceil(total / per_page))
        page = min(page, pages)
        buckets = list(source.buckets(exp, (page - 1) * per_page, per_page))
        keys = [b.key for b in buckets]
        results = source.latest_results(keys)
        staging = source.staging_tags(keys)
        rows = [_row(b, calibrations, results, staging.get(b.key), source, links, now) for b in buckets]
    else:
        # A state is derived, not stored: derive every bucket of the experiment, then page.
        buckets = list(source.buckets(exp, 0, None))
        keys = [b.key for b in buckets]
        results = source.latest_results(keys)
        staging = source.staging_tags(keys)
        every = [_row(b, calibrations, results, staging.get(b.key), source, links, now) for b in buckets]
        matching = [r for r in every if state in r.states]
        total = len(matching)
        pages = max(1, math.ceil(total / per_page))
        page = min(page, pages)
        rows = matching[(page - 1) * per_page: page * per_page]
    counts: dict[str, int] = {}
    for row in rows:
        for cell in row.cells:
            counts[cell.state.value] = counts.get(cell.state.value, 0) + 1
    return Overview(calibrations, tuple(rows), tuple(source.global_tags()), tuple(source.experiments()), exp, state, page, pages,
                    per_page, total, counts)


# -- bucket page ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PayloadRow:
    name: str
    revision: int
    iov: str
    runs: int
    md5: str


@dataclass(frozen=True)
class CalibrationSection:
    info: CalibrationInfo
    cell: Cell
    result: ResultFacts | None
    manifest: ReviewManifest | None
    payloads: tuple[PayloadRow, ...]
    figures: tuple[tuple[str, str], ...]  # (title, url)
    pdf_url: str | None
    asset_url: str
    report_url: str
    run_url: str


@dataclass(frozen=True)
class RunRow:
    run: RunFacts | None
    key: str
    used_by: tuple[str, ...]


@dataclass(frozen=True)
class BucketPage:
    bucket: BucketFacts
    staging: TagFacts | None
    decided_by: str | None
    decision_reason: str | None
    decided_at: datetime | None
    sections: tuple[CalibrationSection, ...]
    runs: tuple[RunRow, ...]
    age: str
    promotion_url: str

    @property
    def states(self) -> frozenset[CellState]:
        return frozenset(s.cell.state for s in self.sections)

    @property
    def awaiting_sign_off(self) -> bool:
        return bool(self.sections) and all(s.cell.state is CellState.AWAITING for s in self.sections)

    @property
    def rejectable(self) -> bool:
        """Something to reject: a staging tag not yet decided."""
        return self.staging is not None and self.staging.state in ("OPEN", "TESTING")


class UnknownBucket(WebError, LookupError):
    """No bucket with this key (the page answers 404)."""


def build_bucket_page(source: ReviewSource, links: Links, key: str, now: datetime | None = None) -> BucketPage:
    """Everything of one bucket: plots, checks, payloads, changes, runs. UnknownBucket if absent."""
    now = now or datetime.now(timezone.utc)
    if not BUCKET_KEY.match(key):
        raise UnknownBucket(f"{key!r} is not a bucket key (e0026.b0001)")
    bucket = source.bucket(key)
    if bucket is None:
        raise UnknownBucket(f"no bucket {key}")
    results = source.latest_results([key])
    staging = source.staging_tags([key]).get(key)
    sections = []
    used: dict[str, list[str]] = {}
    for info in source.calibrations():
        result = results.get((key, info.name))
        manifest = source.manifest(key, info.name)
        state, detail, failed = cell_state(bucket, result, staging, manifest)
        run_id = result.dagster_run_id if result else ""
        cell = Cell(info.name, state, detail, failed, len(result.runs) if result else 0, run_id,
                    links.asset(info, key), links.run(run_id) if run_id else "")
        payloads = tuple(
            PayloadRow(str(p.get("name")), int(p.get("revision") or 0), str(p.get("iov")), len(p.get("runs") or ()), str(p.get("md5") or ""))
            for p in (result.payloads if result else ())
        )
        figures = tuple((f.title, links.file(key, info.name, f.file)) for f in manifest.figures) if manifest else ()
        pdf = links.file(key, info.name, manifest.pdf) if manifest and manifest.pdf else None
        sections.append(CalibrationSection(info, cell, result, manifest, payloads, figures, pdf, links.asset(info, key),
                                           links.report_asset(info, key), cell.run_url))
        for run in result.runs if result else ():
            used.setdefault(run, []).append(info.name)
    run_keys = list(source.bucket_runs(key))
    known = {r.key: r for r in source.runs(run_keys)}
    runs = tuple(RunRow(known.get(r), r, tuple(used.get(r, ()))) for r in run_keys)
    who, reason, when = decision_of(staging)
    return BucketPage(bucket, staging, who, reason, when, tuple(sections), runs, age_text(bucket.opened_at, now), links.promotion_asset(key))


def format_number(value: Any) -> str:
    """Numbers for the checks tables: 4 significant digits, other values as text."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_number(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_number(v) for v in value) + "]"
    return str(value)
