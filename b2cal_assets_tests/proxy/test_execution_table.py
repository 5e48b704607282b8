"""The decision table: every work-starting mutation x selection shape x persona, judged on what
Dagster would execute (pure: facts shaped like the project's code location, no server).

The same shapes run against a real dagster-webserver in test_proxy_execution.py.
"""

from __future__ import annotations

import copy

import pytest

from b2cal_assets.proxy.decide import (
    BackfillFacts,
    Facts,
    JobFacts,
    JobRef,
    Principal,
    RunFacts,
    authorize,
    facts_needed,
)
from b2cal_assets.proxy.execution import PartitionSetRef, check_op_name
from b2cal_assets.proxy.graphql_ops import classify_operation
from b2cal_assets.proxy.policy import Grant, load_policy
from b2cal_assets.proxy.transport import GraphQLRequest

POLICY = load_policy()
LOCATION, REPOSITORY = "b2cal_assets.definitions", "__repository__"
JOB = JobRef(LOCATION, REPOSITORY, "__ASSET_JOB")
REJECT = JobRef(LOCATION, REPOSITORY, "reject_bucket")
ECL, CDC, BEAM = ("ecl", "ECLCrystalEnergy"), ("cdc", "CDCTimeZero"), ("beam", "BeamSpot")
PROMOTION = ("validation", "bucket_promotion")
ECL_CHECK = (ECL, "fit_converged")
GROUPS = {ECL: "ecl", CDC: "cdc", BEAM: "beam", PROMOTION: "validation"}
OPS = {"ecl__ECLCrystalEnergy": frozenset({ECL}), "cdc__CDCTimeZero": frozenset({CDC}), "beam__BeamSpot": frozenset({BEAM}),
       "validation__bucket_promotion": frozenset({PROMOTION}), check_op_name(ECL_CHECK): frozenset()}
PARTITION_SET = PartitionSetRef(LOCATION, REPOSITORY, "__ASSET_JOB_partition_set")
PERSONAS = {
    "viewer": (Grant("viewer"),),
    "ecl": (Grant("viewer"), Grant("launcher", frozenset({"ecl"}))),
    "launcher": (Grant("viewer"), Grant("launcher")),
    "reviewer": (Grant("viewer"), Grant("reviewer")),
    "editor": (Grant("viewer"), Grant("editor")),
    "admin": (Grant("admin"),),
}


def who(name: str) -> Principal:
    return Principal(dn=f"/CN={name}", username=name, grants=PERSONAS[name], role_source="voms")


def identity(name: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in who(name).identity_tags()}


FACTS = Facts(
    groups=GROUPS,
    jobs={JOB: JobFacts(JOB, OPS, GROUPS, frozenset({ECL_CHECK})), REJECT: JobFacts(REJECT, {"reject_staging": frozenset()}, {})},
    runs={
        "run-ecl": RunFacts("run-ecl", "ecl", frozenset({ECL}), JOB, None, identity("ecl")),
        "run-whole": RunFacts("run-whole", "launcher", None, JOB, None, identity("launcher")),
        "run-promotion": RunFacts("run-promotion", "reviewer", frozenset({PROMOTION}), JOB, None, identity("reviewer")),
        "run-check": RunFacts("run-check", "ecl", None, JOB, frozenset({ECL_CHECK}), identity("ecl")),
    },
    backfills={
        "bf-promotion": BackfillFacts("bf-promotion", identity("reviewer"), frozenset({PROMOTION}), None, "FAILED"),
        "bf-ecl": BackfillFacts("bf-ecl", identity("ecl"), frozenset({ECL}), None, "FAILED"),
        "bf-job": BackfillFacts("bf-job", identity("admin"), None, PARTITION_SET, "FAILED"),
    },
    partition_sets={PARTITION_SET: JOB},
)


def selector(job: JobRef = JOB, **narrowing) -> dict:
    return {"repositoryLocationName": job.location, "repositoryName": job.repository, "jobName": job.job, **narrowing}


def key(path: tuple[str, ...]) -> dict:
    return {"path": list(path)}


# Selection shapes: ExecutionParams.selector narrowing -> who may launch it.
EVERYONE_LAUNCHING = {"launcher", "editor", "admin"}
SHAPES = {
    "missing": ({}, {"admin"}),  # whole job: promotion assets included
    "empty list": ({"assetSelection": []}, {"admin"}),
    "empty lists": ({"assetSelection": [], "assetCheckSelection": []}, {"admin"}),
    "narrowing": ({"assetSelection": [key(ECL)]}, {"ecl"} | EVERYONE_LAUNCHING),
    "out of scope": ({"assetSelection": [key(BEAM)]}, EVERYONE_LAUNCHING),
    "mixed scope": ({"assetSelection": [key(ECL), key(CDC)]}, EVERYONE_LAUNCHING),
    "protected": ({"assetSelection": [key(PROMOTION)]}, {"reviewer", "admin"}),
    "solidSelection protected": ({"assetSelection": [], "solidSelection": ["validation__bucket_promotion"]}, {"reviewer", "admin"}),
    "solidSelection in scope": ({"solidSelection": ["ecl__ECLCrystalEnergy"]}, {"ecl"} | EVERYONE_LAUNCHING),
    "solidSelection query": ({"solidSelection": ["*ecl__ECLCrystalEnergy"]}, {"admin"}),  # read as the whole job
    "assetCheckSelection in scope": ({"assetCheckSelection": [{"assetKey": key(ECL), "name": "fit_converged"}]},
                                     {"ecl"} | EVERYONE_LAUNCHING),
    "assetCheckSelection empty": ({"assetCheckSelection": []}, {"admin"}),
    "assets without checks": ({"assetSelection": [key(ECL)], "assetCheckSelection": []}, {"ecl"} | EVERYONE_LAUNCHING),
}

LAUNCHES = {
    "launchRun": ("mutation M($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename } }", False),
    "launchPipelineExecution": ("mutation M($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) { __typename } }", False),
    "launchMultipleRuns": ("mutation M($p: [ExecutionParams!]!) { launchMultipleRuns(executionParamsList: $p) { __typename } }", True),
    "launchRunReexecution": ("mutation M($p: ExecutionParams) { launchRunReexecution(executionParams: $p) { __typename } }", False),
    "launchPipelineReexecution": ("mutation M($p: ExecutionParams) { launchPipelineReexecution(executionParams: $p) { __typename } }", False),
}


def decide(name: str, query: str, variables: dict, facts: Facts = FACTS):
    request = GraphQLRequest(query, copy.deepcopy(variables))
    operation = classify_operation(query, None)
    return authorize(POLICY, who(name), operation, request, facts, mutations_allowed=True, transport="test")


def execution_params(narrowing: dict, **extra) -> dict:
    params = {"selector": selector(**narrowing), "executionMetadata": {"tags": []}, **extra}
    if "parentRunId" in extra:
        params.pop("parentRunId")
        params["executionMetadata"].update(parentRunId=extra["parentRunId"], rootRunId=extra["parentRunId"])
    return params


@pytest.mark.parametrize("persona", sorted(PERSONAS))
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("mutation", sorted(LAUNCHES))
def test_launches_are_judged_by_what_would_run(mutation: str, shape: str, persona: str) -> None:
    query, is_list = LAUNCHES[mutation]
    narrowing, allowed = SHAPES[shape]
    params = execution_params(narrowing, **({"parentRunId": "run-ecl"} if "Reexecution" in mutation else {}))
    decision = decide(persona, query, {"p": [params] if is_list else params})
    assert decision.allowed == (persona in allowed), (mutation, shape, persona, decision.reason)
    if not decision.allowed:
        assert decision.reason and decision.detail


def test_a_list_launch_is_judged_by_every_run() -> None:
    query = LAUNCHES["launchMultipleRuns"][0]
    both = [execution_params({"assetSelection": [key(ECL)]}), execution_params({"assetSelection": []})]
    assert not decide("ecl", query, {"p": both}).allowed
    assert decide("ecl", query, {"p": both[:1]}).allowed
    assert not decide("ecl", query, {"p": []}).allowed


def test_the_base_permission_is_always_required() -> None:
    """A viewer starts nothing, not even work resolving to no asset (the branch that forgot it)."""
    query = "mutation M($b: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $b) { __typename } }"
    empty = {"b": {"partitionsByAssets": [], "partitionNames": []}}
    refused = decide("viewer", query, empty)
    assert not refused.allowed and "launch or promote" in refused.reason
    assert decide("launcher", query, empty).allowed


REEXECUTE = "mutation M($r: ReexecutionParams) { launchRunReexecution(reexecutionParams: $r) { __typename } }"


@pytest.mark.parametrize(("parent", "allowed"), [
    ("run-ecl", {"ecl"} | EVERYONE_LAUNCHING),  # a scoped launcher re-executes its own run
    ("run-whole", {"admin"}),  # no selection: the whole job again
    ("run-promotion", {"reviewer", "admin"}),
    ("run-check", {"ecl"} | EVERYONE_LAUNCHING),  # a check-only run of an ECL asset
])
@pytest.mark.parametrize("strategy", ["ALL_STEPS", "FROM_FAILURE", "FROM_ASSET_FAILURE"])
def test_reexecution_is_judged_by_the_parents_selection(parent: str, allowed: set[str], strategy: str) -> None:
    for persona in PERSONAS:
        decision = decide(persona, REEXECUTE, {"r": {"parentRunId": parent, "strategy": strategy}})
        assert decision.allowed == (persona in allowed), (parent, persona, decision.reason)


def test_reexecution_by_execution_params_is_judged_by_the_selector_sent() -> None:
    query = LAUNCHES["launchRunReexecution"][0]
    # The parent ran ECL assets; the selector sent asks for the promotion: that is what runs.
    params = execution_params({"assetSelection": [key(PROMOTION)]}, parentRunId="run-ecl")
    assert not decide("ecl", query, {"p": params}).allowed
    assert decide("reviewer", query, {"p": params}).allowed


def test_reexecution_facts_follow_the_parent_to_its_job() -> None:
    request = GraphQLRequest(REEXECUTE, {"r": {"parentRunId": "run-ecl", "strategy": "ALL_STEPS"}})
    needed = facts_needed(classify_operation(REEXECUTE, None), request)
    assert needed.run_ids == {"run-ecl"} and needed.run_jobs == {"run-ecl"}


@pytest.mark.parametrize("variables", [
    {"r": {"parentRunId": "run-unknown", "strategy": "ALL_STEPS"}},
    {"r": {"parentRunId": "run-ecl", "strategy": "FROM_SOMEWHERE"}},
    {"r": {"strategy": "ALL_STEPS"}},
    {"r": None},
])
def test_unresolvable_reexecutions_fail_closed(variables: dict) -> None:
    decision = decide("admin", REEXECUTE, variables)
    assert not decision.allowed and "cannot tell what this would execute" in decision.reason


@pytest.mark.parametrize("params", [
    {"selector": {"repositoryName": REPOSITORY, "jobName": "__ASSET_JOB"}},  # no location
    {"selector": selector(JobRef(LOCATION, REPOSITORY, "no_such_job"))},
    {"selector": selector(assetSelection=[{"path": "ecl"}])},
    {"selector": selector(assetSelection=[key(("not", "in_the_job"))])},
    {"selector": selector(assetCheckSelection=[{"assetKey": key(("ghost",)), "name": "c"}])},
    {"selector": selector(assetSelection="ecl")},
    {"selector": None},
])
def test_unresolvable_launches_fail_closed_even_for_admins(params: dict) -> None:
    decision = decide("admin", LAUNCHES["launchRun"][0], {"p": params})
    assert not decision.allowed and "cannot tell what this would execute" in decision.reason


def test_plain_ops_need_an_unscoped_launch_and_sign_off_jobs_promote() -> None:
    query = LAUNCHES["launchRun"][0]
    reject = {"p": {"selector": selector(REJECT), "runConfigData": {"ops": {"reject_staging": {"config": {"bucket": "b"}}}}}}
    for persona in PERSONAS:
        assert decide(persona, query, reject).allowed == (persona in {"reviewer", "admin"}), persona


BACKFILL = "mutation M($b: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $b) { __typename } }"
BACKFILL_SHAPES = {
    "assets in scope": ({"assetSelection": [key(ECL)], "partitionNames": ["b1"]}, {"ecl"} | EVERYONE_LAUNCHING),
    "assets out of scope": ({"assetSelection": [key(BEAM)], "partitionNames": ["b1"]}, EVERYONE_LAUNCHING),
    "protected assets": ({"assetSelection": [key(PROMOTION)], "allPartitions": True}, {"reviewer", "admin"}),
    "partitionsByAssets": ({"partitionsByAssets": [{"assetKey": key(PROMOTION)}]}, {"reviewer", "admin"}),
    "partition set (whole job)": ({"selector": {"partitionSetName": PARTITION_SET.name, "repositorySelector": {
        "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}}, "partitionNames": ["b1"]}, {"admin"}),
    "mixed": ({"assetSelection": [key(ECL)], "partitionsByAssets": [{"assetKey": key(PROMOTION)}]}, {"admin"}),  # ECL needs launch, the promotion promote
}


@pytest.mark.parametrize("shape", sorted(BACKFILL_SHAPES))
def test_backfills_are_judged_by_their_assets(shape: str) -> None:
    params, allowed = BACKFILL_SHAPES[shape]
    for persona in PERSONAS:
        decision = decide(persona, BACKFILL, {"b": params})
        assert decision.allowed == (persona in allowed), (shape, persona, decision.reason)


RESUME = "mutation M($id: String!) { resumePartitionBackfill(backfillId: $id) { __typename } }"
REEXECUTE_BACKFILL = "mutation M($r: ReexecutionParams) { reexecutePartitionBackfill(reexecutionParams: $r) { __typename } }"


@pytest.mark.parametrize(("query", "variables"), [
    (RESUME, lambda b: {"id": b}),
    (REEXECUTE_BACKFILL, lambda b: {"r": {"parentRunId": b, "strategy": "FROM_FAILURE"}}),
])
def test_restarting_a_backfill_is_a_new_launch_that_must_carry_the_callers_identity(query, variables) -> None:
    # The reviewer's promotion backfill: a launcher lacks promote; an admin would run it under
    # the reviewer's name (Dagster copies the tags), so only the reviewer may restart it.
    expected = {("bf-promotion", "reviewer"), ("bf-ecl", "ecl"), ("bf-job", "admin")}
    for backfill in ("bf-promotion", "bf-ecl", "bf-job"):
        for persona in PERSONAS:
            decision = decide(persona, query, variables(backfill))
            assert decision.allowed == ((backfill, persona) in expected), (backfill, persona, decision.reason)
    admin = decide("admin", query, variables("bf-promotion"))
    assert "reviewer" in admin.reason and "new backfill" in admin.reason
    assert not decide("admin", query, variables("bf-unknown")).allowed


def test_a_backfill_whose_identity_changed_roles_is_not_restarted_under_the_old_roles() -> None:
    facts = Facts(groups=GROUPS, backfills={"bf": BackfillFacts("bf", {**identity("ecl"), "b2cal/roles": "launcher,viewer"},
                                                               frozenset({ECL}), None)})
    assert not decide("ecl", RESUME, {"id": "bf"}, facts).allowed


@pytest.mark.parametrize("run_config", [
    {"resources": {"validation": {"config": {"demo_mode": True}}}},
    {"execution": {"config": {"multiprocess": {}}}},
    {"loggers": {"console": {}}},
    "resources:\n  validation:\n    config: {approver_roles: []}\n",
    "execution: {}",
])
@pytest.mark.parametrize("mutation", ["launchRun", "launchMultipleRuns", "backfill"])
def test_run_config_cannot_set_deployment_sections(run_config, mutation: str) -> None:
    if mutation == "backfill":
        query, variables = BACKFILL, {"b": {"assetSelection": [key(ECL)], "partitionNames": ["b1"], "runConfigData": run_config}}
    else:
        query, is_list = LAUNCHES[mutation]
        params = execution_params({"assetSelection": [key(ECL)]}, runConfigData=run_config)
        variables = {"p": [params] if is_list else params}
    refused = decide("launcher", query, variables)
    section = next(s for s in ("resources", "execution", "loggers") if s in str(run_config))
    assert not refused.allowed and f"runConfigData.{section}" in refused.reason
    assert decide("admin", query, variables).allowed


def test_op_config_stays_open_to_launchers() -> None:
    params = execution_params({"assetSelection": [key(ECL)]}, runConfigData={"ops": {"ecl__ECLCrystalEnergy": {"config": {"x": 1}}}})
    assert decide("ecl", LAUNCHES["launchRun"][0], {"p": params}).allowed
    broken = execution_params({"assetSelection": [key(ECL)]}, runConfigData="resources: [unclosed")
    assert not decide("admin", LAUNCHES["launchRun"][0], {"p": broken}).allowed


@pytest.mark.parametrize("spelling", ["Client_Cert", "client_cert", "CLIENT_CERT", "Client-Cert ", "X-Client-Cert"])
def test_only_the_rfc9440_names_are_read(spelling: str) -> None:
    from b2cal_assets.proxy.headers import forward_request_headers, rfc9440_chain

    item = ":" + "QUJD" + ":"
    assert rfc9440_chain([(spelling, item)]) is None
    assert rfc9440_chain([("client-cert", item)]) == [b"ABC"] == rfc9440_chain([("Client-Cert", item)])
    forwarded = forward_request_headers([(spelling.strip(), item), ("Client_Cert_Chain", item)], client_ip="1.2.3.4", scheme="https", host=None)
    assert not any("cert" in name.lower() for name, _ in forwarded)
