"""What the proxy asks dagster-webserver itself: asset groups and run facts, cached.

Queries go straight to the loopback webserver (not through the role check): they are the
proxy's own reads, needed to decide launches and run-owner mutations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from .decide import TAG_USER, RunFacts
from .errors import UpstreamError
from .policy import AssetKey

log = logging.getLogger("b2cal.proxy")

ASSET_GROUPS_QUERY = "query B2calProxyAssetGroups { assetNodes { assetKey { path } groupName } }"
RUNS_QUERY = """query B2calProxyRuns($ids: [String!]) {
  runsOrError(filter: {runIds: $ids}) { __typename ... on Runs { results { runId tags { key value } assetSelection { path } } } }
}"""


class UpstreamFacts:
    """Asset -> group map (refreshed after ``ttl`` or when a key is missing) and run lookups."""

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
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
            raise UpstreamError(f"asking the webserver at {self.graphql_url} failed: {error!r}") from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise UpstreamError(f"webserver answered {str(body)[:300]} to the proxy's own query")
        return body["data"]

    async def _refresh_groups(self) -> None:
        data = await self._query(ASSET_GROUPS_QUERY)
        groups: dict[AssetKey, str | None] = {}
        for node in data.get("assetNodes") or []:
            path = (node.get("assetKey") or {}).get("path")
            if isinstance(path, list):
                groups[tuple(path)] = node.get("groupName")
        self._groups = groups
        self._fetched_at = time.monotonic()
        log.debug("asset group map refreshed: %d assets", len(groups))

    async def asset_groups(self, keys: Iterable[AssetKey]) -> dict[AssetKey, str | None]:
        keys = set(keys)
        if not keys:
            return {}
        async with self._lock:
            stale = time.monotonic() - self._fetched_at > self.ttl
            # A missing key may be a newly loaded asset: refetch, but at most once a second.
            missing = not keys <= self._groups.keys() and time.monotonic() - self._fetched_at > 1.0
            if stale or missing:
                await self._refresh_groups()
        return {key: self._groups.get(key) for key in keys}

    async def runs(self, run_ids: Iterable[str]) -> dict[str, RunFacts]:
        ids = sorted(set(run_ids))
        if not ids:
            return {}
        data = await self._query(RUNS_QUERY, {"ids": ids})
        result = data.get("runsOrError") or {}
        facts: dict[str, RunFacts] = {}
        for run in result.get("results") or []:
            tags = {t.get("key"): t.get("value") for t in run.get("tags") or []}
            selection = run.get("assetSelection")
            keys = None if selection is None else frozenset(tuple(k["path"]) for k in selection)
            facts[run["runId"]] = RunFacts(run["runId"], tags.get(TAG_USER), keys)
        return facts
