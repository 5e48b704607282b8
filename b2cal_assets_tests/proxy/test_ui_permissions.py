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
    answer = {"data": {"runsFeedOrError": {"__b2cal_t": "RunsFeedConnection", "results": [
        {"__b2cal_t": "PartitionBackfill", "id": "b", "x": True, "hasResumePermission": True, "__b2cal_assets": [{"path": ["ecl_gain"]}]},
        {"__b2cal_t": "Run", "id": "r", "x": True, "__b2cal_tags": [{"key": "b2cal/user", "value": "ecl"}], "__b2cal_assets": None},
    ]}}}
    ecl = policy.grants_for(fqans=["/belle/calibration/ecl"])
    rewritten = rewrite_answer(found, json.loads(json.dumps(answer)), Judge(policy, ecl, "ecl", {("ecl_gain",): "ecl"}))
    backfill, run = rewritten["data"]["runsFeedOrError"]["results"]
    assert backfill == {"id": "b", "x": False, "hasResumePermission": False}  # ECL experts do not manage backfills
    assert run == {"id": "r", "x": True}  # own run: the alias resolved against the runtime type
    launcher = policy.grants_for(fqans=["/belle/Role=production"])
    rewritten = rewrite_answer(found, json.loads(json.dumps(answer)), Judge(policy, launcher, "launcher", {("ecl_gain",): "ecl"}))
    backfill, run = rewritten["data"]["runsFeedOrError"]["results"]
    assert backfill == {"id": "b", "x": True, "hasResumePermission": True}
    assert run == {"id": "r", "x": False}  # somebody else's run


def test_documents_without_permission_fields_are_not_planned() -> None:
    assert plan(_schema(), "{ version assetNodes { id } }", None) is None
