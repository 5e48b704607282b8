"""Reviewer sign-off from the Dagster UI itself (not the review pages): in Chromium with the
reviewer's client certificate, through the proxy, the reviewer materialises the promotion of the
bucket awaiting sign-off; the run is tagged by the proxy with the reviewer's identity and the asset
then shows the reviewer as approver (metadata in the UI; staging tag VALIDATED by the reviewer in
the conditions store).

The world is the review world of the web tests (real calibrations of two buckets on a real Dagster
instance, a real dagster-webserver that starts runs at once, the proxy in front), built here for
this module alone so that its sign-off does not depend on the order of other tests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey

from b2cal_assets.conditions.staging import staging_tag_name
from b2cal_assets.conditions.tags import TagState
from b2cal_assets_tests.browser import VIEWPORT, browser_page, dismiss_welcome, keep_artefact, needs_chromium
from b2cal_assets_tests.web.conftest import CLEAN, ReviewWorld, new_review_world, world_environment

pytestmark = [pytest.mark.slow, needs_chromium]

PROMOTION = AssetKey(["validation", "bucket_promotion"])


@pytest.fixture(scope="module")
def signoff_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewWorld]:
    with new_review_world(tmp_path_factory, "signoff") as world, world_environment(world):
        yield world  # the clean bucket's staging tag frozen, TESTING, as the validation sensor does


def _promotion_run(world: ReviewWorld, timeout_s: float = 1800.0):  # type: ignore[no-untyped-def]
    """The promotion run of CLEAN once it ended (a run worker loads the whole code location first,
    minutes on a loaded 2-core machine: the limit only stops a hung run)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for record in world.deployment.instance.get_run_records():
            run = record.dagster_run
            if run.tags.get("dagster/partition") == CLEAN and run.asset_selection and PROMOTION in run.asset_selection:
                if run.is_finished:
                    return run
        time.sleep(1)
    raise AssertionError(f"no finished promotion run of {CLEAN} after {timeout_s} s")


def test_reviewer_materialises_the_promotion_in_the_dagster_ui(signoff_world: ReviewWorld, tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect

    world = signoff_world
    cert, key = world.cert("reviewer")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    staging = staging_tag_name(CLEAN)
    assert world.deployment.conditions.tag(staging).state is TagState.TESTING  # awaiting sign-off
    with browser_page(world.origin, (cert, key), viewport=VIEWPORT) as page:
        page.goto(f"{world.origin}/assets/validation/bucket_promotion", wait_until="domcontentloaded")
        dismiss_welcome(page)
        button = page.locator("button", has_text=re.compile(r"^Materialize")).first
        button.wait_for(state="visible", timeout=90_000)
        expect(button).to_be_enabled(timeout=60_000)  # the reviewer may promote
        button.click()
        confirm = page.get_by_role("button", name="Confirm")  # "upstream assets not materialized" (reports)
        try:
            confirm.click(timeout=10_000)
        except PlaywrightTimeoutError:
            pass  # asked only when upstream data is missing
        # One partition, the clean bucket, picked in the dynamic-partition selector (one run, no
        # backfill). Dagster 1.13's OrdinalPartitionSelector (TagSelectorWithSearch): a "Select a
        # partition or create one" box whose popover has a "Filter partitions" field and one
        # <label> row per key, holding a hidden checkbox and the key in a div[data-tooltip=key]
        # (its data-testids are compiled out of the production build). Clicking the key's text
        # toggles the row's checkbox through the label.
        # (the selector's popover is a role=dialog too, inside the launch dialog)
        dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
        picker = dialog.get_by_text("Select a partition or create one")
        picker.wait_for(state="visible", timeout=120_000)
        picker.click()
        page.get_by_placeholder("Filter partitions").fill(CLEAN)
        row = page.locator("label", has=page.locator(f'[data-tooltip="{CLEAN}"]'))
        expect(row).to_have_count(1, timeout=60_000)
        row.locator(f'[data-tooltip="{CLEAN}"]').click()
        expect(row.get_by_role("checkbox")).to_be_checked(timeout=30_000)
        page.screenshot(path=str(shots / "reviewer_promotion_partitions.png"))
        page.keyboard.press("Escape")  # close the popover, keep the dialog
        expect(dialog).to_contain_text("1 partition", timeout=30_000)
        launch = dialog.get_by_role("button", name=re.compile(r"^Launch 1 run"))
        expect(launch).to_be_enabled(timeout=60_000)
        page.screenshot(path=str(shots / "reviewer_promotion_dialog.png"))
        launch.click()
        run = _promotion_run(world)
        assert run.status.value == "SUCCESS", run.status
        assert run.tags.get("b2cal/user") == "reviewer"  # set by the proxy from the certificate
        # The asset page of the partition: the latest materialisation's metadata names the approver.
        page.goto(f"{world.origin}/assets/validation/bucket_promotion?partition={CLEAN}", wait_until="domcontentloaded")
        approver = page.get_by_text("approver", exact=True).first
        approver.wait_for(state="visible", timeout=90_000)
        row = page.locator("tr", has=page.get_by_text("approver", exact=True)).first
        expect(row).to_contain_text("reviewer", timeout=30_000)
        page.wait_for_timeout(1_000)
        page.screenshot(path=str(shots / "reviewer_promotion_approver.png"), full_page=True)
    for shot in shots.iterdir():
        keep_artefact(shot)
    stored = world.deployment.instance.get_latest_materialization_event(PROMOTION)
    assert stored is not None and stored.run_id == run.run_id
    assert stored.asset_materialization.metadata["approver"].value == "reviewer"
    conditions = world.deployment.conditions
    assert conditions.tag(staging).state is TagState.VALIDATED
    validated = [h for h in conditions.tag_history(staging) if h.to_state is TagState.VALIDATED]
    assert validated and "reviewer" in validated[0].reason
