"""The proxy and dagster-webserver both under a path prefix (``-l /dagster`` and ``path_prefix``).

A webserver of this module's own serves under /dagster; the proxy, configured with the same
prefix, must carry the UI, its static files, GraphQL (with the proxy's own upstream reads for
launch and run-owner decisions) and the websocket under it, and refuse paths outside it.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from .harness import (
    JSON_HEADERS,
    Reply,
    RunningProxy,
    Webserver,
    World,
    asset_launch_params,
    base_config,
    client_context,
    request,
    start_webserver,
)

pytestmark = pytest.mark.slow

PREFIX = "/dagster"
LAUNCH = """mutation Launch($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId tags { key value } } } ... on PythonError { message } } }"""


@pytest.fixture(scope="module")
def prefixed_webserver() -> Iterator[Webserver]:
    with tempfile.TemporaryDirectory(prefix="b2cal-proxy-prefix-") as tmp, start_webserver(Path(tmp), prefix=PREFIX) as webserver:
        yield webserver


@pytest.fixture(scope="module")
def prefixed_proxy(world: World, prefixed_webserver: Webserver) -> Iterator[RunningProxy]:
    proxy = RunningProxy(base_config(world, upstream=f"http://127.0.0.1:{prefixed_webserver.port}", path_prefix=PREFIX))
    yield proxy
    proxy.stop()


def get(world: World, proxy: RunningProxy, who: str, path: str, **headers: str) -> Reply:
    return request(proxy.port, "GET", path, context=client_context(world, world.proxy_file(who)), headers=headers)


def post_graphql(world: World, proxy: RunningProxy, who: str, query: str, variables: dict[str, Any] | None = None) -> Reply:
    return request(proxy.port, "POST", PREFIX + "/graphql", context=client_context(world, world.proxy_file(who)), headers=JSON_HEADERS,
                   body=json.dumps({"query": query, "variables": variables or {}}).encode())


def test_ui_index_page_is_served_under_the_prefix(world: World, prefixed_proxy: RunningProxy) -> None:
    reply = get(world, prefixed_proxy, "viewer", PREFIX + "/", Accept="text/html")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    page = reply.body.decode()
    # The webserver writes its prefix into the page, so the browser asks for everything under it.
    assert f'"pathPrefix": "{PREFIX}"' in page and f'src="{PREFIX}/_next/' in page
    assert get(world, prefixed_proxy, "viewer", PREFIX + "/runs", Accept="text/html").status == 200


def test_prefix_without_the_slash_redirects_to_the_ui_on_the_proxy(world: World, prefixed_proxy: RunningProxy) -> None:
    # Relative: the webserver's own redirect would name its loopback host and port.
    reply = get(world, prefixed_proxy, "viewer", PREFIX + "?x=1")
    assert reply.status == 307 and reply.headers["location"] == PREFIX + "/?x=1"
    root = get(world, prefixed_proxy, "viewer", "/")
    assert root.status == 307 and root.headers["location"] == PREFIX


def test_static_files_are_served_under_the_prefix(world: World, prefixed_proxy: RunningProxy) -> None:
    page = get(world, prefixed_proxy, "viewer", PREFIX + "/").body.decode()
    scripts = re.findall(rf'src="({PREFIX}/_next/[^"]+\.js)"', page)
    assert scripts, page[:500]
    reply = request(prefixed_proxy.port, "GET", scripts[0], context=client_context(world, world.proxy_file("viewer")),
                    headers={"Accept-Encoding": "identity"})
    assert reply.status == 200 and reply.headers["content-type"].split(";")[0] in ("application/javascript", "text/javascript")
    assert len(reply.body) > 1000
    assert get(world, prefixed_proxy, "viewer", PREFIX + "/favicon.svg").status == 200


def test_graphql_query_under_the_prefix(world: World, prefixed_proxy: RunningProxy) -> None:
    reply = post_graphql(world, prefixed_proxy, "viewer", "query V { version }")
    assert reply.status == 200 and reply.json()["data"]["version"]


def test_mutation_refused_under_the_prefix(world: World, prefixed_proxy: RunningProxy) -> None:
    reply = post_graphql(world, prefixed_proxy, "viewer", "mutation { wipeAssets(assetPartitionRanges: []) { __typename } }")
    assert reply.status == 403 and "wipe" in reply.json()["error"]


@pytest.fixture(scope="module")
def queued_run(world: World, prefixed_webserver: Webserver, prefixed_proxy: RunningProxy) -> str:
    """A run the launcher launched through the proxy; it stays queued (no daemon here)."""
    # The launch decision needs the proxy's own read of the asset groups, under the prefix.
    params = asset_launch_params(prefixed_webserver, ["dirac_accounts"])
    reply = post_graphql(world, prefixed_proxy, "launcher", LAUNCH, {"p": params})
    assert reply.status == 200, reply.body
    launched = reply.json()["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    assert {"key": "b2cal/user", "value": "launcher"} in launched["run"]["tags"]
    return launched["run"]["runId"]


def test_log_download_decisions_under_the_prefix(world: World, prefixed_proxy: RunningProxy, queued_run: str) -> None:
    """The queued run captured nothing: the launcher is let through to the webserver's 404, others stop at the proxy's 403."""
    path = f"{PREFIX}/logs/{queued_run}/compute_logs/abcdefgh/err"
    through = get(world, prefixed_proxy, "launcher", path)
    assert through.status == 404 and b"No log files" in through.body
    assert get(world, prefixed_proxy, "ecl", path).status == 403


def test_terminate_own_run_reads_the_owner_under_the_prefix(world: World, prefixed_proxy: RunningProxy, queued_run: str) -> None:
    terminate = "mutation T($id: String!) { terminateRun(runId: $id) { __typename } }"
    refused = post_graphql(world, prefixed_proxy, "ecl", terminate, {"id": queued_run})
    assert refused.status == 403 and "own runs" in refused.json()["error"]
    allowed = post_graphql(world, prefixed_proxy, "launcher", terminate, {"id": queued_run})
    assert allowed.status == 200 and allowed.json()["data"]["terminateRun"]["__typename"] == "TerminateRunSuccess", allowed.body


def test_websocket_under_the_prefix(world: World, prefixed_proxy: RunningProxy) -> None:
    context = client_context(world, world.proxy_file("viewer"))
    with connect(f"wss://127.0.0.1:{prefixed_proxy.port}{PREFIX}/graphql", ssl=context, subprotocols=["graphql-ws"],
                 open_timeout=20) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(ws.recv(timeout=20))["type"] == "connection_ack"  # the webserver's answer
        ws.send(json.dumps({"type": "start", "id": "1", "payload": {
            "query": "subscription L { locationStateChangeEvents { event { message } } }", "variables": {}}}))
        ws.send(json.dumps({"type": "start", "id": "2", "payload": {
            "query": 'subscription C { capturedLogs(logKey: ["x", "compute_logs", "y"]) { stdout } }', "variables": {}}}))
        refusal = json.loads(ws.recv(timeout=20))
        assert refusal["type"] == "error" and refusal["id"] == "2" and "captured_logs" in refusal["payload"]["message"]


@pytest.mark.parametrize("path", ["/graphql", "/server_info", "/dagsterx/graphql", "/_next/static/x.js", "/logs/r/compute_logs/k/out"])
def test_paths_outside_the_prefix_are_refused(world: World, prefixed_proxy: RunningProxy, path: str) -> None:
    reply = get(world, prefixed_proxy, "admin", path)
    assert reply.status in (400, 404) and f"{PREFIX}/" in reply.json()["error"]


def test_graphql_refusals_under_the_prefix_are_json_for_browsers_too(world: World, prefixed_proxy: RunningProxy) -> None:
    reply = request(prefixed_proxy.port, "POST", PREFIX + "/graphql", context=client_context(world, world.proxy_file("viewer")),
                    headers={**JSON_HEADERS, "Accept": "text/html,application/json"},
                    body=json.dumps({"query": "{ instance { info } }"}).encode())
    assert reply.status == 403 and reply.json()["errors"][0]["message"]
