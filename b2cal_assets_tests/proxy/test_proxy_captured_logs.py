"""Captured logs (stdout/stderr) through the proxy: launchers read their own runs', admins all.

A webserver of this module's own starts launched runs at once (DefaultRunCoordinator; the
session world's webserver has no daemon, so its runs stay queued). The launcher launches
``dirac_accounts`` through the proxy (it imports the test registry, so the run succeeds
quickly), the run is waited for, and its logs are then read through every route the UI uses:
the CapturedLogsMetadataQuery / CapturedLogsQuery queries, the CapturedLogsSubscription over
the websocket, and the /logs/ download.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from .harness import (
    JSON_HEADERS,
    RUNS_START_AT_ONCE,
    RunningProxy,
    Webserver,
    World,
    asset_launch_params,
    base_config,
    client_context,
    request,
    start_webserver,
    upstream_graphql,
    wait_for_run,
)

pytestmark = pytest.mark.slow

LAUNCH = """mutation Launch($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
METADATA = """query CapturedLogsMetadataQuery($logKey: [String!]!) {
  capturedLogsMetadata(logKey: $logKey) { stdoutDownloadUrl stderrDownloadUrl } }"""
LOGS = """query CapturedLogsQuery($logKey: [String!]!, $cursor: String, $limit: Int) {
  capturedLogs(logKey: $logKey, cursor: $cursor, limit: $limit) { stdout stderr cursor } }"""
SUBSCRIPTION = """subscription CapturedLogsSubscription($logKey: [String!]!, $cursor: String) {
  capturedLogs(logKey: $logKey, cursor: $cursor) { stdout stderr cursor } }"""


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    status: str
    log_key: list[str]  # as the UI builds it: [runId, "compute_logs", fileKey]

    def download_path(self, extension: str) -> str:
        return "/logs/" + "/".join(self.log_key) + f"/{extension}"


@pytest.fixture(scope="module")
def runs_webserver(world: World) -> Iterator[Webserver]:
    with tempfile.TemporaryDirectory(prefix="b2cal-proxy-logs-") as tmp, start_webserver(
        Path(tmp), instance=RUNS_START_AT_ONCE, env={"B2CAL_ACCOUNTS_REGISTRY_YAML": str(world.root / "registry.yaml")}
    ) as webserver:
        yield webserver


@pytest.fixture(scope="module")
def logs_proxy(world: World, runs_webserver: Webserver) -> Iterator[RunningProxy]:
    proxy = RunningProxy(base_config(world, upstream=f"http://127.0.0.1:{runs_webserver.port}"))
    yield proxy
    proxy.stop()


def ask(world: World, proxy: RunningProxy, who: str, query: str, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    reply = request(proxy.port, "POST", "/graphql", context=client_context(world, world.proxy_file(who)), headers=JSON_HEADERS,
                    body=json.dumps({"query": query, "variables": variables}).encode())
    return reply.status, reply.json()


def download(world: World, proxy: RunningProxy, who: str, path: str) -> tuple[int, bytes]:
    reply = request(proxy.port, "GET", path, context=client_context(world, world.proxy_file(who)))
    return reply.status, reply.body


def subscribe(world: World, proxy: RunningProxy, who: str, log_key: list[str]) -> dict[str, Any]:
    """The first answer to a CapturedLogsSubscription over the proxy's websocket (data or error)."""
    context = client_context(world, world.proxy_file(who))
    with connect(f"wss://127.0.0.1:{proxy.port}/graphql", ssl=context, subprotocols=["graphql-ws"], open_timeout=20) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"
        ws.send(json.dumps({"type": "start", "id": "logs", "payload": {
            "query": SUBSCRIPTION, "variables": {"logKey": log_key}, "operation_name": "CapturedLogsSubscription"}}))
        while True:
            message = json.loads(ws.recv(timeout=60))
            if message.get("id") == "logs" and message["type"] in ("data", "error"):
                return message


@pytest.fixture(scope="module")
def launcher_run(world: World, runs_webserver: Webserver, logs_proxy: RunningProxy) -> FinishedRun:
    status, body = ask(world, logs_proxy, "launcher", LAUNCH, {"p": asset_launch_params(runs_webserver, ["dirac_accounts"])})
    assert status == 200 and body["data"]["launchRun"]["__typename"] == "LaunchRunSuccess", body
    run_id = body["data"]["launchRun"]["run"]["runId"]
    final = wait_for_run(runs_webserver, run_id)
    events = upstream_graphql(runs_webserver, """query E($id: ID!) { logsForRun(runId: $id) { ... on EventConnection {
        events { __typename ... on LogsCapturedEvent { fileKey } } } } }""", {"id": run_id})["logsForRun"]["events"]
    file_keys = [e["fileKey"] for e in events if e["__typename"] == "LogsCapturedEvent"]
    assert file_keys, f"run {run_id} ({final}) captured no logs"
    return FinishedRun(run_id, final, [run_id, "compute_logs", file_keys[0]])


def test_the_launchers_run_ran_and_captured_its_logs(launcher_run: FinishedRun) -> None:
    assert launcher_run.status == "SUCCESS", launcher_run


def test_launcher_reads_the_captured_logs_of_own_run(world: World, logs_proxy: RunningProxy, launcher_run: FinishedRun) -> None:
    status, body = ask(world, logs_proxy, "launcher", METADATA, {"logKey": launcher_run.log_key})
    assert status == 200, body
    assert body["data"]["capturedLogsMetadata"]["stderrDownloadUrl"] == launcher_run.download_path("err")
    status, body = ask(world, logs_proxy, "launcher", LOGS, {"logKey": launcher_run.log_key, "limit": 1 << 20})
    assert status == 200, body
    stderr = body["data"]["capturedLogs"]["stderr"]
    assert launcher_run.run_id in stderr and "STEP_SUCCESS" in stderr


def test_launcher_downloads_the_logs_of_own_run(world: World, logs_proxy: RunningProxy, launcher_run: FinishedRun) -> None:
    status, body = download(world, logs_proxy, "launcher", launcher_run.download_path("err"))
    assert status == 200 and launcher_run.run_id.encode() in body
    assert download(world, logs_proxy, "launcher", launcher_run.download_path("out"))[0] == 200


def test_launcher_follows_the_logs_of_own_run_over_the_websocket(world: World, logs_proxy: RunningProxy,
                                                                   launcher_run: FinishedRun) -> None:
    message = subscribe(world, logs_proxy, "launcher", launcher_run.log_key)
    assert message["type"] == "data", message
    assert launcher_run.run_id in message["payload"]["data"]["capturedLogs"]["stderr"]


@pytest.mark.parametrize("who", ["ecl", "viewer"])
def test_another_launcher_or_a_viewer_cannot_read_the_logs(world: World, logs_proxy: RunningProxy, launcher_run: FinishedRun,
                                                           who: str) -> None:
    # "ecl" launches ECL assets itself (launcher[ecl]); "viewer" launches nothing.
    for query in (METADATA, LOGS):
        status, body = ask(world, logs_proxy, who, query, {"logKey": launcher_run.log_key})
        assert status == 403 and "data" not in body, body
    for extension in ("out", "err"):
        status, body = download(world, logs_proxy, who, launcher_run.download_path(extension))
        assert status == 403 and launcher_run.run_id.encode() not in body
    message = subscribe(world, logs_proxy, who, launcher_run.log_key)
    assert message["type"] == "error" and "payload" in message and "data" not in message["payload"], message


def test_admin_reads_the_launchers_logs(world: World, logs_proxy: RunningProxy, launcher_run: FinishedRun) -> None:
    status, body = ask(world, logs_proxy, "admin", LOGS, {"logKey": launcher_run.log_key})
    assert status == 200 and launcher_run.run_id in body["data"]["capturedLogs"]["stderr"]
    assert download(world, logs_proxy, "admin", launcher_run.download_path("err"))[0] == 200
    assert subscribe(world, logs_proxy, "admin", launcher_run.log_key)["type"] == "data"


def test_launcher_is_refused_keys_of_unknown_runs_and_keys_that_are_not_a_runs(world: World, logs_proxy: RunningProxy,
                                                                               launcher_run: FinishedRun) -> None:
    _, _, file_key = launcher_run.log_key
    for key in (["0b2ca100-0000-4000-8000-000000000000", "compute_logs", file_key],  # no such run
                [launcher_run.run_id, "compute_logs", "..", launcher_run.run_id, "compute_logs", file_key],
                ["b2cal_assets", "new_run_files", "20250101_000000"]):  # a sensor tick's log key
        status, body = ask(world, logs_proxy, "launcher", LOGS, {"logKey": key})
        assert status == 403, (key, body)
    assert download(world, logs_proxy, "launcher", launcher_run.download_path("complete"))[0] == 403
    # The admin may read a key that is not a run's (here: none exists, so the webserver answers empty).
    assert ask(world, logs_proxy, "admin", LOGS, {"logKey": ["b2cal_assets", "new_run_files", "20250101_000000"]})[0] == 200


def test_captured_log_decisions_are_audited(world: World, logs_proxy: RunningProxy, launcher_run: FinishedRun,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="b2cal.proxy.audit"):
        ask(world, logs_proxy, "launcher", LOGS, {"logKey": launcher_run.log_key})
        download(world, logs_proxy, "launcher", launcher_run.download_path("err"))
        ask(world, logs_proxy, "ecl", LOGS, {"logKey": launcher_run.log_key})
        download(world, logs_proxy, "viewer", launcher_run.download_path("err"))
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "b2cal.proxy.audit"]
    allowed = [r for r in records if r["decision"] == "allow" and r["user"] == "launcher"]
    assert len(allowed) == 2 and all(f"own run {launcher_run.run_id}" in r["why"] and r["permissions"] == ["launch"] for r in allowed)
    denied = {r["user"]: r for r in records if r["decision"] == "deny"}
    # who (user), what (the field) and why (whose run it is, what is missing) are all in the line.
    assert denied["ecl"]["what"] and f"run {launcher_run.run_id} was launched by launcher" in denied["ecl"]["why"]
    assert "only the logs of your own runs" in denied["ecl"]["why"] and "needs" in denied["ecl"]["why"]
    assert denied["viewer"]["status"] == 403 and "captured_logs" in denied["viewer"]["why"]
