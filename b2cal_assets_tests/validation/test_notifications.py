"""The notification sensor against a real HTTP server on loopback (SQLite and PostgreSQL deployments)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import build_sensor_context

from b2cal_assets.validation.resources import ValidationResource
from b2cal_assets.validation.sensors import NOTIFICATION_SENSOR_NAME
from b2cal_assets_tests.validation.conftest import deployments


@pytest.fixture
def webhook():  # type: ignore[no-untyped-def]
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "content_type": self.headers["Content-Type"], "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/b2cal", received
    server.shutdown()
    server.server_close()


def _tick(deployment, url: str, cursor: str | None = None):  # type: ignore[no-untyped-def]
    validation = ValidationResource(reports_dir=str(deployment.root / "reports"), running_tag="prompt_running", webhook_url=url)
    defs = deployment.defs(validation)
    sensor = defs.resolve_sensor_def(NOTIFICATION_SENSOR_NAME)
    with build_sensor_context(instance=deployment.instance, cursor=cursor, resources=dict(defs.resources)) as context:
        return sensor(context)


@pytest.mark.parametrize(
    ("deployment_fixture", "expected"),
    [
        # b0002's low-statistics run merges with its neighbour (CAF rule) and passes: only b0003's hot wires fail.
        pytest.param("beam_deployment", {("e0026.b0003", "CDCTimeZero", "bad_channel_fraction")}, id="beam"),
        pytest.param("postgres_deployment", {("e0026.b0002", "BeamSpot", "change_vs_previous")}, id="postgres", marks=pytest.mark.postgres),
    ],
)
def test_failed_checks_are_posted_to_the_webhook_once(deployment_fixture, expected, webhook, request):
    deployment = request.getfixturevalue(deployment_fixture)
    url, received = webhook
    first = _tick(deployment, url)
    assert len(received) == 1 and received[0]["path"] == "/hooks/b2cal" and received[0]["content_type"] == "application/json"
    notes = received[0]["body"]["notifications"]
    failed = {(n["bucket"], n["calibration"], n["check"]) for n in notes if n["kind"] == "failed_check"}
    assert expected <= failed
    assert "FAILED" in received[0]["body"]["text"]
    # Nothing new since the cursor: nothing posted again.
    _tick(deployment, url, cursor=first.cursor)
    assert len(received) == 1


@pytest.mark.parametrize("deployment_fixture", deployments("beam", "postgres"))
def test_an_unreachable_webhook_keeps_the_cursor_for_a_retry(deployment_fixture, request):
    result = _tick(request.getfixturevalue(deployment_fixture), "http://127.0.0.1:9/unreachable")
    assert result.cursor is None and "unreachable" in result.skip_reason.skip_message
