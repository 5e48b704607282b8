"""The proxy in front of a real dagster-webserver, with real TLS and voms-proxy-fake proxies."""

from __future__ import annotations

import base64
import json
import logging
import ssl
import urllib.parse

import pytest
from websockets.sync.client import connect

from .harness import RunningProxy, World, base_config, client_context, free_port, request

pytestmark = pytest.mark.slow

VERSION = json.dumps({"query": "query V { version }"}).encode()
JSON = {"Content-Type": "application/json"}
LAUNCH = """mutation Launch($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId tags { key value } } } ... on PythonError { message } } }"""


def graphql(world: World, proxy: RunningProxy, who: str, payload: dict, **options) -> tuple[int, dict]:
    reply = request(proxy.port, "POST", "/graphql", context=client_context(world, world.proxy_file(who, **options)),
                    body=json.dumps(payload).encode(), headers=JSON)
    return reply.status, reply.json()


def asset_selection(world: World, group: str) -> list[dict]:
    """Asset keys of one group, read directly from the webserver."""
    reply = request(world.webserver_port, "POST", "/graphql", body=json.dumps(
        {"query": "{ assetNodes { assetKey { path } groupName } }"}).encode(), headers=JSON)
    nodes = reply.json()["data"]["assetNodes"]
    return [{"path": n["assetKey"]["path"]} for n in nodes if n["groupName"] == group]


def launch_params(world: World, group: str, tags: list | None = None) -> dict:
    reply = request(world.webserver_port, "POST", "/graphql", body=json.dumps(
        {"query": "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"}).encode(), headers=JSON)
    repo = reply.json()["data"]["repositoriesOrError"]["nodes"][0]
    selection = asset_selection(world, group)[:1]
    return {"selector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"],
                         "jobName": "__ASSET_JOB", "assetSelection": selection},
            "mode": "default", "executionMetadata": {"tags": tags or []}}


def run_count(world: World) -> int:
    reply = request(world.webserver_port, "POST", "/graphql", body=json.dumps(
        {"query": "{ runsOrError { ... on Runs { count } } }"}).encode(), headers=JSON)
    return reply.json()["data"]["runsOrError"]["count"]


def test_viewer_can_query(world: World, tls_proxy: RunningProxy) -> None:
    status, body = graphql(world, tls_proxy, "viewer", {"query": "query V { version }"})
    assert status == 200 and body["data"]["version"]


def test_viewer_cannot_launch_by_any_route(world: World, tls_proxy: RunningProxy) -> None:
    before = run_count(world)
    params = launch_params(world, "ecl")
    context = client_context(world, world.proxy_file("viewer"))
    # JSON POST, aliased, hidden in a fragment, batched, with operationName tricks.
    attempts = [
        {"query": LAUNCH, "variables": {"p": params}},
        {"query": LAUNCH.replace("launchRun(", "harmless: launchRun("), "variables": {"p": params}},
        {"query": "query Q { version } mutation M($p: ExecutionParams!) { ...F } fragment F on Mutation { launchRun(executionParams: $p) { __typename } }",
         "operationName": "M", "variables": {"p": params}},
    ]
    for attempt in attempts:
        reply = request(tls_proxy.port, "POST", "/graphql", context=context, body=json.dumps(attempt).encode(), headers=JSON)
        assert reply.status == 403, reply.body
    batched = json.dumps([{"query": "{ version }"}, attempts[0]]).encode()
    assert request(tls_proxy.port, "POST", "/graphql", context=context, body=batched, headers=JSON).status == 403
    wipe = "mutation { wipeAssets(assetPartitionRanges: []) { __typename } }"
    assert request(tls_proxy.port, "POST", "/graphql", context=context, headers=JSON,
                   body=json.dumps({"query": wipe}).encode()).status == 403
    for mutation in ('stopSensor(id: "x") { __typename }', 'terminateRun(runId: "x") { __typename }',
                     'reloadWorkspace { __typename }'):
        reply = request(tls_proxy.port, "POST", "/graphql", context=context, headers=JSON,
                        body=json.dumps({"query": f"mutation {{ {mutation} }}"}).encode())
        assert reply.status == 403, reply.body
    assert request(tls_proxy.port, "POST", "/report_asset_materialization/ecl_gains", context=context).status == 403
    assert run_count(world) == before


def test_mutation_over_get_or_form_post_is_refused(world: World, tls_proxy: RunningProxy) -> None:
    context = client_context(world, world.proxy_file("admin"))
    query = urllib.parse.urlencode({"query": "mutation { setNuxSeen }"})
    reply = request(tls_proxy.port, "GET", f"/graphql?{query}", context=context)
    assert reply.status == 403 and "application/json" in reply.json()["error"]
    form = request(tls_proxy.port, "POST", f"/graphql?{query}", context=context, body=b"a=b",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 403
    plain = request(tls_proxy.port, "POST", "/graphql", context=context, body=json.dumps({"query": "mutation { setNuxSeen }"}).encode(),
                    headers={"Content-Type": "text/plain; application/json"})
    assert plain.status == 403


def test_malformed_graphql_is_a_400_with_a_clear_message(world: World, tls_proxy: RunningProxy) -> None:
    status, body = graphql(world, tls_proxy, "viewer", {"query": "query { version"})
    assert status == 400 and "GraphQL syntax error" in body["error"]
    status, body = graphql(world, tls_proxy, "viewer", {"query": "query A { version } query B { version }"})
    assert status == 400 and "operationName" in body["error"]


def test_launcher_launch_carries_identity_tags_even_when_spoofed(world: World, tls_proxy: RunningProxy) -> None:
    params = launch_params(world, "ecl", tags=[{"key": "b2cal/user", "value": "admin"}, {"key": "b2cal/roles", "value": "admin"}])
    status, body = graphql(world, tls_proxy, "launcher", {"query": LAUNCH, "variables": {"p": params}})
    assert status == 200, body
    result = body["data"]["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    tags = {t["key"]: t["value"] for t in result["run"]["tags"]}
    assert tags["b2cal/user"] == "launcher"
    assert tags["b2cal/roles"] == "launcher"
    assert tags["b2cal/dn"] == world.pki.users["launcher"].subject


def test_ecl_launcher_cannot_launch_beam_assets(world: World, tls_proxy: RunningProxy) -> None:
    before = run_count(world)
    status, body = graphql(world, tls_proxy, "ecl", {"query": LAUNCH, "variables": {"p": launch_params(world, "beam")}})
    assert status == 403 and "beam" in body["error"]
    assert run_count(world) == before
    status, body = graphql(world, tls_proxy, "ecl", {"query": LAUNCH, "variables": {"p": launch_params(world, "ecl")}})
    assert status == 200 and body["data"]["launchRun"]["__typename"] == "LaunchRunSuccess"


def test_reviewer_reads_but_cannot_launch_ordinary_assets(world: World, tls_proxy: RunningProxy) -> None:
    assert graphql(world, tls_proxy, "reviewer", {"query": "{ version }"})[0] == 200
    status, body = graphql(world, tls_proxy, "reviewer", {"query": LAUNCH, "variables": {"p": launch_params(world, "ecl")}})
    assert status == 403


def test_admin_sees_instance_info_and_viewer_does_not(world: World, tls_proxy: RunningProxy) -> None:
    query = {"query": "{ instance { info } }"}
    assert graphql(world, tls_proxy, "admin", query)[0] == 200
    status, body = graphql(world, tls_proxy, "viewer", query)
    assert status == 403 and "instance_info" in body["error"]


def test_unknown_and_suspended_accounts_get_403(world: World, tls_proxy: RunningProxy) -> None:
    status, body = graphql(world, tls_proxy, "stranger", {"query": "{ version }"})
    assert status == 403 and "unknown" in body["error"]
    status, body = graphql(world, tls_proxy, "suspended", {"query": "{ version }"})
    assert status == 403 and "suspended" in body["error"]


def test_browser_certificate_without_voms_uses_dirac_groups(world: World, tls_proxy: RunningProxy) -> None:
    context = client_context(world, None)
    user = world.pki.users["viewer"]
    context.load_cert_chain(str(user.cert_path), str(user.key_path))
    reply = request(tls_proxy.port, "GET", "/", context=context, headers={"Accept": "text/html"})
    assert reply.status == 200 and b"<html" in reply.body.lower()
    denied = request(tls_proxy.port, "GET", "/download_debug/x", context=context, headers={"Accept": "text/html"})
    assert denied.status == 403 and denied.headers["content-type"].startswith("text/html")


def test_no_certificate_is_401(world: World, tls_proxy: RunningProxy) -> None:
    reply = request(tls_proxy.port, "GET", "/server_info", context=client_context(world, None))
    assert reply.status == 401


def test_expired_proxy_is_refused(world: World, tls_proxy: RunningProxy) -> None:
    expired = world.proxy_file("viewer", hours=1, past_proxy="2:00", voms=False)
    # The handshake completes so the refusal can name the problem (proxy/tls_verify.py).
    reply = request(tls_proxy.port, "GET", "/server_info", context=client_context(world, expired))
    assert reply.status == 403 and "expired" in reply.json()["error"]


def test_untrusted_ca_is_refused_with_the_problem_named(world: World, tls_proxy: RunningProxy) -> None:
    context = client_context(world, None)
    eve = world.pki.rogue_users["eve"]
    context.load_cert_chain(str(eve.cert_path), str(eve.key_path))
    reply = request(tls_proxy.port, "GET", "/server_info", context=context)
    assert reply.status == 403 and "unable to verify" in reply.json()["error"]


def test_revoked_user_is_refused(world: World, tls_proxy: RunningProxy) -> None:
    context = client_context(world, None)
    mallory = world.pki.users["mallory"]
    context.load_cert_chain(str(mallory.cert_path), str(mallory.key_path))
    reply = request(tls_proxy.port, "GET", "/server_info", context=context)
    assert reply.status == 403 and "revoked" in reply.json()["error"]


def _rfc9440(world: World, who: str) -> dict[str, str]:
    from cryptography.hazmat.primitives.serialization import Encoding

    from b2cal_assets.auth.pki import read_proxy_file

    certificates, _ = read_proxy_file(world.proxy_file(who))
    items = [":" + base64.b64encode(c.public_bytes(Encoding.DER)).decode() + ":" for c in certificates]
    return {"Client-Cert": items[0], "Client-Cert-Chain": ", ".join(items[1:])}


def test_identity_headers_from_an_untrusted_peer_are_ignored(world: World, tls_proxy: RunningProxy) -> None:
    # The viewer's TLS identity counts; the admin chain in RFC 9440 headers is ignored.
    headers = {**JSON, **_rfc9440(world, "admin"), "SSL_CLIENT_S_DN": world.pki.users["admin"].subject}
    reply = request(tls_proxy.port, "POST", "/graphql", context=client_context(world, world.proxy_file("viewer")),
                    body=json.dumps({"query": "{ instance { info } }"}).encode(), headers=headers)
    assert reply.status == 403


def test_rfc9440_headers_from_the_trusted_front_are_accepted(world: World, front_proxy: RunningProxy) -> None:
    ok = request(front_proxy.port, "POST", "/graphql", body=json.dumps({"query": "{ instance { info } }"}).encode(),
                 headers={**JSON, **_rfc9440(world, "admin")})
    assert ok.status == 200, ok.body
    assert request(front_proxy.port, "POST", "/graphql", body=VERSION, headers=JSON).status == 401


def test_websocket_subscription_passes_for_a_viewer(world: World, tls_proxy: RunningProxy) -> None:
    context = client_context(world, world.proxy_file("viewer"))
    with connect(f"wss://127.0.0.1:{tls_proxy.port}/graphql", ssl=context, subprotocols=["graphql-ws"], open_timeout=20) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(ws.recv(timeout=20))["type"] == "connection_ack"
        ws.send(json.dumps({"type": "start", "id": "1", "payload": {
            "query": "subscription L { locationStateChangeEvents { event { message } } }", "variables": {}}}))
        ws.send(json.dumps({"type": "start", "id": "2", "payload": {"query": "mutation { setNuxSeen }", "variables": {}}}))
        refusal = json.loads(ws.recv(timeout=20))
        assert refusal["type"] == "error" and refusal["id"] == "2"
        ws.send(json.dumps({"type": "start", "id": "3", "payload": {
            "query": 'subscription C { capturedLogs(logKey: ["x"]) { stdout } }', "variables": {}}}))
        refusal = json.loads(ws.recv(timeout=20))
        assert refusal["type"] == "error" and refusal["id"] == "3" and "captured_logs" in refusal["payload"]["message"]


def test_static_files_pass(world: World, tls_proxy: RunningProxy) -> None:
    context = client_context(world, world.proxy_file("viewer"))
    index = request(tls_proxy.port, "GET", "/", context=context).body.decode()
    import re

    script = re.search(r'src="(/[^"]+\.js)"', index)
    assert script, index[:500]
    reply = request(tls_proxy.port, "GET", script.group(1), context=context, headers={"Accept-Encoding": "identity"})
    assert reply.status == 200 and len(reply.body) > 1000


def test_decisions_are_audited(world: World, tls_proxy: RunningProxy, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="b2cal.proxy.audit"):
        graphql(world, tls_proxy, "viewer", {"query": "mutation { wipeAssets(assetPartitionRanges: []) { __typename } }"})
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "b2cal.proxy.audit"]
    deny = [r for r in records if r["decision"] == "deny"][-1]
    assert deny["user"] == "viewer" and "wipe" in deny["why"] and "wipeAssets" in deny["what"]


def test_server_context_refuses_renegotiation_and_session_resumption(world: World) -> None:
    from b2cal_assets.proxy.server import make_server_ssl_context

    from .harness import base_config

    context = make_server_ssl_context(base_config(world))
    assert context.options & ssl.OP_NO_RENEGOTIATION and context.options & ssl.OP_NO_TICKET
    assert context.num_tickets == 0


def test_each_keep_alive_connection_keeps_its_own_identity(world: World, tls_proxy: RunningProxy) -> None:
    import http.client

    query = json.dumps({"query": "{ instance { info } }"}).encode()
    viewer = http.client.HTTPSConnection("127.0.0.1", tls_proxy.port, timeout=30, context=client_context(world, world.proxy_file("viewer")))
    admin = http.client.HTTPSConnection("127.0.0.1", tls_proxy.port, timeout=30, context=client_context(world, world.proxy_file("admin")))
    try:
        for _ in range(3):  # interleaved requests on two kept-alive connections
            for connection, expected in ((viewer, 403), (admin, 200), (viewer, 403)):
                connection.request("POST", "/graphql", body=query, headers=JSON)
                response = connection.getresponse()
                response.read()
                assert response.status == expected
    finally:
        viewer.close()
        admin.close()



def test_webserver_down_is_a_502_with_a_clear_reason(world: World) -> None:
    proxy = RunningProxy(base_config(world, upstream=f"http://127.0.0.1:{free_port()}"))  # nothing listens there
    try:
        context = client_context(world, world.proxy_file("viewer"))
        for method, path, body, headers in (("POST", "/graphql", json.dumps({"query": "{ version }"}).encode(), JSON),
                                            ("GET", "/server_info", None, {})):
            reply = request(proxy.port, method, path, context=context, body=body, headers=headers)
            assert reply.status == 502, (path, reply.body[:200])
            assert reply.json()["error"] == "Dagster webserver unavailable"
    finally:
        proxy.stop()


def test_answer_breaking_off_mid_stream_reaches_the_client_as_truncated(world: World) -> None:
    import http.client
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one_broken_answer() -> None:
        connection, _ = listener.accept()
        with connection:
            data = b""
            while b"\r\n\r\n" not in data:
                data += connection.recv(65536)
            # A chunked answer whose end never comes: the webserver dies after the first chunk.
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")

    server = threading.Thread(target=serve_one_broken_answer, daemon=True)
    server.start()
    proxy = RunningProxy(base_config(world, upstream=f"http://127.0.0.1:{port}"))
    try:
        connection = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=30,
                                                 context=client_context(world, world.proxy_file("viewer")))
        try:
            connection.request("GET", "/favicon.png")
            response = connection.getresponse()
            assert response.status == 200  # the status was relayed before the break
            with pytest.raises(http.client.IncompleteRead):
                response.read()
        finally:
            connection.close()
    finally:
        proxy.stop()
        server.join(10)
        listener.close()


def test_repeated_plain_reads_skip_the_decision_but_nothing_else_does(world: World, monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    from b2cal_assets.proxy import server

    classified: list[str] = []
    real = server.classify_operation

    def counting(query: str, operation_name: str | None):  # type: ignore[no-untyped-def]
        classified.append(query)
        return real(query, operation_name)

    monkeypatch.setattr(server, "classify_operation", counting)
    proxy = RunningProxy(base_config(world))
    try:
        version = {"query": "query V { version }"}
        for _ in range(3):
            assert graphql(world, proxy, "viewer", version)[0] == 200
        assert len(classified) == 1  # decided once, then remembered for this user and body
        assert graphql(world, proxy, "launcher", version)[0] == 200
        assert len(classified) == 2  # another user: decided again
        assert graphql(world, proxy, "viewer", {"query": "query V { version } "})[0] == 200
        assert len(classified) == 3  # other bytes: decided again

        wipe = {"query": "mutation { wipeAssets(assetPartitionRanges: []) { __typename } }"}
        info = {"query": "{ instance { info } }"}
        with caplog.at_level(logging.INFO, logger="b2cal.proxy.audit"):
            for _ in range(2):
                assert graphql(world, proxy, "viewer", wipe)[0] == 403
                assert graphql(world, proxy, "admin", info)[0] == 200
        assert len(classified) == 7  # refusals and sensitive reads are decided every time ...
        records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "b2cal.proxy.audit"]
        assert sum(r["decision"] == "deny" for r in records) == 2  # ... and audited every time
        assert sum(r["decision"] == "allow" and r["user"] == "admin" for r in records) == 2
    finally:
        proxy.stop()
