"""The webserver's GraphQL schema, read by introspection and kept for a while.

The proxy shapes refusals and rewrites permission fields by the schema the webserver really
serves, so a Dagster upgrade changes both without a code change here. The schema is asked for
when first needed and again after ``ttl`` seconds (a restarted webserver may be newer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from graphql import GraphQLSchema, build_client_schema, get_introspection_query

from .refusals import UnauthorizedUnions

log = logging.getLogger("b2cal.proxy")


class UpstreamSchema:
    """``schema()``: the webserver's schema, or None while it cannot be read (callers fall back)."""

    def __init__(self, session: aiohttp.ClientSession, graphql_url: str, *, ttl: float = 600.0) -> None:
        self.session = session
        self.graphql_url = graphql_url
        self.ttl = ttl
        self._schema: GraphQLSchema | None = None
        self._unions: UnauthorizedUnions | None = None
        self._fetched_at = float("-inf")
        self._failed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def schema(self) -> GraphQLSchema | None:
        now = time.monotonic()
        if self._schema is not None and now - self._fetched_at < self.ttl:
            return self._schema
        async with self._lock:
            now = time.monotonic()
            if (self._schema is None or now - self._fetched_at >= self.ttl) and now - self._failed_at > 5.0:
                try:
                    self._schema = build_client_schema(await self._introspect())
                    self._unions = UnauthorizedUnions.from_schema(self._schema)
                    self._fetched_at = now
                except (TimeoutError, aiohttp.ClientError, ValueError, TypeError, KeyError) as error:
                    self._failed_at = now
                    log.warning("reading the webserver's GraphQL schema at %s failed: %r", self.graphql_url, error)
        return self._schema

    async def unauthorized_unions(self) -> UnauthorizedUnions | None:
        await self.schema()
        return self._unions

    async def _introspect(self) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=30)
        async with self.session.post(self.graphql_url, json={"query": get_introspection_query()}, timeout=timeout,
                                     headers={"Accept-Encoding": "identity"}) as response:
            body = await response.json(content_type=None)
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise ValueError(f"introspection answered {str(body)[:200]}")  # noqa: TRY004 - caught with the other bad answers
        return body["data"]
