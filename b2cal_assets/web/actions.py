"""The review actions as the GraphQL launches the Dagster UI itself sends. Pure.

A sign-off is ``launchRun`` of the promotion asset for the bucket's partition; a rejection is
``launchRun`` of the ``reject_bucket`` job with the bucket and the reason as op config. The
page's script posts exactly these documents to ``/graphql``, where the proxy decides and tags
them as it does for the UI; the page decides whether to show a button by asking the same
decision function about the same document (``console.py``), so a button is shown exactly when
the launch would be allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from b2cal_assets.auth.run_tags import TAG_USER

PROMOTION_ASSET = ("validation", "bucket_promotion")
REJECT_JOB = "reject_bucket"
REJECT_OP = "reject_staging"
ASSET_JOB = "__ASSET_JOB"
# A client tag (b2cal/* tags are the proxy's): lets the page find the runs launched for a bucket.
BUCKET_TAG = "review/bucket"
PARTITION_TAG = "dagster/partition"
SIGN_OFF = "sign-off"
REJECT = "reject"
MAX_REASON = 2000
# The reject launch the page asks the proxy about; the script puts the typed reason in its place.
REASON_PLACEHOLDER = "(reason typed on the page)"

LAUNCH_QUERY = """mutation B2calReviewLaunch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
    ... on RunConflict { message }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on PresetNotFoundError { message }
    ... on NoModeProvidedError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
LAUNCH_OPERATION = "B2calReviewLaunch"


@dataclass(frozen=True)
class Repository:
    """Where the code location's jobs are, as the webserver names them."""

    location: str
    name: str


def _selector(repository: Repository, job: str, assets: list[list[str]] | None = None) -> dict[str, Any]:
    selector: dict[str, Any] = {"repositoryLocationName": repository.location, "repositoryName": repository.name, "jobName": job}
    if assets is not None:
        selector["assetSelection"] = [{"path": path} for path in assets]
    return selector


def sign_off_params(repository: Repository, bucket: str) -> dict[str, Any]:
    """ExecutionParams of the promotion of ``bucket`` (as the UI's "Materialize" of one partition)."""
    return {
        "selector": _selector(repository, ASSET_JOB, [list(PROMOTION_ASSET)]),
        "mode": "default",
        "executionMetadata": {"tags": [{"key": PARTITION_TAG, "value": bucket}, {"key": BUCKET_TAG, "value": bucket}]},
    }


def reject_params(repository: Repository, bucket: str, reason: str) -> dict[str, Any]:
    """ExecutionParams of the rejection of ``bucket`` with ``reason`` (the job's op config)."""
    return {
        "selector": _selector(repository, REJECT_JOB),
        "mode": "default",
        "runConfigData": {"ops": {REJECT_OP: {"config": {"bucket": bucket, "reason": reason}}}},
        "executionMetadata": {"tags": [{"key": BUCKET_TAG, "value": bucket}]},
    }


def launch_request(params: dict[str, Any]) -> dict[str, Any]:
    """The JSON body the page posts to /graphql."""
    return {"operationName": LAUNCH_OPERATION, "query": LAUNCH_QUERY, "variables": {"executionParams": params}}


RUNS_QUERY = """query B2calReviewRuns($filter: RunsFilter!, $limit: Int!) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs { results { runId status jobName creationTime startTime endTime tags { key value } } }
  }
}"""

RUN_QUERY = """query B2calReviewRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status jobName creationTime startTime endTime tags { key value } }
  }
  logsForRun(runId: $runId, limit: 2000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey message error { message } failureMetadata { description } }
        ... on RunFailureEvent { message error { message } }
      }
    }
  }
}"""

REPOSITORIES_QUERY = "query B2calReviewRepositories { repositoriesOrError { __typename ... on RepositoryConnection { nodes { name location { name } jobs { name } } } } }"

DONE = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


@dataclass(frozen=True)
class LaunchedRun:
    run_id: str
    status: str
    job: str
    user: str
    bucket: str
    action: str
    created: float | None
    reasons: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.status in DONE


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {str(t.get("key")): str(t.get("value")) for t in run.get("tags") or [] if isinstance(t, dict)}


def launched_run(run: dict[str, Any], events: list[dict[str, Any]] | None = None) -> LaunchedRun:
    """A run as the page lists it, with the failure reasons of its events (refusals included)."""
    tags = _tags(run)
    reasons: list[str] = []
    for event in events or []:
        meta = event.get("failureMetadata") or {}
        text = meta.get("description") or (event.get("error") or {}).get("message") or event.get("message") or ""
        text = str(text).strip()
        if text and text not in reasons:
            reasons.append(text)
    job = str(run.get("jobName") or "")
    return LaunchedRun(
        run_id=str(run.get("runId")), status=str(run.get("status")), job=job, user=tags.get(TAG_USER, ""),
        bucket=tags.get(BUCKET_TAG) or tags.get(PARTITION_TAG, ""), action=REJECT if job == REJECT_JOB else SIGN_OFF,
        created=run.get("creationTime"), reasons=tuple(reasons),
    )


def repository_of(data: dict[str, Any]) -> Repository | None:
    """The repository holding the reject job (the project's code location), from REPOSITORIES_QUERY."""
    nodes = ((data.get("repositoriesOrError") or {}).get("nodes")) or []
    for node in nodes:
        if any(job.get("name") == REJECT_JOB for job in node.get("jobs") or []):
            return Repository(node["location"]["name"], node["name"])
    if nodes:
        return Repository(nodes[0]["location"]["name"], nodes[0]["name"])
    return None
