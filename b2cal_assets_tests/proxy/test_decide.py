"""Policy evaluation, transports, identity tags and headers, without a server."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2cal_assets.proxy.decide import (
    Facts,
    JobFacts,
    JobRef,
    Principal,
    RunFacts,
    authorize,
    authorize_path,
    facts_needed,
    inject_identity,
    path_facts_needed,
)
from b2cal_assets.proxy.errors import BadRequestError, PolicyFileError
from b2cal_assets.proxy.graphql_ops import classify_operation
from b2cal_assets.proxy.headers import forward_request_headers, forward_response_headers, rfc9440_chain
from b2cal_assets.proxy.permissions import Permission, classify_path, log_download_key, run_of_log_key
from b2cal_assets.proxy.policy import Grant, load_policy, policy_from_mapping
from b2cal_assets.proxy.transport import GraphQLRequest, extract_http, extract_ws_message

POLICY = load_policy()
LAUNCH = "mutation L($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename } }"
GROUPS = {("ecl_gains",): "ecl", ("beam_spot",): "beam", ("payload_promotion",): "promotion"}
ASSET_JOB = JobRef("l", "r", "__ASSET_JOB")
JOBS = {ASSET_JOB: JobFacts(ASSET_JOB, {k[0]: frozenset({k}) for k in GROUPS}, GROUPS)}


def principal(*grants: Grant, username: str = "alice") -> Principal:
    return Principal(dn="/C=JP/CN=Alice", username=username, grants=grants, role_source="voms")


def launch_request(*keys: str, tags: list | None = None) -> GraphQLRequest:
    params = {"selector": {"jobName": "__ASSET_JOB", "repositoryName": "r", "repositoryLocationName": "l",
                           "assetSelection": [{"path": [k]} for k in keys]},
              "executionMetadata": {"tags": tags or []}}
    return GraphQLRequest(LAUNCH, {"p": params})


def decide(who: Principal, request: GraphQLRequest, *, mutations_allowed: bool = True, facts: Facts | None = None):
    operation = classify_operation(request.query, request.operation_name)
    return authorize(POLICY, who, operation, request, facts or Facts(groups=GROUPS, jobs=JOBS), mutations_allowed=mutations_allowed, transport="test")


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
    facts = Facts(groups=GROUPS, jobs=JOBS, runs={"p1": RunFacts("p1", "bob", frozenset({("beam_spot",)}), ASSET_JOB)})
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


# --- captured logs: admins read all, launchers the logs of their own runs ------------------

RUN_LOG_KEY = ["r1", "compute_logs", "abcdefgh"]
OWN_AND_OTHERS = Facts(runs={"r1": RunFacts("r1", "alice", None), "r2": RunFacts("r2", "bob", None)})
LOG_OPERATIONS = (
    "query Q($k: [String!]!) { capturedLogs(logKey: $k) { stdout stderr cursor } }",
    "query Q($k: [String!]!) { capturedLogsMetadata(logKey: $k) { stdoutDownloadUrl stderrDownloadUrl } }",
    "subscription S($k: [String!]!) { capturedLogs(logKey: $k) { stdout stderr cursor } }",
)


def decide_logs(who: Principal, query: str, log_key, facts: Facts = OWN_AND_OTHERS):
    request = GraphQLRequest(query, {"k": log_key})
    operation = classify_operation(query, None)
    transport = "websocket" if operation.kind == "subscription" else "test"
    return authorize(POLICY, who, operation, request, facts, mutations_allowed=False, transport=transport)


@pytest.mark.parametrize("query", LOG_OPERATIONS)
def test_launcher_reads_the_captured_logs_of_own_runs_only(query: str) -> None:
    launcher = principal(Grant("viewer"), Grant("launcher"))
    operation = classify_operation(query, None)
    assert facts_needed(operation, GraphQLRequest(query, {"k": RUN_LOG_KEY})).run_ids == {"r1"}
    allowed = decide_logs(launcher, query, RUN_LOG_KEY)
    assert allowed.allowed and allowed.permissions == ("launch",) and "own run r1" in allowed.detail
    others = decide_logs(launcher, query, ["r2", "compute_logs", "abcdefgh"])
    assert not others.allowed and "own runs" in others.reason and "bob" in others.detail
    unknown = decide_logs(launcher, query, ["r9", "compute_logs", "abcdefgh"])
    assert not unknown.allowed and "unknown" in unknown.detail


@pytest.mark.parametrize("query", LOG_OPERATIONS)
def test_admin_reads_every_captured_log_and_a_viewer_none(query: str) -> None:
    tick_log = ["repo", "new_run_files", "20250101_120000"]
    for key in (RUN_LOG_KEY, ["r2", "compute_logs", "x"], ["r9", "compute_logs", "x"], tick_log):
        assert decide_logs(principal(Grant("admin")), query, key).allowed
    refused = decide_logs(principal(Grant("viewer")), query, RUN_LOG_KEY)
    assert not refused.allowed and "captured_logs" in refused.reason
    # The reviewer launches sign-offs (promote) but holds no launch: no captured logs.
    assert not decide_logs(principal(Grant("reviewer")), query, RUN_LOG_KEY).allowed


def test_a_scoped_launcher_reads_own_run_logs_whatever_the_runs_assets() -> None:
    ecl = principal(Grant("viewer"), Grant("launcher", frozenset({"ecl"})))
    assert decide_logs(ecl, LOG_OPERATIONS[0], RUN_LOG_KEY).allowed
    assert not decide_logs(ecl, LOG_OPERATIONS[0], ["r2", "compute_logs", "x"]).allowed


@pytest.mark.parametrize("log_key", [
    ["repo", "new_run_files", "20250101_120000"],  # a sensor tick's log
    ["r1", "compute_logs", "..", "r2", "compute_logs", "x"],  # climbs into another run's directory
    ["r1", "compute_logs", "../../r2/compute_logs/x"],
    ["r1", "compute_logs", "a\\..\\b"],
    ["r1/../r2", "compute_logs", "x"],
    ["r1", "compute_logs"],
    ["r1", "compute_logs", "x", "y"],
    ["r1", "other", "x"],
    ["r1", "compute_logs", ""],
    ["r1", "compute_logs", "x\x00"],
    "r1",
    None,
    [["r1"], "compute_logs", "x"],
])
def test_log_keys_that_are_not_a_runs_are_refused_to_launchers(log_key) -> None:
    launcher = principal(Grant("launcher"))
    for query in LOG_OPERATIONS:
        decision = decide_logs(launcher, query, log_key)
        assert not decision.allowed, (query, log_key)


def test_log_key_literals_and_missing_variables() -> None:
    launcher = principal(Grant("launcher"))
    literal = GraphQLRequest('{ capturedLogs(logKey: ["r1", "compute_logs", "abcdefgh"]) { stdout } }')
    operation = classify_operation(literal.query, None)
    assert facts_needed(operation, literal).run_ids == {"r1"}
    assert authorize(POLICY, launcher, operation, literal, OWN_AND_OTHERS, mutations_allowed=False, transport="test").allowed
    missing = GraphQLRequest(LOG_OPERATIONS[0], {})
    operation = classify_operation(missing.query, None)
    assert facts_needed(operation, missing).empty
    assert not authorize(POLICY, launcher, operation, missing, OWN_AND_OTHERS, mutations_allowed=False, transport="test").allowed


def test_every_root_field_of_a_log_query_is_checked() -> None:
    launcher = principal(Grant("launcher"))
    query = ('{ mine: capturedLogs(logKey: ["r1", "compute_logs", "a"]) { stdout } '
             'theirs: capturedLogs(logKey: ["r2", "compute_logs", "b"]) { stdout } }')
    request = GraphQLRequest(query)
    operation = classify_operation(query, None)
    assert facts_needed(operation, request).run_ids == {"r1", "r2"}
    decision = authorize(POLICY, launcher, operation, request, OWN_AND_OTHERS, mutations_allowed=False, transport="test")
    assert not decision.allowed and "theirs:capturedLogs" in decision.reason


def test_captured_logs_under_a_run_stay_admin_only() -> None:
    # Run.capturedLogs(fileKey:) builds its key from a client-chosen file key: no owner rule.
    query = GraphQLRequest('{ runOrError(runId: "r1") { ... on Run { capturedLogs(fileKey: "a") { stdout } } } }')
    assert not decide(principal(Grant("launcher")), query, facts=OWN_AND_OTHERS).allowed
    assert decide(principal(Grant("admin")), query, facts=OWN_AND_OTHERS).allowed


def test_log_downloads_follow_the_same_rule() -> None:
    launcher, viewer, admin = principal(Grant("launcher")), principal(Grant("viewer")), principal(Grant("admin"))
    mine, theirs = "/logs/r1/compute_logs/abcdefgh/out", "/logs/r2/compute_logs/abcdefgh/err"
    assert path_facts_needed(mine).run_ids == {"r1"} and path_facts_needed("/assets").empty
    assert authorize_path(POLICY, launcher, mine, "GET", OWN_AND_OTHERS).allowed
    assert authorize_path(POLICY, launcher, mine.replace("/out", "/err"), "HEAD", OWN_AND_OTHERS).allowed
    for path in (theirs, "/logs/r9/compute_logs/x/out", mine.replace("/out", "/complete"), "/logs/repo/sensor/t/out",
                 "/logs/r1/compute_logs/out", "/logs/r1/compute_logs/abcdefgh/out/"):
        refused = authorize_path(POLICY, launcher, path, "GET", OWN_AND_OTHERS)
        assert not refused.allowed, path
    assert "captured_logs" in authorize_path(POLICY, viewer, mine, "GET", OWN_AND_OTHERS).reason
    assert authorize_path(POLICY, admin, theirs, "GET", Facts()).allowed
    assert not authorize_path(POLICY, admin, theirs, "POST", Facts()).allowed
    assert authorize_path(POLICY, viewer, "/assets", "GET", Facts()).permissions == ("read",)
    with pytest.raises(ValueError, match="GraphQL"):
        authorize_path(POLICY, viewer, "/graphql", "GET", Facts())


def test_run_log_keys_are_those_dagster_builds(tmp_path) -> None:
    from dagster._core.storage.compute_log_manager import ComputeIOType
    from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

    manager = LocalComputeLogManager(str(tmp_path))
    key = list(manager.build_log_key_for_run("0f1e2d3c-aaaa-bbbb-cccc-000011112222", "abcdefgh"))
    assert run_of_log_key(key) == "0f1e2d3c-aaaa-bbbb-cccc-000011112222"
    for io_type, extension in ((ComputeIOType.STDOUT, "out"), (ComputeIOType.STDERR, "err")):
        # The download URL the webserver hands out splits back into the same key.
        assert log_download_key(manager.get_captured_log_download_url(key, io_type)) == (key, extension)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["r1", "r2", "compute_logs", "..", ".", "", "/", "a/..", "x", "\\", "r1/../r2"]), max_size=5)
       | st.tuples(st.text(max_size=8), st.just("compute_logs"), st.text(max_size=8)).map(list))
def test_an_accepted_log_key_stays_inside_its_runs_log_directory(log_key: list) -> None:
    from pathlib import Path

    from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

    run_id = run_of_log_key(log_key)
    if run_id is None:
        return
    base = Path("/tmp/b2cal-never-created")
    try:
        where = Path(LocalComputeLogManager(str(base)).get_captured_local_path(log_key, "out"))
    except ValueError:  # dagster's own guard against leaving its base directory
        raise AssertionError(f"accepted {log_key!r} leaves the log directory") from None
    assert base.resolve() / run_id in where.parents
