"""Refusals the Dagster UI shows: the UnauthorizedError member (aliases, fragments), GraphQL
errors otherwise; through the real proxy, browsers get HTTP 200 and API clients the 403."""

from __future__ import annotations

import json

import pytest

from b2cal_assets.proxy.refusals import (
    PYTHON_ERROR_REFUSALS,
    REFUSED_HEADER,
    UnauthorizedUnions,
    graphql_refusal,
)

REASON = "launchRun: not allowed for asset group(s) beam"


@pytest.fixture(scope="module")
def unions() -> UnauthorizedUnions:
    from dagster_graphql.schema import create_schema

    return UnauthorizedUnions.from_schema(create_schema().graphql_schema)


def test_the_mutations_with_unauthorized_error_come_from_the_installed_schema(unions: UnauthorizedUnions) -> None:
    from dagster_graphql.schema import create_schema

    schema = create_schema().graphql_schema
    expected = {name for name, field in schema.mutation_type.fields.items() if "UnauthorizedError" in str(
        [t.name for t in getattr(getattr(field.type, "of_type", field.type), "types", [])])}
    assert set(unions.mutations) == expected | {"launchMultipleRuns"}  # PythonError only: in the launch table
    assert {name for name, member in unions.members.items() if member == "UnauthorizedError"} == expected - set(PYTHON_ERROR_REFUSALS)
    assert "launchRun" in unions.mutations and "launchPipelineExecution" in unions.mutations
    assert "setNuxSeen" not in unions.mutations and "logTelemetry" not in unions.mutations
    assert unions.member_types >= {"UnauthorizedError", "Error"}


def test_mutation_refusal_is_the_unauthorized_member_under_the_alias(unions: UnauthorizedUnions) -> None:
    query = "mutation M($id: String!) { go: terminateRun(runId: $id) { kind: __typename ... on UnauthorizedError { why: message } ... on PythonError { message } } }"
    assert graphql_refusal(query, None, REASON, unions) == {"data": {"go": {"kind": "UnauthorizedError", "why": REASON}}}


def test_mutation_refusal_honours_named_fragments_and_the_error_interface(unions: UnauthorizedUnions) -> None:
    query = """mutation M($id: String!) { ...Root }
    fragment Root on Mutation { deletePipelineRun(runId: $id) { __typename ...Err } }
    fragment Err on Error { message }"""
    assert graphql_refusal(query, "M", REASON, unions) == {
        "data": {"deletePipelineRun": {"__typename": "UnauthorizedError", "message": REASON}}}


# The UI's own launch document (LaunchPipelineExecution in ui-core), abridged to its error members.
UI_LAUNCH = """mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { id } }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
    ...PythonErrorFragment
  }
}
fragment PythonErrorFragment on PythonError { message stack errorChain { ...PythonErrorChain } }
fragment PythonErrorChain on ErrorChainLink { isExplicitLink error { message stack } }"""


def test_launches_are_refused_with_the_python_error_the_launch_dialog_shows(unions: UnauthorizedUnions) -> None:
    assert graphql_refusal(UI_LAUNCH, None, REASON, unions) == {"data": {"launchPipelineExecution": {
        "__typename": "PythonError", "message": REASON, "stack": [], "errorChain": []}}}
    query = "mutation { r: launchRun(executionParams: {}) { __typename ... on Error { m: message } ... on PythonError { className causes { message } cause { message } } } }"
    assert graphql_refusal(query, None, REASON, unions) == {"data": {"r": {
        "__typename": "PythonError", "m": REASON, "className": "UnauthorizedError", "causes": [], "cause": None}}}
    multiple = "mutation { launchMultipleRuns(executionParamsList: []) { __typename ... on LaunchMultipleRunsResult { launchMultipleRunsResult { __typename } } ...PythonErrorFragment } } fragment PythonErrorFragment on PythonError { message stack }"
    assert graphql_refusal(multiple, None, REASON, unions) == {"data": {"launchMultipleRuns": {
        "__typename": "PythonError", "message": REASON, "stack": []}}}
    for name in PYTHON_ERROR_REFUSALS:
        assert unions.members[name] == "PythonError", name


def test_mutation_refusal_returns_only_what_was_selected(unions: UnauthorizedUnions) -> None:
    query = "mutation { wipeAssets(assetPartitionRanges: []) { ... on AssetWipeSuccess { assetPartitionRanges { partitionRange { start } } } } }"
    assert graphql_refusal(query, None, REASON, unions) == {"data": {"wipeAssets": {}}}


def test_refusals_without_the_member_are_graphql_errors(unions: UnauthorizedUnions) -> None:
    error = {"data": None, "errors": [{"message": REASON, "extensions": {"code": "FORBIDDEN"}}]}
    assert graphql_refusal("query { instance { info } }", None, REASON, unions) == error
    assert graphql_refusal("mutation { setNuxSeen launchRun(executionParams: {}) { __typename } }", None, REASON, unions) == error
    assert graphql_refusal("mutation { launchRun(", None, REASON, unions) == error
    assert graphql_refusal("mutation { launchRun(executionParams: {}) { __typename } }", None, REASON, None) == error


@pytest.mark.slow
def test_browser_refusal_is_http_200_with_the_member_and_api_clients_keep_the_403(world, tls_proxy) -> None:  # type: ignore[no-untyped-def]
    from .harness import client_context, request
    from .test_proxy_integration import LAUNCH, launch_params, run_count

    before = run_count(world)
    body = json.dumps({"query": LAUNCH, "variables": {"p": launch_params(world, "beam")}}).encode()
    context = client_context(world, world.proxy_file("ecl"))
    browser = request(tls_proxy.port, "POST", "/graphql", context=context, body=body,
                      headers={"Content-Type": "application/json", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"})
    assert browser.status == 200, browser.body
    member = browser.json()["data"]["launchRun"]
    assert member["__typename"] == "PythonError" and "beam" in member["message"]
    assert "beam" in browser.headers[REFUSED_HEADER.lower()]
    api = request(tls_proxy.port, "POST", "/graphql", context=context, body=body, headers={"Content-Type": "application/json"})
    assert api.status == 403 and "beam" in api.json()["error"] and "beam" in api.headers[REFUSED_HEADER.lower()]
    query = json.dumps({"query": "{ instance { info } }"}).encode()
    refused_read = request(tls_proxy.port, "POST", "/graphql", context=context, body=query,
                           headers={"Content-Type": "application/json", "Sec-Fetch-Mode": "cors"})
    assert refused_read.status == 200 and refused_read.json()["data"] is None
    assert "instance_info" in refused_read.json()["errors"][0]["message"]
    assert run_count(world) == before
