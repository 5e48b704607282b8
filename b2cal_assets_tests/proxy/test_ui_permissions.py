"""Permission fields tell the truth for the authenticated user, through the real proxy in front
of a real dagster-webserver, for every persona, with aliases and fragments; and the schema's
permission fields are all classified."""

from __future__ import annotations

import json
from typing import Any

import pytest

from b2cal_assets.proxy.policy import load_policy
from b2cal_assets.proxy.ui_permissions import (
    DAGSTER_PERMISSIONS,
    PERMISSION_FIELDS,
    Judge,
    plan,
    rewrite_answer,
)

from .harness import RunningProxy, World, asset_launch_params, client_context, request

# Persona -> (harness user whose certificate signs the VOMS proxy, FQANs).
PERSONAS: dict[str, tuple[str, list[str]]] = {
    "viewer": ("viewer", ["/belle"]),
    "ecl": ("ecl", ["/belle", "/belle/calibration/ecl"]),
    "launcher": ("launcher", ["/belle/Role=production"]),
    "reviewer": ("reviewer", ["/belle/calibration/Role=reviewer"]),
    "editor": ("viewer", ["/belle/calibration/Role=operator"]),
    "admin": ("admin", ["/belle/Role=lcgadmin"]),
}
PROTECTED = {"promotion", "validation"}
# Who may materialise an asset of a group: the default policy, written out by hand.
def may_materialise(persona: str, group: str) -> bool:
    return {
        "viewer": False,
        "ecl": group == "ecl",
        "launcher": group not in PROTECTED,
        "reviewer": group in PROTECTED,
        "editor": group not in PROTECTED,
        "admin": True,
    }[persona]


# Dagster permission -> personas holding it (root and per-location ``permissions``).
HOLDERS = {
    "launch_pipeline_execution": {"admin"},
    "edit_sensor": {"editor", "admin"},
    "start_schedule": {"editor", "admin"},
    "terminate_pipeline_execution": {"ecl", "launcher", "reviewer", "editor", "admin"},
    "delete_pipeline_run": {"ecl", "launcher", "editor", "admin"},
    "wipe_assets": {"editor", "admin"},
    "reload_repository_location": {"editor", "admin"},
    "edit_concurrency_limit": {"admin"},
    "cancel_partition_backfill": {"launcher", "editor", "admin"},
}

QUERY = """query UiPermissions($runId: ID!) {
  rootPerms: permissions { ...Perm }
  workspaceOrError { ... on Workspace { locationEntries { name permissions { permission ok: value reason: disabledReason } } } }
  assetNodes { assetKey { path } groupName ...AssetPerms }
  runOrError(runId: $runId) { __typename ... on Run { canStop: hasTerminatePermission hasDeletePermission again: hasReExecutePermission } }
  repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { ...Start } cursor: hasCursorUpdatePermissions }
    schedules { name scheduleState { ...Start } }
    pipelines { name hasLaunchExecutionPermission rerun: hasLaunchReexecutionPermission }
    partitionSets { name hasLaunchBackfillPermission hasCancelBackfillPermission }
  } } }
}
fragment Perm on Permission { permission value disabledReason }
fragment AssetPerms on AssetNode { mat: hasMaterializePermission hasWipePermission report: hasReportRunlessAssetEventPermission }
fragment Start on InstigationState { hasStartPermission stop: hasStopPermission }
"""


def ask(world: World, proxy: RunningProxy, persona: str, payload: dict[str, Any]) -> tuple[int, Any]:
    user, fqans = PERSONAS[persona]
    context = client_context(world, world.proxy_file(f"ui-{persona}", user=user, fqans=fqans))
    reply = request(proxy.port, "POST", "/graphql", context=context, body=json.dumps(payload).encode(),
                    headers={"Content-Type": "application/json"})
    return reply.status, reply.json()


@pytest.fixture(scope="module")
def launcher_run(world: World, tls_proxy: RunningProxy) -> str:
    """A run launched by the production launcher through the proxy (it stays queued: no daemon)."""
    from .harness import Webserver

    webserver = Webserver(world.webserver_port, 0, world.root / "dagster_home")
    params = asset_launch_params(webserver, _asset_of(world, tls_proxy, "beam"))
    mutation = "mutation L($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename ... on LaunchRunSuccess { run { runId } } } }"
    status, body = ask(world, tls_proxy, "launcher", {"query": mutation, "variables": {"p": params}})
    assert status == 200 and body["data"]["launchRun"]["__typename"] == "LaunchRunSuccess", body
    return body["data"]["launchRun"]["run"]["runId"]


def _asset_of(world: World, proxy: RunningProxy, group: str) -> list[str]:
    status, body = ask(world, proxy, "admin", {"query": "{ assetNodes { assetKey { path } groupName } }"})
    assert status == 200, body
    return next(n["assetKey"]["path"] for n in body["data"]["assetNodes"] if n["groupName"] == group)


@pytest.mark.slow
@pytest.mark.parametrize("persona", list(PERSONAS))
def test_every_permission_field_tells_the_truth_for_each_persona(world: World, tls_proxy: RunningProxy, launcher_run: str,
                                                                 persona: str) -> None:
    status, body = ask(world, tls_proxy, persona, {"query": QUERY, "variables": {"runId": launcher_run}})
    assert status == 200 and "errors" not in body, body
    data = body["data"]
    assert "__b2cal" not in json.dumps(body), "injected facts must not reach the client"
    admin = persona == "admin"

    root = {p["permission"]: p for p in data["rootPerms"]}
    for name, holders in HOLDERS.items():
        assert root[name]["value"] is (persona in holders), (name, root[name])
        assert (root[name]["disabledReason"] is None) is (persona in holders), root[name]
    if persona == "ecl":
        assert root["launch_pipeline_execution"]["disabledReason"] == "needs the launcher role for every asset group (yours covers ecl)"
    if persona == "launcher":
        assert root["launch_pipeline_execution"]["disabledReason"] == "needs the reviewer role for asset group promotion"
    if persona == "viewer":
        assert root["edit_sensor"]["disabledReason"] == "needs the editor role"
    for entry in data["workspaceOrError"]["locationEntries"]:
        for permission in entry["permissions"]:
            if permission["permission"] in HOLDERS:
                assert permission["ok"] is (persona in HOLDERS[permission["permission"]]), permission
                assert (permission["reason"] is None) is permission["ok"]

    groups = set()
    for node in data["assetNodes"]:
        groups.add(node["groupName"])
        assert node["mat"] is may_materialise(persona, node["groupName"]), (persona, node)
        assert node["hasWipePermission"] is (persona in ("editor", "admin"))
        assert node["report"] is (persona in ("editor", "admin"))
    assert {"ecl", "beam"} <= groups and groups & PROTECTED

    run = data["runOrError"]
    assert run["__typename"] == "Run"
    assert run["canStop"] is (persona in ("launcher", "admin")), run  # own run, or terminate_any
    assert run["hasDeletePermission"] is (persona in ("launcher", "admin")), run
    assert run["again"] is (persona in ("launcher", "editor", "admin")), run  # a beam asset

    repository = data["repositoriesOrError"]["nodes"][0]
    instigators = [s["sensorState"] for s in repository["sensors"]] + [s["scheduleState"] for s in repository["schedules"]]
    assert repository["sensors"] and repository["schedules"]
    for state in instigators:
        assert state["hasStartPermission"] is state["stop"] is (persona in ("editor", "admin")), state
    for sensor in repository["sensors"]:
        assert sensor["cursor"] is (persona in ("editor", "admin"))
    for job in repository["pipelines"]:
        assert job["hasLaunchExecutionPermission"] is job["rerun"] is admin, job
    for partition_set in repository["partitionSets"]:
        assert partition_set["hasLaunchBackfillPermission"] is admin
        assert partition_set["hasCancelBackfillPermission"] is (persona in ("launcher", "editor", "admin"))


BACKFILL_BUCKET = "e0026.b0042"
# The three backfills (launched through the proxy, so tagged with their launcher): whose, of which group.
BACKFILL_GROUPS = {"ecl": "ecl", "launcher": "beam", "reviewer": "validation"}
CANCEL_FIELDS = """query C($id: String!) {
  one: partitionBackfillOrError(backfillId: $id) { __typename ...Cancel }
  all: partitionBackfillsOrError(limit: 100) { ... on PartitionBackfills { results { id canCancel: hasCancelPermission again: hasResumePermission } } }
}
fragment Cancel on PartitionBackfill { id hasCancelPermission hasResumePermission }"""
CANCEL = "mutation X($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }"
RESUME = "mutation R($id: String!) { resumePartitionBackfill(backfillId: $id) { __typename } }"


def may_cancel(persona: str, owner: str) -> bool:
    """The default policy written out: backfill_manage (any scope), own backfill or terminate_any
    (admin), and launch/promote on the backfill's asset group."""
    manages = persona in ("ecl", "launcher", "editor", "admin")
    return manages and (owner == persona or persona == "admin") and may_materialise(persona, BACKFILL_GROUPS[owner])


def may_resume(persona: str, owner: str) -> bool:
    """A resume runs under the backfill's copied identity tags: its launcher only (same roles),
    as a launch of its assets."""
    return persona == owner and may_materialise(persona, BACKFILL_GROUPS[owner])


@pytest.fixture(scope="module")
def backfills_by_owner(world: World, tls_proxy: RunningProxy) -> dict[str, str]:
    """One backfill per launcher persona, launched through the proxy (no daemon: they stay REQUESTED)."""
    from .harness import Webserver, upstream_graphql

    webserver = Webserver(world.webserver_port, 0, world.root / "dagster_home")
    repository = upstream_graphql(webserver, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    node = repository["repositoriesOrError"]["nodes"][0]
    upstream_graphql(webserver, """mutation A($r: RepositorySelector!, $k: String!) {
      addDynamicPartition(repositorySelector: $r, partitionsDefName: "buckets", partitionKey: $k) { __typename } }""",
                     {"r": {"repositoryLocationName": node["location"]["name"], "repositoryName": node["name"]}, "k": BACKFILL_BUCKET})
    launch = """mutation B($b: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $b) {
      __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
    found = {}
    for owner, group in BACKFILL_GROUPS.items():
        params = {"assetSelection": [{"path": _asset_of(world, tls_proxy, group)}], "partitionNames": [BACKFILL_BUCKET]}
        status, body = ask(world, tls_proxy, owner, {"query": launch, "variables": {"b": params}})
        assert status == 200 and body["data"]["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", (owner, body)
        found[owner] = body["data"]["launchPartitionBackfill"]["backfillId"]
    return found


@pytest.mark.slow
def test_backfill_cancel_permission_tells_what_the_proxy_enforces(world: World, tls_proxy: RunningProxy,
                                                                  backfills_by_owner: dict[str, str]) -> None:
    """PartitionBackfill.hasCancelPermission and hasResumePermission per persona, aliased, in a
    fragment and in a list, equal the proxy's decisions on cancelPartitionBackfill and
    resumePartitionBackfill for the same backfill."""
    owner_of = {backfill: owner for owner, backfill in backfills_by_owner.items()}
    told: dict[tuple[str, str], bool] = {}
    for persona in PERSONAS:
        for owner, backfill in backfills_by_owner.items():
            status, body = ask(world, tls_proxy, persona, {"query": CANCEL_FIELDS, "variables": {"id": backfill}})
            assert status == 200 and "errors" not in body and "__b2cal" not in json.dumps(body), body
            one = body["data"]["one"]
            assert one["__typename"] == "PartitionBackfill" and one["id"] == backfill
            assert one["hasCancelPermission"] is may_cancel(persona, owner), (persona, owner)
            assert one["hasResumePermission"] is may_resume(persona, owner), (persona, owner)
            listed = {b["id"]: (b["canCancel"], b["again"]) for b in body["data"]["all"]["results"] if b["id"] in owner_of}
            assert listed == {b: (may_cancel(persona, owner_of[b]), may_resume(persona, owner_of[b])) for b in owner_of}, persona
            told[persona, owner] = one["hasCancelPermission"]
            # The proxy's own answer to a resume (API client: a refusal is a 403).
            status, body = ask(world, tls_proxy, persona, {"query": RESUME, "variables": {"id": backfill}})
            assert (status == 200) is one["hasResumePermission"], (persona, owner, status, body)
    assert {k for k, v in told.items() if v} == {("ecl", "ecl"), ("launcher", "launcher"), ("admin", "ecl"), ("admin", "launcher"),
                                                 ("admin", "reviewer")}
    # The enforcement agrees: every persona the field says no to is refused (nothing cancelled) ...
    for (persona, owner), allowed in told.items():
        if not allowed:
            status, body = ask(world, tls_proxy, persona, {"query": CANCEL, "variables": {"id": backfills_by_owner[owner]}})
            assert status != 200 or body["data"]["cancelPartitionBackfill"]["__typename"] == "UnauthorizedError", (persona, owner, body)
    # ... and those it says yes to may cancel (each backfill once, by its first allowed persona).
    for owner, backfill in backfills_by_owner.items():
        persona = next(p for p in ("ecl", "launcher", "admin") if told[p, owner])
        status, body = ask(world, tls_proxy, persona, {"query": CANCEL, "variables": {"id": backfill}})
        assert status == 200 and body["data"]["cancelPartitionBackfill"]["__typename"] == "CancelBackfillSuccess", (persona, owner, body)


@pytest.mark.slow
def test_permission_fields_are_told_for_query_string_requests_too(world: World, tls_proxy: RunningProxy) -> None:
    from urllib.parse import quote

    user, fqans = PERSONAS["viewer"]
    context = client_context(world, world.proxy_file("ui-viewer", user=user, fqans=fqans))
    query = "{ permissions { permission value } }"
    reply = request(tls_proxy.port, "GET", "/graphql?query=" + quote(query), context=context)
    assert reply.status == 200, reply.body
    assert not any(p["value"] for p in reply.json()["data"]["permissions"] if p["permission"] in HOLDERS)


@pytest.mark.slow
def test_reserved_prefix_is_refused(world: World, tls_proxy: RunningProxy) -> None:
    status, body = ask(world, tls_proxy, "admin", {"query": "{ permissions { __b2cal_p: value permission } }"})
    assert status == 400 and "__b2cal_" in body["error"]


# --- pure: the schema is fully classified; backfills and abstract positions -----------------


def _schema() -> Any:
    from dagster_graphql.schema import create_schema

    return create_schema().graphql_schema


def test_every_permission_field_of_the_installed_schema_is_classified() -> None:
    schema = _schema()
    found = {(name, field) for name, type_ in schema.type_map.items() if not name.startswith("__")
             for field in (getattr(type_, "fields", None) or {}) if "ermission" in field and field != "permission"}
    assert found == set(PERMISSION_FIELDS)


def test_every_dagster_permission_is_mapped() -> None:
    from dagster._core.workspace.permissions import Permissions

    assert {p.value for p in Permissions} == set(DAGSTER_PERMISSIONS)


def test_backfill_fields_and_fragments_on_abstract_positions() -> None:
    policy = load_policy()
    schema = _schema()
    query = """{ runsFeedOrError { ... on RunsFeedConnection { results { ...Feed } } } }
    fragment Feed on RunsFeedEntry { id ... on PartitionBackfill { x: hasCancelPermission hasResumePermission }
                                        ... on Run { x: hasTerminatePermission } }"""
    found = plan(schema, query, None)
    assert found is not None and "__b2cal_assets: assetSelection" in found.upstream_query
    assert "__b2cal_tags: tags" in found.upstream_query.split("PartitionBackfill", 1)[1]
    answer = {"data": {"runsFeedOrError": {"__b2cal_t": "RunsFeedConnection", "results": [
        {"__b2cal_t": "PartitionBackfill", "id": "b", "x": True, "hasResumePermission": True, "__b2cal_assets": [{"path": ["ecl_gain"]}],
         "__b2cal_tags": [{"key": "b2cal/user", "value": "ecl"}, {"key": "b2cal/roles", "value": "launcher[ecl]"}]},
        {"__b2cal_t": "Run", "id": "r", "x": True, "__b2cal_tags": [{"key": "b2cal/user", "value": "ecl"}], "__b2cal_assets": None},
    ]}}}
    ecl = policy.grants_for(fqans=["/belle/calibration/ecl"])
    rewritten = rewrite_answer(found, json.loads(json.dumps(answer)), Judge(policy, ecl, "ecl", {("ecl_gain",): "ecl"}))
    backfill, run = rewritten["data"]["runsFeedOrError"]["results"]
    # Its own ECL backfill, tagged with its roles: cancelled (backfill_manage in any scope) and
    # resumed (a launch of ecl assets under its own identity) as the proxy allows.
    assert backfill == {"id": "b", "x": True, "hasResumePermission": True}
    assert run == {"id": "r", "x": True}  # own run: the alias resolved against the runtime type
    launcher = policy.grants_for(fqans=["/belle/Role=production"])
    rewritten = rewrite_answer(found, json.loads(json.dumps(answer)), Judge(policy, launcher, "launcher", {("ecl_gain",): "ecl"}))
    backfill, run = rewritten["data"]["runsFeedOrError"]["results"]
    # The ECL expert's backfill: cancelling needs terminate_any; a resume would run under the ECL expert's name.
    assert backfill == {"id": "b", "x": False, "hasResumePermission": False}
    assert run == {"id": "r", "x": False}  # somebody else's run


def test_backfill_cancel_field_asks_the_proxys_own_rule() -> None:
    """hasCancelPermission and cancelPartitionBackfill's enforcement give the same verdict: both
    ask execution.cancel_backfill_requirements through Policy.unmet."""
    from b2cal_assets.proxy.decide import BackfillFacts, Facts, Principal, authorize
    from b2cal_assets.proxy.graphql_ops import classify_operation
    from b2cal_assets.proxy.transport import GraphQLRequest

    policy = load_policy()
    schema = _schema()
    found = plan(schema, "query Q($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { hasCancelPermission } } }", None)
    assert found is not None
    cancel = "mutation C($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }"
    groups = {("ecl_gain",): "ecl", ("beam_spot",): "beam", ("bucket_promotion",): "validation"}
    cases = 0
    for persona, (_, fqans) in PERSONAS.items():
        grants = policy.grants_for(fqans=fqans)
        for owner in (persona, "somebody", None):
            for keys in ([("ecl_gain",)], [("beam_spot",)], [("bucket_promotion",)], [("ecl_gain",), ("beam_spot",)], None):
                tags = {"b2cal/user": owner} if owner else {}
                answer = {"data": {"partitionBackfillOrError": {"__b2cal_t": "PartitionBackfill", "hasCancelPermission": True,
                                                                "__b2cal_tags": [{"key": k, "value": v} for k, v in tags.items()],
                                                                "__b2cal_assets": [{"path": list(k)} for k in keys] if keys else None}}}
                told = rewrite_answer(found, answer, Judge(policy, grants, persona, groups))["data"]["partitionBackfillOrError"]["hasCancelPermission"]
                if keys is None:
                    # A job backfill: the UI cannot see its job's assets, so it assumes every
                    # group (never more permissive than the proxy).
                    assert not told or persona == "admin", (persona, owner)
                    continue
                facts = Facts(groups=groups, backfills={"bf": BackfillFacts("bf", tags, frozenset(keys), None)})
                principal = Principal(dn=f"/CN={persona}", username=persona, grants=grants, role_source="voms")
                decision = authorize(policy, principal, classify_operation(cancel, None), GraphQLRequest(cancel, {"id": "bf"}), facts,
                                     mutations_allowed=True, transport="test")
                assert told is decision.allowed, (persona, owner, keys, decision.reason)
                cases += 1
    assert cases == len(PERSONAS) * 3 * 4


def test_documents_without_permission_fields_are_not_planned() -> None:
    assert plan(_schema(), "{ version assetNodes { id } }", None) is None
