"""A real browser through the proxy: headless Chromium (Debian's, driven by Playwright) presents
a user certificate, the proxy terminates TLS, and the Dagster asset graph renders.

Browsers hold the user certificate, not a VOMS proxy: the roles then come from the DIRAC
groups of the account (the viewer persona is in group ``belle`` -> ``/belle`` -> viewer). The
UI's first-visit dialog is dismissed with "Skip", which sends the ``setNuxSeen`` mutation that
a viewer may run. The screenshot is kept in the test's temporary directory (and copied to
$B2CAL_KEEP_SCREENSHOTS when set).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from b2cal_assets_tests.browser import VIEWPORT, browser_page, dismiss_welcome, keep_artefact, needs_chromium

from .harness import RunningProxy, World

LOCATION = "b2cal_assets.definitions:defs"  # dagster-webserver -m b2cal_assets.definitions -a defs

pytestmark = [pytest.mark.slow, needs_chromium]


def test_browser_with_user_certificate_renders_the_asset_graph(world: World, tls_proxy: RunningProxy, tmp_path: Path) -> None:
    origin = f"https://127.0.0.1:{tls_proxy.port}"
    user = world.pki.users["viewer"]
    shot = tmp_path / "proxy_asset_graph.png"
    with browser_page(origin, (user.cert_path, user.key_path), viewport=VIEWPORT) as page:
        statuses: list[int] = []
        page.on("response", lambda response: statuses.append(response.status) if "/graphql" in response.url else None)
        # The lineage graph of asset group "runs" in the code location the harness loads.
        page.goto(f"{origin}/locations/{LOCATION}/asset-groups/runs", wait_until="domcontentloaded")
        dismiss_welcome(page)
        # An asset node of the graph: its label is the asset name, and the node lists its checks.
        node = page.get_by_text("raw_run", exact=True).first
        node.wait_for(state="visible", timeout=90_000)
        page.get_by_text("Asset checks").first.wait_for(state="visible", timeout=30_000)
        page.wait_for_timeout(1_500)  # let the layout settle before the picture
        page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000, "the screenshot is nearly empty"
    assert statuses and all(status < 400 for status in statuses), f"GraphQL answers through the proxy: {sorted(set(statuses))}"
    keep_artefact(shot)


def test_browser_without_certificate_gets_the_refusal_page(world: World, tls_proxy: RunningProxy, tmp_path: Path) -> None:
    shot = tmp_path / "screenshots" / "no_certificate_401.png"
    shot.parent.mkdir()
    with browser_page() as page:
        response = page.goto(f"https://127.0.0.1:{tls_proxy.port}/asset-groups")
        assert response is not None and response.status == 401
        text = page.inner_text("body")
        assert "Certificate required" in text and "PKCS#12" in text and "Your certificates" in text
        assert world.pki.ca.credential.subject in text  # the accepted CA
        page.screenshot(path=str(shot), full_page=True)
    keep_artefact(shot)


def test_browser_with_revoked_certificate_gets_a_page_naming_the_problem(world: World, tls_proxy: RunningProxy, tmp_path: Path) -> None:
    origin = f"https://127.0.0.1:{tls_proxy.port}"
    mallory = world.pki.users["mallory"]  # revoked in the test CA's CRL
    shot = tmp_path / "screenshots" / "revoked_certificate_403.png"
    shot.parent.mkdir()
    with browser_page(origin, (mallory.cert_path, mallory.key_path)) as page:
        response = page.goto(f"{origin}/asset-groups")  # a page, not net::ERR_SOCKET_NOT_CONNECTED
        assert response is not None and response.status == 403
        text = page.inner_text("body")
        assert "Certificate not accepted" in text and "revoked" in text
        page.screenshot(path=str(shot), full_page=True)
    keep_artefact(shot)


def test_viewer_sees_materialize_disabled_with_the_reason(world: World, tls_proxy: RunningProxy, tmp_path: Path) -> None:
    import re
    import time

    from playwright.sync_api import expect

    origin = f"https://127.0.0.1:{tls_proxy.port}"
    user = world.pki.users["viewer"]  # DIRAC group belle only: the viewer role
    shot = tmp_path / "screenshots" / "viewer_materialize_disabled.png"
    shot.parent.mkdir()
    with browser_page(origin, (user.cert_path, user.key_path), viewport=VIEWPORT) as page:
        page.goto(f"{origin}/assets/beam/BeamSpot", wait_until="domcontentloaded")
        dismiss_welcome(page)
        button = page.locator("button", has_text=re.compile(r"^Materialize")).first
        button.wait_for(state="visible", timeout=90_000)
        expect(button).to_be_disabled(timeout=30_000)
        reason = page.get_by_text("You do not have permission to materialize assets").first
        deadline = time.monotonic() + 60  # the button is re-rendered while the page loads: hover again
        while not reason.is_visible() and time.monotonic() < deadline:
            page.mouse.move(0, 0)
            page.locator("button", has_text=re.compile(r"^Materialize")).first.hover(force=True)
            page.wait_for_timeout(1_000)
        assert reason.is_visible(), "no tooltip with the reason on the disabled Materialize button"
        expect(page.locator("button", has_text=re.compile(r"^Materialize")).first).to_be_disabled()
        page.screenshot(path=str(shot))
    keep_artefact(shot)


def _registry_with(world: World, account: str, groups: list[str]) -> None:
    """Re-sync the harness accounts with ``account`` also in ``groups`` (empty: as the harness made them)."""
    import time

    import yaml

    from b2cal_assets.accounts.sync import import_registry_yaml

    from .harness import registry

    data = registry(world.pki)
    for group in groups:
        data["belle"]["Groups"].setdefault(group, {"Users": [], "Properties": ["NormalUser"]})["Users"].append(f"sub-{account}")
    path = world.root / f"registry-{account}-{'-'.join(groups) or 'none'}.yaml"
    path.write_text(yaml.safe_dump(data))
    import_registry_yaml(path, "belle", accounts_db=world.accounts_url, force=True)
    time.sleep(3)  # the proxy re-reads the accounts store every 2 s


def test_ecl_expert_launching_a_beam_asset_sees_the_refusal_reason_within_5_s(world: World, tls_proxy: RunningProxy, tmp_path: Path) -> None:
    """The expert opens the beam asset while still holding beam (a role withdrawn during the session):
    the launch then reaches the proxy, is refused, and the UI says so at once instead of spinning."""
    import re
    import time

    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect

    from b2cal_assets.calibration.partitions import BUCKET_PARTITIONS_NAME

    from .harness import Webserver, upstream_graphql

    webserver = Webserver(world.webserver_port, 0, world.root / "dagster_home")
    repo = upstream_graphql(webserver, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    node = repo["repositoriesOrError"]["nodes"][0]
    upstream_graphql(webserver, """mutation A($s: RepositorySelector!, $n: String!, $k: String!) {
        addDynamicPartition(repositorySelector: $s, partitionsDefName: $n, partitionKey: $k) { __typename } }""",
                     {"s": {"repositoryName": node["name"], "repositoryLocationName": node["location"]["name"]},
                      "n": BUCKET_PARTITIONS_NAME, "k": "e0026.b0001"})
    origin = f"https://127.0.0.1:{tls_proxy.port}"
    user = world.pki.users["ecl"]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        with browser_page(origin, (user.cert_path, user.key_path), viewport=VIEWPORT) as page:
            _registry_with(world, "ecl", ["belle_calib_ecl", "belle_calib_beam"])
            try:
                refused: list[str] = []
                page.on("response", lambda response: refused.append(response.headers.get("x-b2cal-refused", ""))
                        if "x-b2cal-refused" in response.headers else None)
                page.goto(f"{origin}/assets/beam/BeamSpot", wait_until="domcontentloaded")
                dismiss_welcome(page)
                button = page.locator("button", has_text=re.compile(r"^Materialize")).first
                button.wait_for(state="visible", timeout=90_000)
                expect(button).to_be_enabled(timeout=60_000)  # re-queried: React replaces the element
                button.click()
                confirm = page.get_by_role("button", name="Confirm")  # "upstream assets not materialized yet"
                try:
                    confirm.click(timeout=10_000)
                except PlaywrightTimeoutError:
                    pass  # asked only when upstream data is missing
                page.get_by_role("button", name="All", exact=True).click(timeout=60_000)  # every bucket (one here)
                launch = page.locator("button", has_text=re.compile(r"^Launch (1 run|backfill)")).first
                expect(launch).to_be_enabled(timeout=60_000)
                page.screenshot(path=str(shots / "ecl_expert_launch_dialog.png"))
            finally:
                _registry_with(world, "ecl", ["belle_calib_ecl"])  # beam withdrawn before the click
            started = time.monotonic()
            launch.click()
            # The launch is answered with a PythonError member holding the proxy's reason, which the
            # launch handler shows in its "Error" dialog (not "cannot be executed with the provided config").
            alert = page.get_by_role("dialog").filter(has_text=re.compile(r"asset group.*beam")).last
            alert.wait_for(state="visible", timeout=5_000)
            elapsed = time.monotonic() - started
            assert any("beam" in reason for reason in refused), refused
            page.screenshot(path=str(shots / "ecl_expert_beam_refused.png"))
            assert elapsed < 5.0
            shown = alert.inner_text()  # the Error dialog (the launch dialog stays open under it)
            assert refused[-1] in shown, (refused[-1], shown)  # the proxy's reason, word for word
            assert "cannot be executed with the provided config" not in shown
            assert page.locator("button", has_text="Launching").count() == 0
    finally:
        _registry_with(world, "ecl", [])
    for shot in shots.iterdir():
        keep_artefact(shot)
