"""Issue 12 against a real dagster-webserver: requests are judged by what they would execute.

Each case goes through the proxy with a real voms-proxy-fake certificate, and what was
created (runs, backfills, their tags) is read back on the webserver's loopback port. The
webserver is the session's (harness.world); it has no daemon, so launched runs stay queued
and nothing executes: what counts is what Dagster accepted and how it tagged it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from .harness import JSON_HEADERS, RunningProxy, Webserver, World, client_context, request, upstream_graphql

pytestmark = pytest.mark.slow

# Personas: the harness's accounts; "editor" is the launcher's account presenting the operator role.
PERSONAS = {
    "viewer": ("viewer", {}),
    "ecl": ("ecl", {}),
    "launcher": ("launcher", {}),
    "reviewer": ("reviewer", {}),
    "editor": ("editor", {"user": "launcher", "fqans": ["/belle/calibration/Role=operator"]}),
    "admin": ("admin", {}),
}
ROLES = {"viewer": "viewer", "ecl": "launcher[ecl],viewer", "launcher": "launcher", "reviewer": "reviewer",
         "editor": "editor", "admin": "admin"}
USERS = {"editor": "launcher"}
ECL, BEAM, PROMOTION = ["ecl", "ECLCrystalEnergy"], ["beam", "BeamSpot"], ["validation", "bucket_promotion"]
BUCKET = "e0026.b0001"


def webserver(world: World) -> Webserver:
    return Webserver(port=world.webserver_port, pid=0, home=world.root / "dagster_home")


@functools.cache
def _repository(port: int) -> tuple[str, str]:
    data = upstream_graphql(Webserver(port, 0, None), "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")  # type: ignore[arg-type]
    node = data["repositoriesOrError"]["nodes"][0]
    return node["location"]["name"], node["name"]


def selector(world: World, job: str = "__ASSET_JOB", **narrowing: Any) -> dict[str, Any]:
    location, repository = _repository(world.webserver_port)
    return {"repositoryLocationName": location, "repositoryName": repository, "jobName": job, **narrowing}


def send(world: World, proxy: RunningProxy, persona: str, query: str, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    name, options = PERSONAS[persona]
    context = client_context(world, world.proxy_file(name, **options))
    reply = request(proxy.port, "POST", "/graphql", context=context, headers=JSON_HEADERS,
                    body=json.dumps({"query": query, "variables": variables}).encode())
    return reply.status, reply.json()


def run_ids(world: World) -> set[str]:
    data = upstream_graphql(webserver(world), "{ runsOrError(limit: 10000) { ... on Runs { results { runId } } } }")
    return {r["runId"] for r in data["runsOrError"]["results"]}


def run_tags(world: World, run_id: str) -> dict[str, str]:
    data = upstream_graphql(webserver(world), "query R($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }",
                            {"id": run_id})
    return {t["key"]: t["value"] for t in data["runOrError"]["tags"]}


def backfills(world: World) -> dict[str, dict[str, Any]]:
    data = upstream_graphql(webserver(world), "{ partitionBackfillsOrError(limit: 1000) { ... on PartitionBackfills { results {"
                                              " id status tags { key value } } } } }")
    return {b["id"]: {"status": b["status"], "tags": {t["key"]: t["value"] for t in b["tags"]}}
            for b in data["partitionBackfillsOrError"]["results"]}


def assert_tagged_as(tags: dict[str, str], persona: str) -> None:
    assert tags["b2cal/user"] == USERS.get(persona, persona), tags
    assert tags["b2cal/roles"] == ROLES[persona], tags


LAUNCH_RESULT = "__typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on InvalidSubsetError { message }"
LAUNCHES = {
    "launchRun": (f"mutation M($p: ExecutionParams!) {{ launchRun(executionParams: $p) {{ {LAUNCH_RESULT} }} }}", False),
    "launchPipelineExecution": (f"mutation M($p: ExecutionParams!) {{ launchPipelineExecution(executionParams: $p) {{ {LAUNCH_RESULT} }} }}", False),
    "launchMultipleRuns": ("mutation M($p: [ExecutionParams!]!) { launchMultipleRuns(executionParamsList: $p) { __typename"
                           f" ... on LaunchMultipleRunsResult {{ launchMultipleRunsResult {{ {LAUNCH_RESULT} }} }} }} }}", True),
}
CHECK = {"assetKey": {"path": ECL}, "name": "fit_converged"}
# shape -> (selector narrowing, personas the proxy lets through)
LAUNCHERS = {"launcher", "editor", "admin"}
SHAPES = {
    "missing": ({}, {"admin"}),
    "empty": ({"assetSelection": []}, {"admin"}),
    "narrowing": ({"assetSelection": [{"path": ECL}]}, {"ecl"} | LAUNCHERS),
    "out of scope": ({"assetSelection": [{"path": BEAM}]}, LAUNCHERS),
    "protected": ({"assetSelection": [{"path": PROMOTION}]}, {"reviewer", "admin"}),
    "via solidSelection": ({"assetSelection": [], "solidSelection": ["validation__bucket_promotion"]}, {"reviewer", "admin"}),
    "via assetCheckSelection": ({"assetCheckSelection": [CHECK]}, {"ecl"} | LAUNCHERS),
    "empty assetCheckSelection": ({"assetCheckSelection": []}, {"admin"}),
}


def launched_ids(mutation: str, body: dict[str, Any]) -> list[str]:
    result = body["data"][mutation]
    results = result["launchMultipleRunsResult"] if mutation == "launchMultipleRuns" else [result]
    return [r["run"]["runId"] for r in results if r.get("__typename") == "LaunchRunSuccess"]


# launchRun gets the whole table; the other two the bypass shapes of the issue plus a positive
# control each (every launch mutation goes through the same resolution, see the pure table).
TABLE = {
    "launchRun": (tuple(SHAPES), tuple(PERSONAS)),
    "launchPipelineExecution": (("empty", "via solidSelection", "empty assetCheckSelection", "narrowing"), ("viewer", "ecl", "launcher")),
    "launchMultipleRuns": (("empty", "via solidSelection", "narrowing"), ("viewer", "ecl", "reviewer")),
}


@pytest.mark.parametrize("mutation", sorted(LAUNCHES))
def test_launch_table_against_the_webserver(world: World, tls_proxy: RunningProxy, mutation: str) -> None:
    query, is_list = LAUNCHES[mutation]
    shapes, personas = TABLE[mutation]
    for shape in shapes:
        narrowing, allowed = SHAPES[shape]
        for persona in personas:
            params = {"selector": selector(world, **narrowing), "executionMetadata": {"tags": [{"key": "b2cal/user", "value": "admin"}]}}
            before = run_ids(world)
            status, body = send(world, tls_proxy, persona, query, {"p": [params] if is_list else params})
            created = run_ids(world) - before
            case = (mutation, shape, persona, status, str(body)[:300])
            if persona not in allowed:
                assert status == 403 and created == set(), case
                continue
            assert status == 200, case
            launched = launched_ids(mutation, body)
            assert set(launched) == created, case
            if shape in ("narrowing", "out of scope", "protected", "missing"):
                assert launched, case  # positive control: Dagster accepted the legitimate launch
            # (One check of a multi-check op cannot be subset: Dagster answers InvalidSubsetError.)
            for run_id in created:
                assert_tagged_as(run_tags(world, run_id), persona)


REEXECUTE = f"mutation R($r: ReexecutionParams) {{ launchRunReexecution(reexecutionParams: $r) {{ {LAUNCH_RESULT} }} }}"
REEXECUTE_BY_PARAMS = f"mutation R($p: ExecutionParams) {{ launchRunReexecution(executionParams: $p) {{ {LAUNCH_RESULT} }} }}"


def test_reexecution_is_a_new_launch_by_the_caller(world: World, tls_proxy: RunningProxy) -> None:
    status, body = send(world, tls_proxy, "ecl", LAUNCHES["launchRun"][0],
                        {"p": {"selector": selector(world, assetSelection=[{"path": ECL}]), "executionMetadata": {"tags": []}}})
    assert status == 200, body
    (parent,) = launched_ids("launchRun", body)
    for persona, allowed in (("viewer", False), ("reviewer", False), ("ecl", True), ("launcher", True)):
        before = run_ids(world)
        status, body = send(world, tls_proxy, persona, REEXECUTE, {"r": {"parentRunId": parent, "strategy": "ALL_STEPS"}})
        created = run_ids(world) - before
        if not allowed:
            assert status == 403 and not created, (persona, body)
            continue
        # A scoped launcher re-executes its own run (the parent's groups are looked up), and the
        # new run is the caller's, not the parent's launcher's.
        assert status == 200 and body["data"]["launchRunReexecution"]["__typename"] == "LaunchRunSuccess", (persona, body)
        (run_id,) = created
        assert_tagged_as(run_tags(world, run_id), persona)
    # The selector actually sent decides, not the parent's assets.
    sneaky = {"selector": selector(world, assetSelection=[{"path": PROMOTION}]),
              "executionMetadata": {"parentRunId": parent, "rootRunId": parent, "tags": []}}
    before = run_ids(world)
    status, body = send(world, tls_proxy, "ecl", REEXECUTE_BY_PARAMS, {"p": sneaky})
    assert status == 403 and "validation" in body["error"] and run_ids(world) == before


LAUNCH_BACKFILL = """mutation B($b: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $b) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
RESUME = "mutation R($id: String!) { resumePartitionBackfill(backfillId: $id) { __typename ... on PythonError { message } } }"
REEXECUTE_BACKFILL = """mutation R($r: ReexecutionParams) { reexecutePartitionBackfill(reexecutionParams: $r) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""


@pytest.fixture(scope="module")
def bucket(world: World) -> str:
    location, repository = _repository(world.webserver_port)
    upstream_graphql(webserver(world), """mutation A($r: RepositorySelector!, $k: String!) {
      addDynamicPartition(repositorySelector: $r, partitionsDefName: "buckets", partitionKey: $k) { __typename } }""",
                     {"r": {"repositoryLocationName": location, "repositoryName": repository}, "k": BUCKET})
    return BUCKET


def test_backfills_are_judged_by_their_assets_and_restarts_keep_the_owner(world: World, tls_proxy: RunningProxy, bucket: str) -> None:
    promotion = {"assetSelection": [{"path": PROMOTION}], "partitionNames": [bucket], "tags": []}
    before = set(backfills(world))
    for persona in ("viewer", "ecl", "launcher", "editor"):
        status, body = send(world, tls_proxy, persona, LAUNCH_BACKFILL, {"b": promotion})
        assert status == 403, (persona, body)
    status, body = send(world, tls_proxy, "ecl", LAUNCH_BACKFILL, {"b": {"partitionsByAssets": [{"assetKey": {"path": PROMOTION}}]}})
    assert status == 403
    assert set(backfills(world)) == before
    status, body = send(world, tls_proxy, "reviewer", LAUNCH_BACKFILL, {"b": promotion})
    assert status == 200 and body["data"]["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", body
    reviewers = body["data"]["launchPartitionBackfill"]["backfillId"]
    assert_tagged_as(backfills(world)[reviewers]["tags"], "reviewer")
    status, body = send(world, tls_proxy, "ecl", LAUNCH_BACKFILL, {"b": {"assetSelection": [{"path": ECL}], "partitionNames": [bucket]}})
    assert status == 200 and body["data"]["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", body
    assert_tagged_as(backfills(world)[body["data"]["launchPartitionBackfill"]["backfillId"]]["tags"], "ecl")

    # Restarting the reviewer's backfill: a launcher lacks promote; an admin would run it under
    # the reviewer's name (Dagster copies its tags), so is refused too; nothing is created.
    upstream_graphql(webserver(world), 'mutation C($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }',
                     {"id": reviewers})
    status_before = backfills(world)[reviewers]["status"]
    count = len(backfills(world))
    for persona in ("launcher", "admin", "ecl"):
        status, body = send(world, tls_proxy, persona, RESUME, {"id": reviewers})
        assert status == 403, (persona, body)
        status, body = send(world, tls_proxy, persona, REEXECUTE_BACKFILL, {"r": {"parentRunId": reviewers, "strategy": "ALL_STEPS"}})
        assert status == 403, (persona, body)
    _, body = send(world, tls_proxy, "admin", RESUME, {"id": reviewers})
    assert "reviewer" in body["error"] and "new backfill" in body["error"]
    assert backfills(world)[reviewers]["status"] == status_before and len(backfills(world)) == count
    # Its owner, with the same roles, resumes it: it stays the reviewer's.
    status, body = send(world, tls_proxy, "reviewer", RESUME, {"id": reviewers})
    assert status == 200 and body["data"]["resumePartitionBackfill"]["__typename"] == "ResumeBackfillSuccess", body
    assert backfills(world)[reviewers]["status"] == "REQUESTED"


SIGN_OFF_OVERRIDE = {"resources": {"validation": {"config": {"approver_roles": [], "demo_mode": True}}}}


def test_run_config_cannot_change_the_rules(world: World, tls_proxy: RunningProxy) -> None:
    params = {"selector": selector(world, assetSelection=[{"path": ECL}]), "runConfigData": SIGN_OFF_OVERRIDE,
              "executionMetadata": {"tags": []}}
    before = run_ids(world)
    promotion = {**params, "selector": selector(world, assetSelection=[{"path": PROMOTION}])}
    for persona, attempt in (("launcher", params), ("ecl", params), ("reviewer", promotion)):
        status, body = send(world, tls_proxy, persona, LAUNCHES["launchRun"][0], {"p": attempt})
        assert status == 403 and "runConfigData.resources" in body["error"], (persona, body)
    assert run_ids(world) == before
    # An admin passes the proxy, and Dagster itself refuses the sign-off settings in run config.
    admin = promotion
    query = "mutation M($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename ... on RunConfigValidationInvalid { errors { message } } } }"
    status, body = send(world, tls_proxy, "admin", query, {"p": admin})
    assert status == 200 and body["data"]["launchRun"]["__typename"] == "RunConfigValidationInvalid", body
    assert "demo_mode" in json.dumps(body) and run_ids(world) == before
    # Op and asset config stays open to launchers.
    ops = {**params, "runConfigData": {"ops": {}}}
    status, body = send(world, tls_proxy, "ecl", LAUNCHES["launchRun"][0], {"p": ops})
    assert status == 200, body


def test_tick_and_backfill_log_events_need_captured_logs(world: World, tls_proxy: RunningProxy) -> None:
    query = ('{ partitionBackfillsOrError { ... on PartitionBackfills { results { id logEvents(cursor: null) { events { message } } } } } }')
    for persona in ("viewer", "launcher", "reviewer"):
        status, body = send(world, tls_proxy, persona, query, {})
        assert status == 403 and "captured_logs" in body["error"], (persona, body)
    assert send(world, tls_proxy, "admin", query, {})[0] == 200


def test_only_the_rfc9440_spellings_are_read_from_the_trusted_front(world: World, front_proxy: RunningProxy) -> None:
    from .test_proxy_integration import _rfc9440

    admin = _rfc9440(world, "admin")
    body = json.dumps({"query": "{ version }"}).encode()
    for spelling in ("Client_Cert", "client_cert", "CLIENT_CERT"):
        headers = {**JSON_HEADERS, spelling: admin["Client-Cert"], spelling + "_Chain": admin["Client-Cert-Chain"]}
        assert request(front_proxy.port, "POST", "/graphql", body=body, headers=headers).status == 401, spelling
    lower = {**JSON_HEADERS, "client-cert": admin["Client-Cert"], "client-cert-chain": admin["Client-Cert-Chain"]}
    assert request(front_proxy.port, "POST", "/graphql", body=body, headers=lower).status == 200
