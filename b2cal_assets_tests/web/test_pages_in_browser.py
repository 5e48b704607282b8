"""The review pages in a real browser (Debian's chromium, Playwright, client certificates), through
the proxy, over a real dagster-webserver: reach a bucket in one click, every plot rendered at full
size, sign off in three clicks with the launch going through /graphql and the proxy's role check,
replays and cross-origin posts refused, a rejection's markup shown as text, the viewer without
buttons, the admin pages refused to non-admins. Screenshots are kept (see ``shots``).
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from b2cal_assets_tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium

from .conftest import CLEAN, FAULTY, ReviewWorld

pytestmark = [pytest.mark.slow, needs_chromium]


class Browser:
    """One persona's browser context (its client certificate) over the session's chromium."""

    def __init__(self, playwright: Any, world: ReviewWorld, persona: str) -> None:
        cert, key = world.cert(persona)
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.context = self.browser.new_context(
            viewport={"width": 1500, "height": 1000}, ignore_https_errors=True,
            client_certificates=[{"origin": world.origin, "certPath": str(cert), "keyPath": str(key)}],
        )
        self.page = self.context.new_page()

    def close(self) -> None:
        self.context.close()
        self.browser.close()


def _request(world: ReviewWorld, persona: str, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(world.pki.ca.credential.cert_path))
    context.check_hostname = False
    cert, key = world.cert(persona)
    context.load_cert_chain(str(cert), str(key))
    connection = http.client.HTTPSConnection("127.0.0.1", world.proxy.port, timeout=60, context=context)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _wait_for_run_end(page: Any, timeout_s: float = 1800.0) -> str:
    """The launched run's final status on the bucket page (which reloads itself until then); a run
    worker loads the whole code location first, which takes minutes on a loaded 2-core machine
    (the limit only stops a hung run; nothing here measures time)."""
    deadline = time.monotonic() + timeout_s
    status = "?"
    while time.monotonic() < deadline:
        try:
            run = page.locator("#launched-run")
            if run.count():
                status = run.get_attribute("data-status") or "?"
                if status in ("SUCCESS", "FAILURE", "CANCELED"):
                    page.wait_for_load_state()
                    return status
                # Not done: the page must reload itself, to a URL without a fragment (a meta
                # refresh to ...#review is a same-document scroll, no reload): fail, not hang.
                refresh = page.locator('meta[http-equiv="refresh"]').get_attribute("content", timeout=5_000)
                assert refresh and "url=" in refresh and "#" not in refresh, f"run {status}, page will not reload: {refresh!r}"
        except PlaywrightError:  # the page reloaded itself under us
            pass
        page.wait_for_timeout(1000)
    raise AssertionError(f"the launched run is still {status} after {timeout_s} s")


def test_reviewer_signs_off_a_bucket_from_the_overview(review_world: ReviewWorld, shots: Path) -> None:
    from playwright.sync_api import sync_playwright

    world = review_world
    launches: list[Any] = []
    with sync_playwright() as playwright:
        reviewer = Browser(playwright, world, "reviewer")
        page = reviewer.page
        try:
            page.on("request", lambda r: launches.append(r) if r.method == "POST" and r.url.endswith("/graphql") else None)
            page.goto(f"{world.origin}/b2cal/")
            clean_cells = page.locator(f'tr:has(a.bucket:text("{CLEAN}")) td.cell')
            assert clean_cells.count() == 4
            assert {clean_cells.nth(i).get_attribute("data-state") for i in range(4)} == {"awaiting sign-off"}
            faulty = page.locator(f'tr:has(a.bucket:text("{FAULTY}")) td.cell[data-calibration="ECLCrystalEnergy"]')
            assert faulty.get_attribute("data-state") == "checks failed" and "bad_channel_fraction" in faulty.inner_text()
            page.screenshot(path=str(shots / "review_overview_before.png"), full_page=True)

            page.get_by_role("link", name=CLEAN).click()  # click 1: the bucket's page
            page.wait_for_url(f"**/b2cal/buckets/{CLEAN}")
            plots = page.locator("img.plot")
            assert plots.count() >= 4 * 3, "every calibration has at least three figures"
            calibrations_with_plots = set()
            for i in range(plots.count()):
                plot = plots.nth(i)
                plot.scroll_into_view_if_needed()
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=plot.element_handle(), timeout=30_000)
                assert plot.is_visible()
                width = plot.evaluate("img => img.naturalWidth")
                assert width >= 800, f"{plot.get_attribute('alt')}: naturalWidth {width}"
                calibrations_with_plots.add(plot.get_attribute("alt").split(":")[0])
            assert calibrations_with_plots == {"BeamSpot", "CollisionEnergy", "ECLCrystalEnergy", "CDCTimeZero"}
            pdf = page.locator("a.pdf").first
            status, body = _request(world, "reviewer", "GET", pdf.get_attribute("href"))
            assert status == 200 and body.startswith(b"%PDF")
            page.screenshot(path=str(shots / "review_bucket_page.png"), full_page=True)

            page.locator("#sign-off").click()  # click 2
            page.locator("#confirm-sign-off").click()  # click 3
            page.wait_for_url(lambda url: "?run=" in url, timeout=300_000)
            # The page's launch as sent, every header (Request.headers leaves Origin out).
            (request,) = [r for r in launches if "B2calReviewLaunch" in (r.post_data or "")]
            launch = {"headers": request.all_headers(), "body": request.post_data}
            assert _wait_for_run_end(page) == "SUCCESS", page.locator("#launched-run").inner_text()
            assert "promoted" in page.locator("#decision").inner_text() and "reviewer" in page.locator("#decision").inner_text()
            page.screenshot(path=str(shots / "review_signed_off.png"), full_page=True)

            page.goto(f"{world.origin}/b2cal/")
            cells = page.locator(f'tr:has(a.bucket:text("{CLEAN}")) td.cell')
            assert [cells.nth(i).get_attribute("data-state") for i in range(4)] == ["promoted"] * 4
            assert "by reviewer" in cells.first.inner_text()
            page.screenshot(path=str(shots / "review_overview_after.png"), full_page=True)
            session = {c["name"]: c["value"] for c in reviewer.context.cookies()}["b2cal_session"]
        finally:
            reviewer.close()

    # The run was tagged by the proxy with the reviewer's identity, as any UI launch.
    tags = world.deployment.instance.get_run_records()[0].dagster_run.tags
    assert tags.get("b2cal/user") == "reviewer"
    # Replaying the page's launch (same cookie, token, nonce): refused before any decision.
    headers = {k: v for k, v in launch["headers"].items() if k.lower() in ("content-type", "x-b2cal-csrf", "x-b2cal-nonce", "origin")}
    headers["Cookie"] = f"b2cal_session={session}"  # Playwright's request headers leave cookies out
    status, body = _request(world, "reviewer", "POST", "/graphql", launch["body"].encode(), headers)
    assert status == 403 and b"already submitted" in body
    status, body = _request(world, "viewer", "POST", "/graphql", launch["body"].encode(), headers)
    assert status == 403


def test_viewer_has_no_buttons_and_cannot_post_an_action(review_world: ReviewWorld, shots: Path) -> None:
    from playwright.sync_api import sync_playwright

    world = review_world
    with sync_playwright() as playwright:
        viewer = Browser(playwright, world, "viewer")
        try:
            page = viewer.page
            page.goto(f"{world.origin}/b2cal/buckets/{FAULTY}")
            assert page.locator("img.plot").count() > 0
            assert page.locator("#sign-off, #confirm-sign-off, #reject").count() == 0
            assert "No review action for you" in page.locator("#no-actions").inner_text()
            page.screenshot(path=str(shots / "review_viewer_bucket.png"), full_page=True)
            page.goto(f"{world.origin}/b2cal/me")
            assert "viewer" in page.locator("#roles").inner_text() and world.pki.users["viewer"].subject in page.locator("#dn").inner_text()
            assert "promote" in page.locator("#missing").inner_text()
            page.screenshot(path=str(shots / "review_viewer_me.png"), full_page=True)
            # A forged action: a token and nonce the viewer never got.
            status = page.evaluate(
                """async () => (await fetch("/graphql", {method: "POST", headers: {"Content-Type": "application/json",
                    "X-B2cal-Csrf": "forged", "X-B2cal-Nonce": "forged"}, body: JSON.stringify({query: "{ __typename }"})})).status""")
            assert status == 403
        finally:
            viewer.close()


def test_cross_origin_post_is_refused(review_world: ReviewWorld) -> None:
    body = json.dumps({"query": "mutation { setNuxSeen }"}).encode()
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        status, answer = _request(review_world, "admin", "POST", "/graphql", body, {"Content-Type": "application/json", **headers})
        assert status == 403 and b"cross-origin" in answer, headers
    status, _ = _request(review_world, "admin", "POST", "/graphql", body, {"Content-Type": "application/json"})
    assert status == 200, "API clients (no Origin) keep working"
    status, _ = _request(review_world, "admin", "POST", "/b2cal/", b"x", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403, "the pages take no POST"


def test_admin_pages_are_refused_to_non_admins(review_world: ReviewWorld, shots: Path) -> None:
    for persona in ("viewer", "reviewer"):
        for path in ("/b2cal/admin/accounts", "/b2cal/admin/audit"):
            status, body = _request(review_world, persona, "GET", path, headers={"Accept": "text/html"})
            assert status == 403 and b"instance_info" in body, (persona, path)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        admin = Browser(playwright, review_world, "admin")
        try:
            page = admin.page
            page.goto(f"{review_world.origin}/b2cal/admin/accounts")
            assert page.locator("#accounts tbody tr").count() == 3
            page.screenshot(path=str(shots / "review_admin_accounts.png"), full_page=True)
            page.goto(f"{review_world.origin}/b2cal/admin/audit?decision=deny")
            text = page.locator("#audit").inner_text()
            assert "/b2cal/admin/accounts" in text and "instance_info" in text  # the refusals above, from the table
            page.screenshot(path=str(shots / "review_admin_audit.png"), full_page=True)
        finally:
            admin.close()


def test_rejection_reason_with_markup_is_shown_as_text(review_world: ReviewWorld, shots: Path) -> None:
    from playwright.sync_api import sync_playwright

    world = review_world
    reason = '<img src=x onerror="document.title=1"> <b>dead crystals</b> in ECL'
    with sync_playwright() as playwright:
        admin = Browser(playwright, world, "admin")
        try:
            page = admin.page
            page.goto(f"{world.origin}/b2cal/buckets/{FAULTY}")
            assert page.locator("#sign-off").count() == 0, "checks failed: nothing to sign off"
            page.locator("#reject-reason").fill(reason)
            page.locator("#reject").click()
            page.wait_for_url(lambda url: "?run=" in url, timeout=300_000)
            assert _wait_for_run_end(page) == "SUCCESS", page.locator("#launched-run").inner_text()
            decision = page.locator("#decision")
            assert reason in decision.inner_text()
            assert decision.locator("img, b").count() == 0 and page.title() != "1"
            page.screenshot(path=str(shots / "review_rejected.png"), full_page=True)
            page.goto(f"{world.origin}/b2cal/?state=rejected")
            assert page.locator(f'tr:has(a.bucket:text("{FAULTY}")) td.cell').first.get_attribute("data-state") == "rejected"
        finally:
            admin.close()
