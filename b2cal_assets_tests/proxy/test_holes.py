"""Regression tests for the holes of the attacker's review (H1-H6), pure where possible."""

from __future__ import annotations

import json
from typing import Any

import pytest

from b2cal_assets.proxy import graphql_ops
from b2cal_assets.proxy.errors import GraphQLSyntaxError
from b2cal_assets.proxy.graphql_ops import classify_operation
from b2cal_assets.proxy.permissions import Permission


def _doubling(n: int, root: str, leaf: str) -> str:
    """A document whose fragment F_i spreads F_{i+1} twice: 2^n leaves once expanded."""
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n))
    return f"query Q {{ {root} }} {chain} fragment F{n} on Query {{ {leaf} }}"


def _count_walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    walks: list[int] = []
    original = graphql_ops._Walker.fields

    def counting(self, selection_set):  # type: ignore[no-untyped-def]
        walks.append(1)
        return original(self, selection_set)

    monkeypatch.setattr(graphql_ops._Walker, "fields", counting)
    return walks


def test_h1_doubling_fragments_are_refused_without_expanding(monkeypatch: pytest.MonkeyPatch) -> None:
    walks = _count_walks(monkeypatch)
    for root in ("...F0", "runsOrError { ...F0 }"):
        with pytest.raises(GraphQLSyntaxError, match="expands to"):
            classify_operation(_doubling(40, root, "__typename"), None)
    assert walks == []  # refused by the (memoised) size check before any walk


def test_h1_fragment_reuse_is_walked_once_per_fragment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under the budget (2^10 leaves), a sensitive field at the bottom is still found, and the
    # walk is linear in the number of fragments, not in the expansion.
    walks = _count_walks(monkeypatch)
    query = _doubling(10, "instigationStateOrError { ...F0 }", "logEvents { events { message } }").replace(
        "on Query", "on InstigationState"
    )
    operation = classify_operation(query, None)
    assert [f.name for f in operation.root_fields] == ["instigationStateOrError"]
    assert Permission.CAPTURED_LOGS in operation.root_fields[0].sensitive
    assert len(walks) < 50


def test_h1_fragment_cycle_through_a_field_is_refused() -> None:
    query = "query Q { runsOrError { ...A } } fragment A on Query { runsOrError { ...A } }"
    with pytest.raises(GraphQLSyntaxError, match="spreads itself"):
        classify_operation(query, None)


def test_h1_long_fragment_chain_is_refused_as_too_deep() -> None:
    n = 2000
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(n))
    with pytest.raises(GraphQLSyntaxError, match="deeper"):
        classify_operation(f"query Q {{ ...F0 }} {chain} fragment F{n} on Query {{ __typename }}", None)


@pytest.mark.parametrize(
    "query",
    [
        # Schedule.futureTicks / futureTick / scheduleState.nextTick, Sensor.nextTick: each
        # evaluates the schedule or sensor in the code server, like a dry run.
        'query S($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {'
        " futureTicks(limit: 1) { results { evaluationResult { skipReason } } } } } }",
        'query S($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {'
        " scheduleState { nextTick { evaluationResult { skipReason } } } } } }",
        'query S($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {'
        " nextTick { ...E } } } } fragment E on DryRunInstigationTick { evaluationResult { runRequests { runKey } } }",
    ],
)
def test_h2_tick_evaluation_needs_the_dry_run_permission(query: str) -> None:
    assert Permission.SCHEDULES in classify_operation(query, None).root_fields[0].sensitive


def test_h2_next_tick_timestamp_stays_readable() -> None:
    query = ('query S($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {'
             " futureTicks(limit: 3) { results { timestamp } } scheduleState { nextTick { timestamp } } } } }")
    assert classify_operation(query, None).root_fields[0].sensitive == frozenset()


def test_h2_partition_tags_evaluation_needs_run_config() -> None:
    query = ('query P($s: PartitionSetSelector!) { partitionSetOrError(partitionSetSelector: $s) {'
             ' ... on PartitionSet { partition(partitionName: "e0026.b0001") { tagsOrError { __typename } } } } }')
    assert Permission.RUN_CONFIG in classify_operation(query, None).root_fields[0].sensitive


# --- through the proxy, in front of the session's real dagster-webserver -------------------------


def _raw_tls(world: Any, proxy: Any, persona: str, head: bytes, pieces: list[bytes]) -> bytes:
    """Send ``head`` then each piece (0.3 s apart) on one TLS connection; the status line back."""
    import socket
    import time

    from .harness import client_context

    context = client_context(world, world.proxy_file(persona))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as raw, context.wrap_socket(raw) as tls:
        tls.sendall(head)
        for piece in pieces:
            tls.sendall(piece)
            time.sleep(0.3)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_h3_a_body_sent_in_pieces_is_read_whole(world: Any, tls_proxy: Any) -> None:
    # 100 kB of JSON whitespace around a harmless query, written in three pieces.
    body = json.dumps({"query": "{ __typename }"}).encode()
    body = body[:-1] + b" " * 100_000 + b"}"
    head = (f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{tls_proxy.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    answer = _raw_tls(world, tls_proxy, "viewer", head, [body[:1000], body[1000:50_000], body[50_000:]])
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


def test_h3_a_body_beyond_the_limit_is_413(world: Any, tls_proxy: Any) -> None:
    from b2cal_assets.proxy.transport import MAX_BODY_BYTES

    from .harness import JSON_HEADERS, client_context, request

    reply = request(tls_proxy.port, "POST", "/graphql", context=client_context(world, world.proxy_file("viewer")),
                    headers=JSON_HEADERS, body=b" " * (MAX_BODY_BYTES + 1))
    assert reply.status == 413


def _upgrade(world: Any, proxy: Any, headers: dict[str, str]) -> bytes:
    lines = ["GET /graphql HTTP/1.1", f"Host: 127.0.0.1:{proxy.port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: graphql-ws"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return _raw_tls(world, proxy, "viewer", ("\r\n".join(lines) + "\r\n\r\n").encode(), [])


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "https://evil.example:443", "Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_h6_cross_site_websocket_upgrade_is_refused(world: Any, tls_proxy: Any, headers: dict[str, str]) -> None:
    answer = _upgrade(world, tls_proxy, headers)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:300]


@pytest.mark.parametrize("same_origin", [True, False])
def test_h6_same_origin_and_api_client_upgrades_still_work(world: Any, tls_proxy: Any, same_origin: bool) -> None:
    # Browsers always send Origin on an upgrade; an API client sends none and is not a page.
    headers = {"Origin": f"https://127.0.0.1:{tls_proxy.port}", "Sec-Fetch-Site": "same-origin"} if same_origin else {}
    answer = _upgrade(world, tls_proxy, headers)
    assert answer.startswith(b"HTTP/1.1 101"), answer[:300]


# --- H4 / H5: pure decisions --------------------------------------------------------------------

CANCEL = "mutation C($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }"
GROUPS = {("ecl_gains",): "ecl", ("payload_promotion",): "promotion"}


def _principal(*grants: Any, username: str = "alice") -> Any:
    from b2cal_assets.proxy.decide import Principal

    return Principal(dn=f"/C=JP/CN={username}", username=username, grants=grants, role_source="voms")


def _cancel(who: Any, keys: list[str], owner: str | None) -> Any:
    from b2cal_assets.proxy.decide import BackfillFacts, Facts, authorize, facts_needed
    from b2cal_assets.proxy.policy import load_policy
    from b2cal_assets.proxy.transport import GraphQLRequest

    request = GraphQLRequest(CANCEL, {"id": "bf1"})
    operation = classify_operation(CANCEL, None)
    assert facts_needed(operation, request).backfill_ids == {"bf1"}
    tags = {"b2cal/user": owner} if owner else {}
    facts = Facts(groups=GROUPS, backfills={"bf1": BackfillFacts("bf1", tags, frozenset((k,) for k in keys), None)})
    return authorize(load_policy(), who, operation, request, facts, mutations_allowed=True, transport="test")


def test_h4_cancelling_someone_elses_backfill_needs_terminate_any() -> None:
    from b2cal_assets.proxy.policy import Grant

    launcher = _principal(Grant("launcher"))
    refused = _cancel(launcher, ["ecl_gains"], owner="reviewer")
    assert not refused.allowed and "terminate_any" in refused.permissions
    assert _cancel(launcher, ["ecl_gains"], owner="alice").allowed  # own backfill
    assert not _cancel(launcher, ["ecl_gains"], owner=None).allowed  # nobody recorded: not own
    assert _cancel(_principal(Grant("admin")), ["payload_promotion"], owner="reviewer").allowed


def test_h4_cancelling_a_promotion_backfill_needs_promote_even_when_own() -> None:
    from b2cal_assets.proxy.policy import Grant

    refused = _cancel(_principal(Grant("launcher")), ["payload_promotion"], owner="alice")
    assert not refused.allowed and "promote" in refused.permissions


def test_h4_scoped_launcher_cancels_own_backfill_in_scope_only() -> None:
    from b2cal_assets.proxy.policy import Grant

    ecl = _principal(Grant("viewer"), Grant("launcher", frozenset({"ecl"})))
    assert _cancel(ecl, ["ecl_gains"], owner="alice").allowed
    assert not _cancel(ecl, ["payload_promotion"], owner="alice").allowed


def test_h4_unknown_backfill_is_refused() -> None:
    from b2cal_assets.proxy.decide import Facts, authorize
    from b2cal_assets.proxy.policy import Grant, load_policy
    from b2cal_assets.proxy.transport import GraphQLRequest

    decision = authorize(load_policy(), _principal(Grant("admin")), classify_operation(CANCEL, None),
                         GraphQLRequest(CANCEL, {"id": "nope"}), Facts(), mutations_allowed=True, transport="test")
    assert not decision.allowed and "unknown" in decision.reason


MULTI = "mutation M($p: [ExecutionParams!]!) { launchMultipleRuns(executionParamsList: $p) { __typename } }"


def _multi(n: int) -> Any:
    from b2cal_assets.proxy.transport import GraphQLRequest

    return GraphQLRequest(MULTI, {"p": [{"selector": {"repositoryLocationName": "x", "repositoryName": "y", "jobName": f"job{i}"}}
                                        for i in range(n)]})


def test_h5_viewer_is_refused_on_the_base_permission_without_facts() -> None:
    from b2cal_assets.proxy.decide import authorize
    from b2cal_assets.proxy.policy import Grant, load_policy

    request = _multi(200)
    decision = authorize(load_policy(), _principal(Grant("viewer")), classify_operation(MULTI, None), request, None,
                         mutations_allowed=True, transport="test")
    assert not decision.allowed and "launch" in decision.permissions and "unknown" not in decision.reason


def test_h5_fact_lookups_are_capped() -> None:
    from b2cal_assets.proxy.decide import MAX_FACT_LOOKUPS, facts_needed, lookups_refused

    operation = classify_operation(MULTI, None)
    assert lookups_refused(facts_needed(operation, _multi(MAX_FACT_LOOKUPS))) is None
    refused = lookups_refused(facts_needed(operation, _multi(MAX_FACT_LOOKUPS + 1)))
    assert refused is not None and not refused.allowed and "too many" in refused.reason


def test_h5_through_the_proxy_a_viewer_costs_no_upstream_query(world: Any, tls_proxy: Any) -> None:
    from .harness import JSON_HEADERS, client_context, request

    state = tls_proxy.state
    assert state.facts is not None
    calls: list[int] = []
    original = state.facts.facts

    async def counting(needed: Any) -> Any:
        calls.append(1)
        return await original(needed)

    state.facts.facts = counting
    try:
        body = _multi(200)
        reply = request(tls_proxy.port, "POST", "/graphql", context=client_context(world, world.proxy_file("viewer")),
                        headers=JSON_HEADERS, body=json.dumps({"query": body.query, "variables": body.variables}).encode())
        launcher = request(tls_proxy.port, "POST", "/graphql", context=client_context(world, world.proxy_file("launcher")),
                           headers=JSON_HEADERS, body=json.dumps({"query": body.query, "variables": body.variables}).encode())
    finally:
        del state.facts.facts
    assert calls == []  # neither the viewer (no launch) nor the launcher (over the cap) cost a look-up
    assert b"launch" in reply.body, reply.body[:300]
    assert b"too many" in launcher.body, launcher.body[:300]


def test_l2_reexecution_inherits_the_parent_runs_deployment_config() -> None:
    from b2cal_assets.proxy.decide import Facts, JobFacts, JobRef, RunFacts, authorize
    from b2cal_assets.proxy.policy import Grant, load_policy
    from b2cal_assets.proxy.transport import GraphQLRequest

    query = "mutation R($r: ReexecutionParams) { launchRunReexecution(reexecutionParams: $r) { __typename } }"
    request = GraphQLRequest(query, {"r": {"parentRunId": "p1", "strategy": "ALL_STEPS"}})
    job = JobRef("l", "r", "__ASSET_JOB")
    jobs = {job: JobFacts(job, {"ecl_gains": frozenset({("ecl_gains",)})}, GROUPS)}

    def decide(who: Any, run_config: str | None) -> Any:
        run = RunFacts("p1", "alice", frozenset({("ecl_gains",)}), job, run_config=run_config)
        return authorize(load_policy(), who, classify_operation(query, None), request,
                         Facts(groups=GROUPS, jobs=jobs, runs={"p1": run}), mutations_allowed=True, transport="test")

    launcher = _principal(Grant("launcher"))
    assert decide(launcher, "ops: {}\n").allowed
    refused = decide(launcher, "resources:\n  validation:\n    config: {demo_mode: true}\n")
    assert not refused.allowed and "deployment_config" in refused.permissions
    assert decide(_principal(Grant("admin")), "resources: {}\n").allowed
