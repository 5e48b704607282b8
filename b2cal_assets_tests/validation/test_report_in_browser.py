"""A reviewer's view: the validation report asset page of a real dagster-webserver, in headless
Chromium (Debian's, driven by Playwright), shows the embedded plot.

The screenshot is saved in the test's temporary directory (and copied to $B2CAL_KEEP_SCREENSHOTS
when set, to look at it); the test fails if no
``img[src^="data:image/png"]`` is rendered in the metadata's markdown dialog.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from b2cal_assets.validation.assets import report_key
from b2cal_assets_tests.browser import VIEWPORT, browser_page, dismiss_welcome, needs_chromium

pytestmark = [pytest.mark.slow, needs_chromium]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webserver(beam_deployment, tmp_path):
    """dagster-webserver on a free loopback port over the deployment's instance; stopped by its pid."""
    deployment = beam_deployment
    calibration = deployment.calibrations["BeamSpot"]
    result = deployment.materialise([report_key(calibration)], "e0026.b0001")
    assert result.success
    port = _free_port()
    env = dict(
        os.environ,
        DAGSTER_HOME=str(deployment.instance.root_directory),
        B2CAL_INCOMING=str(deployment.root / "incoming"),
        B2CAL_DATABASE_URL=deployment.url,
        B2CAL_WORK_DIR=str(deployment.root / "work"),
        B2CAL_PAYLOAD_DIR=str(deployment.root / "payloads"),
        B2CAL_REPORTS_DIR=deployment.validation.reports_dir,
    )
    executable = Path(sys.executable).with_name("dagster-webserver")
    log = open(tmp_path / "webserver.log", "wb")
    process = subprocess.Popen(
        [str(executable), "-h", "127.0.0.1", "-p", str(port), "-m", "b2cal_assets.definitions"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"dagster-webserver exited: {(tmp_path / 'webserver.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("dagster-webserver did not answer /server_info within 120 s")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_report_page_renders_the_embedded_plot(webserver, tmp_path):
    with browser_page(viewport=VIEWPORT) as page:
        page.goto(f"{webserver}/assets/validation/beam/BeamSpot_report?partition=e0026.b0001")
        show = page.get_by_text("Show Markdown").first
        show.wait_for(timeout=60_000)
        # A fresh instance greets with "Join the Dagster community" once the page has loaded: a
        # dialog shown after an earlier look would take the click below.
        dismiss_welcome(page)
        show.click()
        image = page.locator('img[src^="data:image/png"]').first
        image.wait_for(state="visible", timeout=30_000)
        width = image.evaluate("element => element.naturalWidth")
        shot = tmp_path / "report_page.png"
        page.screenshot(path=str(shot))
    assert width > 50, "the embedded PNG did not decode into an image"
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("B2CAL_KEEP_SCREENSHOTS")
    if keep:
        shutil.copy(shot, Path(keep) / shot.name)
