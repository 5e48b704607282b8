"""Fast tests of the review pages' pure logic: cell states, overview filters and pagination,
the bucket page, decisions read from tag histories, the anti-forgery guard, the manifest."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jinja2
import numpy as np
import pytest

from b2cal_assets.conditions.iov import IoV
from b2cal_assets.conditions.payloads import PayloadConstants
from b2cal_assets.validation.rules import PayloadRecord, PreviousPayload
from b2cal_assets.web.guard import ActionGuard, ActionRefused, cross_site, same_origin
from b2cal_assets.web.manifest import (
    ManifestCheck,
    ManifestError,
    ManifestFigure,
    ReviewManifest,
    manifest_from_json,
    manifest_to_json,
    payload_changes,
    read_manifest,
    write_manifest,
)
from b2cal_assets.web.review import (
    BadQuery,
    BucketFacts,
    CalibrationInfo,
    CellState,
    Links,
    ResultFacts,
    RunFacts,
    TagChange,
    TagFacts,
    UnknownBucket,
    build_bucket_page,
    build_overview,
    cell_state,
    decision_of,
    newest_staging,
    parse_overview_query,
)

NOW = datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc)
CALS = (CalibrationInfo("BeamSpot", "beam"), CalibrationInfo("CDCTimeZero", "cdc"))


def bucket(n: int, *, exp: int = 26, closed: bool = True, runs: int = 3) -> BucketFacts:
    return BucketFacts(f"e{exp:04d}.b{n:04d}", exp, n, closed, NOW - timedelta(days=n), None, runs, 12.5, 3 * n - 2, 3 * n)


def result(b: BucketFacts, calibration: str, version: str | None = None, run_id: str = "run-1") -> ResultFacts:
    return ResultFacts(calibration, b.key, version or b.version, run_id, NOW, ({"name": calibration, "revision": 2, "iov": "26,1,-1,-1",
                                                                             "runs": ["e0026.r00001"], "md5": "ab"},), ("e0026.r00001",))


def manifest(b: BucketFacts, calibration: str, failed: Sequence[str] = (), run_id: str = "run-1") -> ReviewManifest:
    checks = tuple(ManifestCheck(name, "ERROR", name not in failed, f"{name} summary <b>x</b>", {"worst": 1.5}, {"max": 2})
                   for name in ("fit_converged", "physical_range", "change_vs_previous"))
    return ReviewManifest(calibration, b.key, b.version, run_id, "2026-11-29T06:00:00+00:00", checks,
                          (ManifestFigure("pulls", "Pulls", f"{calibration}_pulls.png"),), f"{calibration}_{b.key}_validation.pdf")


def tag(name: str, state: str, *history: tuple[str, str]) -> TagFacts:
    return TagFacts(name, state, NOW, 0, tuple(TagChange(None, to, reason, NOW) for to, reason in history))


@dataclass
class FakeSource:
    """Facts in memory (what the store queries would return)."""

    rows: list[BucketFacts]
    results: dict[tuple[str, str], ResultFacts] = field(default_factory=dict)
    tags: dict[str, TagFacts] = field(default_factory=dict)
    manifests: dict[tuple[str, str], ReviewManifest] = field(default_factory=dict)
    manifest_reads: int = 0

    def calibrations(self) -> Sequence[CalibrationInfo]:
        return CALS

    def experiments(self) -> Sequence[int]:
        return sorted({b.exp for b in self.rows}, reverse=True)

    def _filtered(self, exp: int | None) -> list[BucketFacts]:
        return sorted((b for b in self.rows if exp is None or b.exp == exp), key=lambda b: (b.exp, b.number), reverse=True)

    def count_buckets(self, exp: int | None) -> int:
        return len(self._filtered(exp))

    def buckets(self, exp: int | None, offset: int, limit: int | None) -> Sequence[BucketFacts]:
        rows = self._filtered(exp)[offset:]
        return rows if limit is None else rows[:limit]

    def bucket(self, key: str) -> BucketFacts | None:
        return next((b for b in self.rows if b.key == key), None)

    def latest_results(self, buckets: Sequence[str]) -> Mapping[tuple[str, str], ResultFacts]:
        return {k: v for k, v in self.results.items() if k[0] in buckets}

    def staging_tags(self, buckets: Sequence[str]) -> Mapping[str, TagFacts]:
        return {b: t for b, t in self.tags.items() if b in buckets}

    def global_tags(self) -> Sequence[TagFacts]:
        return [tag("prompt_running", "RUNNING")]

    def manifest(self, bucket: str, calibration: str) -> ReviewManifest | None:
        self.manifest_reads += 1
        return self.manifests.get((bucket, calibration))

    def runs(self, run_keys: Sequence[str]) -> Sequence[RunFacts]:
        return [RunFacts(k, "ingested", "", "Good", "physics", 4.2, 50_000) for k in run_keys if k != "e0026.r00003"]

    def bucket_runs(self, bucket: str) -> Sequence[str]:
        return ["e0026.r00001", "e0026.r00002", "e0026.r00003"]


# -- cell states ---------------------------------------------------------------------------------------


def test_open_bucket_is_collecting_even_when_calibrated():
    b = bucket(1, closed=False)
    state, detail, _ = cell_state(b, result(b, "BeamSpot"), None, None)
    assert state is CellState.COLLECTING and "3 run(s)" in detail


def test_closed_bucket_without_result_is_collecting():
    assert cell_state(bucket(1), None, None, None)[0] is CellState.COLLECTING


def test_result_for_an_older_version_is_calibrated_with_recalibration_due():
    b = bucket(1)
    state, detail, _ = cell_state(b, result(b, "BeamSpot", version="2o"), None, None)
    assert state is CellState.CALIBRATED and "recalibration due" in detail


def test_report_of_another_calibration_run_counts_as_pending():
    b = bucket(1)
    state, detail, _ = cell_state(b, result(b, "BeamSpot", run_id="new"), None, manifest(b, "BeamSpot", run_id="old"))
    assert state is CellState.CALIBRATED and detail == "report pending"


def test_failed_blocking_checks_are_named():
    b = bucket(1)
    state, detail, failed = cell_state(b, result(b, "BeamSpot"), None, manifest(b, "BeamSpot", failed=["physical_range"]))
    assert state is CellState.CHECKS_FAILED and failed == ("physical_range",) and detail == "physical_range"


def test_all_checks_passed_on_a_closed_bucket_awaits_sign_off():
    b = bucket(1)
    assert cell_state(b, result(b, "BeamSpot"), tag("staging_prompt_e0026.b0001", "TESTING"), manifest(b, "BeamSpot"))[0] is CellState.AWAITING


def test_validated_staging_tag_is_promoted_by_the_recorded_approver():
    b = bucket(1)
    staging = tag("staging_prompt_e0026.b0001", "VALIDATED", ("TESTING", "frozen"),
                  ("VALIDATED", "validated by reviewer (roles reviewer): every blocking check passed (dagster run x)"))
    state, detail, _ = cell_state(b, result(b, "BeamSpot"), staging, manifest(b, "BeamSpot", failed=["fit_converged"]))
    assert state is CellState.PROMOTED and detail == "by reviewer"


def test_invalid_staging_tag_is_rejected_with_who_and_reason():
    staging = tag("staging_prompt_e0026.b0001", "INVALID", ("INVALID", "rejected by admin (roles admin): drift <script>x</script>"))
    assert decision_of(staging)[:2] == ("admin", "drift <script>x</script>")
    assert cell_state(bucket(1), None, staging, None)[0] is CellState.REJECTED


def test_newest_staging_attempt_wins_and_other_buckets_are_ignored():
    tags = [tag("staging_prompt_e0026.b0001", "INVALID"), tag("staging_prompt_e0026.b0001_v2", "OPEN"), tag("staging_prompt_e0026.b0011", "OPEN")]
    assert newest_staging(tags, "e0026.b0001").name == "staging_prompt_e0026.b0001_v2"


# -- overview --------------------------------------------------------------------------------------------


def source_with(n: int) -> FakeSource:
    rows = [bucket(i) for i in range(1, n + 1)] + [bucket(1, exp=24)]
    source = FakeSource(rows)
    for b in rows:
        for c in CALS:
            source.results[(b.key, c.name)] = result(b, c.name)
            source.manifests[(b.key, c.name)] = manifest(b, c.name, failed=["fit_converged"] if b.number % 3 == 0 else ())
    return source


def test_overview_lists_newest_first_and_paginates():
    overview = build_overview(source_with(120), Links("/dagster"), {"per_page": "50", "page": "2"}, NOW)
    assert overview.total == 121 and overview.pages == 3 and overview.page == 2
    assert [r.bucket.key for r in overview.rows[:2]] == ["e0026.b0070", "e0026.b0069"]
    assert overview.rows[0].url == "/dagster/b2cal/buckets/e0026.b0070"
    cell = overview.rows[0].cells[0]
    assert cell.asset_url == "/dagster/assets/beam/BeamSpot?partition=e0026.b0070" and cell.run_url == "/dagster/runs/run-1"


def test_overview_filters_by_experiment_and_state():
    source = source_with(30)
    assert [r.bucket.key for r in build_overview(source, Links(), {"exp": "24"}, NOW).rows] == ["e0024.b0001"]
    failed = build_overview(source, Links(), {"state": "checks failed"}, NOW)
    assert failed.total == 10 and all(r.bucket.number % 3 == 0 for r in failed.rows)


def test_overview_reads_manifests_only_for_the_page():
    source = source_with(200)
    build_overview(source, Links(), {}, NOW)
    assert source.manifest_reads == 50 * len(CALS)


def test_overview_links_keep_every_filter():
    assert Links("/d").overview(exp=1, state="checks failed", per_page=None, page=1) == "/d/b2cal/?exp=1&state=checks+failed"
    assert Links().overview(page=2) == "/b2cal/?page=2"


@pytest.mark.parametrize("query", [{"exp": "x"}, {"state": "nope"}, {"page": "0"}, {"per_page": "7"}])
def test_bad_overview_query_names_the_parameter(query):
    with pytest.raises(BadQuery, match=next(iter(query))):
        parse_overview_query(query)


# -- bucket page -----------------------------------------------------------------------------------------


def test_bucket_page_has_every_plot_pdf_payload_and_run():
    source = source_with(2)
    page = build_bucket_page(source, Links(), "e0026.b0001", NOW)
    assert page.awaiting_sign_off
    assert [s.figures for s in page.sections] == [(("Pulls", "/b2cal/files/e0026.b0001/BeamSpot/BeamSpot_pulls.png"),),
                                                   (("Pulls", "/b2cal/files/e0026.b0001/CDCTimeZero/CDCTimeZero_pulls.png"),)]
    assert page.sections[0].pdf_url == "/b2cal/files/e0026.b0001/BeamSpot/BeamSpot_e0026.b0001_validation.pdf"
    assert page.sections[0].payloads[0].revision == 2
    assert [(r.key, r.run is not None, r.used_by) for r in page.runs] == [
        ("e0026.r00001", True, ("BeamSpot", "CDCTimeZero")), ("e0026.r00002", True, ()), ("e0026.r00003", False, ())]


@pytest.mark.parametrize("key", ["../etc", "e0026.b0009", "E0026.b0001"])
def test_unknown_or_malformed_bucket_is_refused(key):
    with pytest.raises(UnknownBucket):
        build_bucket_page(source_with(2), Links(), key, NOW)


def test_templates_escape_markup_from_the_stores():
    source = source_with(1)
    source.tags["e0026.b0001"] = tag("staging_prompt_e0026.b0001", "INVALID", ("INVALID", "rejected by admin: <img src=x onerror=alert(1)>"))
    page = build_bucket_page(source, Links(), "e0026.b0001", NOW)
    env = jinja2.Environment(loader=jinja2.PackageLoader("b2cal_assets.web", "templates"), autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = str
    env.filters["when"] = str

    @dataclass
    class P:
        dn: str = "/CN=x"
        username: str = "x"
        roles_tag: str = "viewer"

    html = env.get_template("bucket.html").render(
        p=page, actions={}, repository=None, runs=[], current=None, launch_query="", running_tag="prompt_running", refresh=False,
        token_header="X", nonce_header="Y", states=CellState, action_params={}, links=Links(), principal=P(), is_admin=False,
        dagster_home="/", csrf_token="t")
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html  # a check summary with markup


# -- guard -----------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nonce_is_single_use_and_bound_to_session_and_user():
    guard = ActionGuard(b"k" * 32)
    session = guard.new_session()
    nonce = guard.issue(session, "/CN=rev", "e0026.b0001", "sign-off")
    guard.check(session=session, user="/CN=rev", token=guard.token(session, "/CN=rev"), nonce=nonce)
    with pytest.raises(ActionRefused, match="already used"):
        guard.check(session=session, user="/CN=rev", token=guard.token(session, "/CN=rev"), nonce=nonce)
    other = guard.issue(session, "/CN=rev", "e0026.b0001", "sign-off")
    with pytest.raises(ActionRefused, match="does not match"):
        guard.check(session=session, user="/CN=viewer", token=guard.token(session, "/CN=rev"), nonce=other)
    with pytest.raises(ActionRefused, match="another session or user"):
        guard.check(session=session, user="/CN=viewer", token=guard.token(session, "/CN=viewer"), nonce=guard.issue(session, "/CN=rev", "b", "a"))


def test_nonce_expires():
    clock = Clock()
    guard = ActionGuard(b"k" * 32, clock=clock)
    session = guard.new_session()
    nonce = guard.issue(session, "u", "b", "a")
    clock.now = 4000.0
    with pytest.raises(ActionRefused, match="expired"):
        guard.check(session=session, user="u", token=guard.token(session, "u"), nonce=nonce)


def test_tokens_of_another_secret_or_session_fail():
    a, b = ActionGuard(b"a" * 32), ActionGuard(b"b" * 32)
    assert a.token("s" * 24, "u") != b.token("s" * 24, "u") and a.token("s" * 24, "u") != a.token("t" * 24, "u")
    with pytest.raises(ActionRefused, match="no review session"):
        a.check(session=None, user="u", token="x", nonce="y")


def test_origin_rules():
    same_origin({"Origin": "https://h:8443", "Sec-Fetch-Site": "same-origin"}, "h:8443", "https")
    for headers in ({"Origin": "https://evil:8443"}, {}, {"Origin": "https://h:8443", "Sec-Fetch-Site": "cross-site"}):
        with pytest.raises(ActionRefused) as refused:
            same_origin(headers, "h:8443", "https")
        assert refused.value.reason == "cross-origin request refused"
    assert cross_site({}, "h") is None and cross_site({"Origin": "https://h"}, "h") is None
    assert cross_site({"Origin": "https://evil"}, "h") and cross_site({"Sec-Fetch-Site": "same-site"}, "h") and cross_site({"Origin": "null"}, "h")


# -- manifest --------------------------------------------------------------------------------------------


def constants(values, errors, names=None, status=None):
    return PayloadConstants(np.array(values, float), np.array(errors, float), status=None if status is None else np.array(status),
                            attributes={"channels": names} if names else {})


def test_change_in_sigma_per_constant_and_worst_of_many():
    prev = PreviousPayload("BeamSpot", 1, "prompt_running", IoV(26, 1, -1, -1), constants([0.0, 1.0], [0.3, 0.4], ["x", "y"]))
    record = PayloadRecord("BeamSpot", 2, IoV(26, 4, -1, -1), ("e0026.r00004",), constants([0.5, 1.0], [0.4, 0.3], ["x", "y"]), prev)
    (change,) = payload_changes([record])
    assert [(k.constant, round(k.sigma, 6)) for k in change.constants] == [("x", 1.0), ("y", 0.0)] and change.largest_sigma == pytest.approx(1.0)
    many_prev = PreviousPayload("ECL", 1, "t", IoV(26, 1, -1, -1), constants(np.ones(100), np.full(100, 0.1)))
    values = np.ones(100)
    values[42] = 2.0
    status = np.zeros(100, int)
    status[7] = 1  # dead: not compared
    many = PayloadRecord("ECL", 2, IoV(26, 4, -1, -1), (), constants(values, np.full(100, 0.1), status=status), many_prev)
    (change,) = payload_changes([many])
    assert change.constants[0].constant == "worst channel 42" and change.beyond_5_sigma == 1


def test_manifest_round_trips_and_refuses_paths(tmp_path: Path):
    b = bucket(1)
    original = manifest(b, "BeamSpot", failed=["fit_converged"])
    write_manifest(tmp_path, original)
    assert read_manifest(tmp_path) == original and read_manifest(tmp_path / "none") is None
    data = manifest_to_json(original)
    data["figures"][0]["file"] = "../../secret.png"
    with pytest.raises(ManifestError, match="plain file name"):
        manifest_from_json(data)
    (tmp_path / "review.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(ManifestError):
        read_manifest(tmp_path)
