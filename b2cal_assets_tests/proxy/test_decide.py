"""Policy evaluation, transports, identity tags and headers, without a server."""

from __future__ import annotations

import json

import pytest

from b2cal_assets.proxy.decide import Facts, Principal, RunFacts, authorize, facts_needed, inject_identity
from b2cal_assets.proxy.errors import BadRequestError, PolicyFileError
from b2cal_assets.proxy.graphql_ops import classify_operation
from b2cal_assets.proxy.headers import forward_request_headers, forward_response_headers, rfc9440_chain
from b2cal_assets.proxy.permissions import classify_path, Permission
from b2cal_assets.proxy.policy import Grant, load_policy, policy_from_mapping
from b2cal_assets.proxy.transport import GraphQLRequest, extract_http, extract_ws_message

POLICY = load_policy()
LAUNCH = "mutation L($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename } }"
GROUPS = {("ecl_gains",): "ecl", ("beam_spot",): "beam", ("payload_promotion",): "promotion"}


def principal(*grants: Grant, username: str = "alice") -> Principal:
    return Principal(dn="/C=JP/CN=Alice", username=username, grants=grants, role_source="voms")


def launch_request(*keys: str, tags: list | None = None) -> GraphQLRequest:
    params = {"selector": {"jobName": "__ASSET_JOB", "repositoryName": "r", "repositoryLocationName": "l",
                           "assetSelection": [{"path": [k]} for k in keys]},
              "executionMetadata": {"tags": tags or []}}
    return GraphQLRequest(LAUNCH, {"p": params})


def decide(who: Principal, request: GraphQLRequest, *, mutations_allowed: bool = True, facts: Facts | None = None):
    operation = classify_operation(request.query, request.operation_name)
    return authorize(POLICY, who, operation, request, facts or Facts(groups=GROUPS), mutations_allowed=mutations_allowed, transport="test")


def test_viewer_reads_but_cannot_launch() -> None:
    viewer = principal(Grant("viewer"))
    assert decide(viewer, GraphQLRequest("{ version }")).allowed
    assert not decide(viewer, launch_request("ecl_gains")).allowed


def test_scoped_launcher_launches_only_its_groups() -> None:
    ecl = principal(Grant("viewer"), Grant("launcher", frozenset({"ecl"})))
    assert decide(ecl, launch_request("ecl_gains")).allowed
    refused = decide(ecl, launch_request("ecl_gains", "beam_spot"))
    assert not refused.allowed and "beam" in refused.reason


def test_unknown_selection_needs_an_unscoped_launch_and_promote() -> None:
    request = launch_request()
    request.variables["p"]["selector"].pop("assetSelection")
    assert not decide(principal(Grant("launcher", frozenset({"ecl"}))), request).allowed
    assert not decide(principal(Grant("launcher")), request).allowed  # whole job may include promotion assets
    assert decide(principal(Grant("admin")), request).allowed


def test_promotion_assets_need_the_reviewer() -> None:
    assert not decide(principal(Grant("launcher")), launch_request("payload_promotion")).allowed
    assert decide(principal(Grant("reviewer")), launch_request("payload_promotion")).allowed


def test_unknown_mutation_is_denied() -> None:
    decision = decide(principal(Grant("admin")), GraphQLRequest("mutation { brandNewMutation }"))
    assert not decision.allowed and "unknown mutation" in decision.reason


def test_mutations_only_over_json_post() -> None:
    decision = decide(principal(Grant("admin")), GraphQLRequest("mutation { setNuxSeen }"), mutations_allowed=False)
    assert not decision.allowed and "application/json" in decision.reason


def test_nux_and_telemetry_are_allowed_to_viewers() -> None:
    assert decide(principal(Grant("viewer")), GraphQLRequest("mutation { setNuxSeen }")).allowed


def test_sensitive_queries_need_their_permission() -> None:
    query = GraphQLRequest("{ instance { info } }")
    assert not decide(principal(Grant("launcher")), query).allowed
    assert decide(principal(Grant("admin")), query).allowed
    logs = GraphQLRequest('{ capturedLogs(logKey: ["r"]) { stdout } }')
    assert not decide(principal(Grant("viewer")), logs).allowed


def test_launcher_terminates_only_own_runs() -> None:
    request = GraphQLRequest('mutation { terminateRuns(runIds: ["a", "b"]) { __typename } }')
    operation = classify_operation(request.query, None)
    assert facts_needed(operation, request).run_ids == {"a", "b"}
    mine = Facts(runs={"a": RunFacts("a", "alice", None), "b": RunFacts("b", "alice", None)})
    mixed = Facts(runs={"a": RunFacts("a", "alice", None), "b": RunFacts("b", "bob", None)})
    assert decide(principal(Grant("launcher")), request, facts=mine).allowed
    assert not decide(principal(Grant("launcher")), request, facts=mixed).allowed
    assert decide(principal(Grant("admin")), request, facts=mixed).allowed


def test_reexecution_is_scoped_by_the_parent_runs_assets() -> None:
    request = GraphQLRequest(
        "mutation R($r: ReexecutionParams) { launchRunReexecution(reexecutionParams: $r) { __typename } }",
        {"r": {"parentRunId": "p1", "strategy": "ALL_STEPS"}},
    )
    facts = Facts(groups=GROUPS, runs={"p1": RunFacts("p1", "bob", frozenset({("beam_spot",)}))})
    assert not decide(principal(Grant("launcher", frozenset({"ecl"}))), request, facts=facts).allowed
    assert decide(principal(Grant("launcher", frozenset({"beam"}))), request, facts=facts).allowed


def test_identity_tags_are_injected_and_client_b2cal_tags_dropped() -> None:
    request = launch_request("ecl_gains", tags=[{"key": "b2cal/user", "value": "mallory"}, {"key": "note", "value": "x"}])
    who = principal(Grant("launcher"))
    assert inject_identity(classify_operation(request.query, None), request, who)
    tags = {t["key"]: t["value"] for t in request.variables["p"]["executionMetadata"]["tags"]}
    assert tags["b2cal/user"] == "alice" and tags["note"] == "x" and tags["b2cal/roles"] == "launcher"


def test_backfill_tags_are_injected() -> None:
    request = GraphQLRequest(
        "mutation B($b: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $b) { __typename } }",
        {"b": {"assetSelection": [{"path": ["ecl_gains"]}], "partitionNames": ["x"], "tags": [{"key": "b2cal/roles", "value": "admin"}]}},
    )
    operation = classify_operation(request.query, None)
    assert decide(principal(Grant("launcher", frozenset({"ecl"}))), request).allowed
    inject_identity(operation, request, principal(Grant("launcher")))
    assert {t["key"]: t["value"] for t in request.variables["b"]["tags"]}["b2cal/roles"] == "launcher"


def test_get_and_form_posts_read_the_query_string_like_the_webserver() -> None:
    payload = extract_http("POST", ["application/x-www-form-urlencoded"], [("query", "mutation { setNuxSeen }")], b"query=%7Bversion%7D")
    assert payload.requests[0].query == "mutation { setNuxSeen }" and not payload.mutations_allowed
    assert not extract_http("GET", [], [("query", "{version}")], b"").mutations_allowed
    with pytest.raises(BadRequestError):
        extract_http("GET", [], [("query", "{version}"), ("query", "mutation { setNuxSeen }")], b"")


def test_json_substring_content_type_is_parsed_as_json_but_cannot_mutate() -> None:
    body = json.dumps({"query": "mutation { setNuxSeen }"}).encode()
    sneaky = extract_http("POST", ["text/plain; x=application/json"], [], body)
    assert sneaky.requests[0].query.startswith("mutation") and not sneaky.mutations_allowed
    assert extract_http("POST", ["application/json; charset=utf-8"], [], body).mutations_allowed


def test_batched_and_duplicate_keys() -> None:
    batch = extract_http("POST", ["application/json"], [], json.dumps([{"query": "{version}"}, {"query": "mutation{setNuxSeen}"}]).encode())
    assert [r.query for r in batch.requests] == ["{version}", "mutation{setNuxSeen}"]
    with pytest.raises(BadRequestError):
        extract_http("POST", ["application/json"], [], b'{"query": "{version}", "query": "mutation{setNuxSeen}"}')


def test_websocket_start_uses_snake_case_operation_name() -> None:
    kind, start, _ = extract_ws_message(json.dumps({"type": "start", "id": "1", "payload": {"query": "subscription S { x }", "operation_name": "S"}}))
    assert kind == "start" and start is not None and start.request.operation_name == "S"
    with pytest.raises(BadRequestError):
        extract_ws_message(json.dumps({"type": "start", "payload": {"query": "{x}", "operation_name": "A", "operationName": "B"}}))


def test_identity_headers_are_stripped_in_both_spellings() -> None:
    headers = [("Client-Cert", ":AAAA:"), ("SSL_CLIENT_S_DN", "/CN=admin"), ("x-b2cal-user", "root"), ("Accept", "*/*"),
               ("Connection", "close, X-Drop"), ("X-Drop", "1"), ("Keep-Alive", "5")]
    out = dict(forward_request_headers(headers, client_ip="1.2.3.4", scheme="https", host="h"))
    assert set(out) == {"Accept", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"}
    assert forward_response_headers([("Transfer-Encoding", "chunked"), ("Content-Type", "x")]) == [("Content-Type", "x")]


def test_rfc9440_headers_parse() -> None:
    assert rfc9440_chain([("Client-Cert", ":AQI=:"), ("Client-Cert-Chain", ":AwQ=:, :BQY=:")]) == [b"\x01\x02", b"\x03\x04", b"\x05\x06"]
    assert rfc9440_chain([("Accept", "x")]) is None
    with pytest.raises(BadRequestError):
        rfc9440_chain([("Client-Cert", "AQI=")])


def test_paths_have_their_own_permissions() -> None:
    assert classify_path("/logs/run/compute_logs/x", "GET").permission is Permission.CAPTURED_LOGS
    assert classify_path("/report_asset_materialization/a", "POST").permission is Permission.REPORT_EVENTS
    assert classify_path("/download_debug/abc", "GET").permission is Permission.DEBUG_DOWNLOAD
    assert classify_path("/graphql", "GET") is None
    assert "POST" not in classify_path("/assets", "GET").methods


def test_policy_file_errors_name_the_problem() -> None:
    with pytest.raises(PolicyFileError, match="unknown permission"):
        policy_from_mapping({"vo": "belle", "roles": {"viewer": ["reed"]}, "bindings": []})
    with pytest.raises(PolicyFileError, match="not in VO"):
        policy_from_mapping({"vo": "belle", "roles": {"viewer": ["read"]}, "bindings": [{"fqan": "/atlas", "role": "viewer"}]})


def test_default_policy_maps_belle_roles() -> None:
    grants = POLICY.grants_for(fqans=["/belle/Role=NULL/Capability=NULL", "/belle/calibration/ecl"])
    assert {g.describe() for g in grants} == {"viewer", "launcher[ecl]"}
    assert POLICY.grants_for(dirac_groups=["belle_admin"])[0].role == "admin"
