"""What the proxy asks dagster-webserver itself: asset groups, jobs, runs and backfills.

Queries go straight to the loopback webserver (not through the role check): they are the
proxy's own reads, needed to decide what a request would execute. ``facts`` follows runs
and backfills to their jobs, so one call answers a whole :class:`FactsRequest`. Only the
asset -> group map is cached (for ``ttl`` seconds); jobs, runs and backfills are read fresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from b2cal_assets.auth.run_tags import TAG_USER

from .errors import UpstreamError
from .execution import (
    AssetKey,
    BackfillFacts,
    CheckKey,
    Facts,
    FactsRequest,
    JobFacts,
    JobRef,
    PartitionSetRef,
    RunFacts,
)

log = logging.getLogger("b2cal.proxy")

ASSET_GROUPS_QUERY = "query B2calProxyAssetGroups { assetNodes { assetKey { path } groupName } }"
RUNS_QUERY = """query B2calProxyRuns($ids: [String!]) {
  runsOrError(filter: {runIds: $ids}) { __typename ... on Runs { results {
    runId jobName tags { key value } assetSelection { path } assetCheckSelection { assetKey { path } name }
    runConfigYaml repositoryOrigin { repositoryLocationName repositoryName } } } }
}"""
JOB_QUERY = """query B2calProxyJob($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) { __typename ... on Pipeline {
    solids { name definition { assetNodes { assetKey { path } groupName } } } } }
  assetNodes(pipeline: $selector) { assetKey { path } groupName
    assetChecksOrError { __typename ... on AssetChecks { checks { name assetKey { path } jobNames } } } }
}"""
BACKFILL_QUERY = """query B2calProxyBackfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) { __typename ... on PartitionBackfill {
    id status isAssetBackfill tags { key value } assetSelection { path } assetCheckSelection { assetKey { path } name }
    partitionSetName partitionSet { name pipelineName repositoryOrigin { repositoryLocationName repositoryName } } } }
}"""
PARTITION_SET_QUERY = """query B2calProxyPartitionSet($repository: RepositorySelector!, $name: String) {
  partitionSetOrError(repositorySelector: $repository, partitionSetName: $name) { __typename
    ... on PartitionSet { name pipelineName } }
}"""


def _key(value: Any) -> AssetKey | None:
    path = value.get("path") if isinstance(value, dict) else None
    return tuple(path) if isinstance(path, list) and path else None


def _check(value: Any) -> CheckKey | None:
    key = _key(value.get("assetKey")) if isinstance(value, dict) else None
    return (key, value["name"]) if key is not None and isinstance(value.get("name"), str) else None


def _tags(value: Any) -> dict[str, str]:
    return {t["key"]: t["value"] for t in value or [] if isinstance(t, dict) and "key" in t and "value" in t}


class UpstreamFacts:
    """Asset -> group map (refreshed after ``ttl`` or when a key is missing) and live lookups."""

    def __init__(self, session: aiohttp.ClientSession, graphql_url: str, *, ttl: float = 30.0) -> None:
        self.session = session
        self.graphql_url = graphql_url
        self.ttl = ttl
        self._groups: dict[AssetKey, str | None] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            async with self.session.post(self.graphql_url, json={"query": query, "variables": variables or {}}) as response:
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            raise UpstreamError(f"asking the webserver at {self.graphql_url} failed: {error!r}") from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise UpstreamError(f"webserver answered {str(body)[:300]} to the proxy's own query")
        return body["data"]

    async def _refresh_groups(self) -> None:
        data = await self._query(ASSET_GROUPS_QUERY)
        groups: dict[AssetKey, str | None] = {}
        for node in data.get("assetNodes") or []:
            key = _key(node.get("assetKey"))
            if key is not None:
                groups[key] = node.get("groupName")
        self._groups = groups
        self._fetched_at = time.monotonic()
        log.debug("asset group map refreshed: %d assets", len(groups))

    async def asset_groups(self, keys: Iterable[AssetKey]) -> dict[AssetKey, str | None]:
        """Groups of the known ``keys`` (an unknown key is left out: the decision fails closed)."""
        keys = set(keys)
        if not keys:
            return {}
        async with self._lock:
            stale = time.monotonic() - self._fetched_at > self.ttl
            # A missing key may be a newly loaded asset: refetch, but at most once a second.
            missing = not keys <= self._groups.keys() and time.monotonic() - self._fetched_at > 1.0
            if stale or missing:
                await self._refresh_groups()
        return {key: self._groups[key] for key in keys if key in self._groups}

    async def runs(self, run_ids: Iterable[str]) -> dict[str, RunFacts]:
        ids = sorted(set(run_ids))
        if not ids:
            return {}
        data = await self._query(RUNS_QUERY, {"ids": ids})
        result = data.get("runsOrError") or {}
        facts: dict[str, RunFacts] = {}
        for run in result.get("results") or []:
            tags = _tags(run.get("tags"))
            selection = run.get("assetSelection")
            keys = None if selection is None else frozenset(k for k in map(_key, selection) if k is not None)
            check_selection = run.get("assetCheckSelection")
            checks = None if check_selection is None else frozenset(c for c in map(_check, check_selection) if c is not None)
            origin = run.get("repositoryOrigin") or {}
            job = None
            if origin.get("repositoryLocationName") and origin.get("repositoryName") and run.get("jobName"):
                job = JobRef(origin["repositoryLocationName"], origin["repositoryName"], run["jobName"])
            facts[run["runId"]] = RunFacts(run["runId"], tags.get(TAG_USER), keys, job, checks, tags, run.get("runConfigYaml"))
        return facts

    async def job(self, ref: JobRef) -> JobFacts | None:
        selector = {"repositoryLocationName": ref.location, "repositoryName": ref.repository, "pipelineName": ref.job}
        data = await self._query(JOB_QUERY, {"selector": selector})
        pipeline = data.get("pipelineOrError") or {}
        if pipeline.get("__typename") != "Pipeline":
            return None
        groups: dict[AssetKey, str | None] = {}
        op_assets: dict[str, frozenset[AssetKey]] = {}
        for solid in pipeline.get("solids") or []:
            keys = set()
            for node in (solid.get("definition") or {}).get("assetNodes") or []:
                key = _key(node.get("assetKey"))
                if key is not None:
                    keys.add(key)
                    groups[key] = node.get("groupName")
            op_assets[solid["name"]] = frozenset(keys)
        checks: set[CheckKey] = set()
        for node in data.get("assetNodes") or []:
            key = _key(node.get("assetKey"))
            if key is not None:
                groups.setdefault(key, node.get("groupName"))
            for check in (node.get("assetChecksOrError") or {}).get("checks") or []:
                parsed = _check(check)
                if parsed is not None and ref.job in (check.get("jobNames") or []):
                    checks.add(parsed)
        return JobFacts(ref, op_assets, groups, frozenset(checks))

    async def backfill(self, backfill_id: str) -> BackfillFacts | None:
        data = await self._query(BACKFILL_QUERY, {"id": backfill_id})
        backfill = data.get("partitionBackfillOrError") or {}
        if backfill.get("__typename") != "PartitionBackfill":
            return None
        partition_set = None
        keys = None
        if backfill.get("isAssetBackfill"):
            keys = {k for k in map(_key, backfill.get("assetSelection") or []) if k is not None}
            keys |= {c[0] for c in map(_check, backfill.get("assetCheckSelection") or []) if c is not None}
            keys = frozenset(keys)
        else:
            info = backfill.get("partitionSet") or {}
            origin = info.get("repositoryOrigin") or {}
            if origin.get("repositoryLocationName") and origin.get("repositoryName") and info.get("name"):
                partition_set = PartitionSetRef(origin["repositoryLocationName"], origin["repositoryName"], info["name"])
        return BackfillFacts(backfill["id"], _tags(backfill.get("tags")), keys, partition_set, backfill.get("status") or "")

    async def partition_set(self, ref: PartitionSetRef) -> JobRef | None:
        data = await self._query(PARTITION_SET_QUERY, {
            "repository": {"repositoryLocationName": ref.location, "repositoryName": ref.repository}, "name": ref.name})
        found = data.get("partitionSetOrError") or {}
        if found.get("__typename") != "PartitionSet" or not found.get("pipelineName"):
            return None
        return JobRef(ref.location, ref.repository, found["pipelineName"])

    async def facts(self, needed: FactsRequest) -> Facts:
        """Everything ``needed`` names, following runs and backfills to their jobs and assets."""
        if needed.empty:
            return Facts()
        runs = await self.runs(needed.run_ids)
        backfills = {i: b for i in sorted(needed.backfill_ids) if (b := await self.backfill(i)) is not None}
        partition_set_refs = set(needed.partition_sets) | {b.partition_set for b in backfills.values() if b.partition_set}
        partition_sets = {r: j for r in sorted(partition_set_refs) if (j := await self.partition_set(r)) is not None}
        job_refs = set(needed.jobs) | set(partition_sets.values())
        # Only re-executions need a run's job (terminate/delete and logs need its owner).
        job_refs |= {runs[i].job for i in needed.run_jobs if i in runs and runs[i].job is not None}  # type: ignore[misc]
        jobs = {r: j for r in sorted(job_refs) if (j := await self.job(r)) is not None}
        keys = set(needed.asset_keys) | {k for b in backfills.values() for k in (b.asset_keys or ())}
        for job in jobs.values():
            keys |= {c[0] for c in job.checks}
        groups = await self.asset_groups(keys)
        for job in jobs.values():
            groups.update(job.groups)
        return Facts(groups=groups, runs=runs, jobs=jobs, backfills=backfills, partition_sets=partition_sets)
