"""GraphQL requests out of HTTP and websocket messages, read exactly as dagster-webserver reads them.

The webserver (``dagster_webserver.graphql.graphql_http_endpoint``) takes the document from
the query string on GET, from a JSON body when the Content-Type *contains*
``application/json``, from the raw body for ``application/graphql``, and from the query
string for every other POST. The proxy classifies what the webserver will execute, so it
follows the same rules, and refuses whatever the two could read differently (duplicate
parameters or JSON keys, several Content-Type headers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequestError

MAX_BODY_BYTES = 8 << 20
GRAPHQL_KEYS = ("query", "variables", "operationName")


@dataclass
class GraphQLRequest:
    """One GraphQL request: document, variables, operation name."""

    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"query": self.query, "variables": self.variables}
        if self.operation_name is not None:
            data["operationName"] = self.operation_name
        return data


@dataclass
class GraphQLPayload:
    """Everything an HTTP request asks the GraphQL endpoint to run."""

    requests: list[GraphQLRequest]
    # Only a POST whose media type is exactly application/json may carry mutations: browsers
    # send such a request cross-site only after a CORS preflight, which the webserver fails.
    mutations_allowed: bool
    # "json" (body re-serialised after rewriting), "batch" (JSON array), "graphql", "query_string"
    source: str
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level JSON keys, kept

    def body(self) -> bytes:
        """The JSON body to forward after rewriting (only for JSON sources)."""
        if self.source == "batch":
            return json.dumps([r.to_json() for r in self.requests]).encode()
        return json.dumps({**self.extra, **self.requests[0].to_json()}).encode()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):  # rare: find the key to name it
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadRequestError(f"JSON object has key {key!r} twice", reason=f"duplicate JSON key {key!r}")
            seen.add(key)
    return result


# One decoder for every request (json.loads with a hook would build a new one each call).
_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)


def loads_strict(data: bytes | str) -> Any:
    """json.loads refusing duplicate keys (two parsers could pick different ones)."""
    try:
        # RFC 8259: JSON exchanged between systems is UTF-8 (json.loads would also guess UTF-16/32).
        return _STRICT_DECODER.decode(data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data)
    except (ValueError, UnicodeDecodeError) as error:
        if isinstance(error, BadRequestError):  # pragma: no cover - BadRequestError is not a ValueError
            raise
        raise BadRequestError(f"invalid JSON: {error}", reason="request body is not valid JSON") from None


def _variables(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = loads_strict(value) if value.strip() else None
        if value is None:
            return None
    if not isinstance(value, dict):
        raise BadRequestError(f"variables is a {type(value).__name__}, not an object", reason="variables must be a JSON object")
    return value


def _from_mapping(data: Mapping[str, Any]) -> GraphQLRequest:
    query = data.get("query")
    if query is None:
        raise BadRequestError("no GraphQL query in the request", reason="no GraphQL query found in the request")
    if not isinstance(query, str):
        raise BadRequestError(f"query is a {type(query).__name__}", reason="query must be a string")
    operation_name = data.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise BadRequestError("operationName is not a string", reason="operationName must be a string")
    return GraphQLRequest(query, _variables(data.get("variables")), operation_name)


def _from_query_string(items: Sequence[tuple[str, str]]) -> GraphQLRequest:
    seen: dict[str, str] = {}
    for key, value in items:
        if key in GRAPHQL_KEYS and key in seen:
            # Starlette keeps the last value, other parsers the first: refuse the ambiguity.
            raise BadRequestError(f"query-string parameter {key!r} given twice", reason=f"duplicate parameter {key!r}")
        seen.setdefault(key, value)
    return _from_mapping(seen)


def media_type(content_type: str) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return content_type.split(";", 1)[0].strip().lower()


def extract_http(
    method: str,
    content_types: Sequence[str],
    query_items: Sequence[tuple[str, str]],
    body: bytes,
) -> GraphQLPayload:
    """The GraphQL requests of an HTTP request to ``/graphql``; raises :class:`BadRequestError`."""
    if method in ("GET", "HEAD"):
        return GraphQLPayload([_from_query_string(query_items)], mutations_allowed=False, source="query_string")
    if method != "POST":
        raise BadRequestError(f"method {method} on /graphql", reason="GraphQL accepts GET and POST only")
    if len(content_types) > 1:
        raise BadRequestError(f"{len(content_types)} Content-Type headers", reason="several Content-Type headers")
    content_type = content_types[0] if content_types else ""
    exact_json = media_type(content_type) == "application/json"
    if "application/json" in content_type:  # the webserver's own (substring) test
        if len(body) > MAX_BODY_BYTES:
            raise BadRequestError(f"body of {len(body)} bytes", reason="request body too large")
        data = loads_strict(body)
        if isinstance(data, list):
            if not data or not all(isinstance(item, dict) for item in data):
                raise BadRequestError("batched request is not a non-empty array of objects", reason="malformed batched request")
            return GraphQLPayload([_from_mapping(item) for item in data], mutations_allowed=exact_json, source="batch")
        if not isinstance(data, dict):
            raise BadRequestError(f"JSON body is a {type(data).__name__}", reason="GraphQL body must be a JSON object")
        extra = {k: v for k, v in data.items() if k not in GRAPHQL_KEYS}
        return GraphQLPayload([_from_mapping(data)], mutations_allowed=exact_json, source="json", extra=extra)
    if "application/graphql" in content_type:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequestError("application/graphql body is not UTF-8", reason="body is not UTF-8") from None
        return GraphQLPayload([GraphQLRequest(text)], mutations_allowed=False, source="graphql")
    # Form, text/plain, multipart...: the webserver ignores the body and reads the URL.
    return GraphQLPayload([_from_query_string(query_items)], mutations_allowed=False, source="query_string")


@dataclass
class WebsocketStart:
    """A graphql-ws ``start`` message (the only type that runs anything)."""

    operation_id: Any
    request: GraphQLRequest


def extract_ws_message(text: str | bytes) -> tuple[str | None, WebsocketStart | None, dict[str, Any]]:
    """(type, start-if-any, message) of one client websocket message.

    The webserver reads ``payload.query``, ``payload.variables`` and ``payload.operation_name``
    (snake case) from ``start`` messages; a differing camel-case ``operationName`` is refused.
    """
    message = loads_strict(text)
    if not isinstance(message, dict):
        raise BadRequestError("websocket message is not a JSON object", reason="malformed websocket message")
    kind = message.get("type")
    if kind not in ("start", "subscribe"):
        return (kind if isinstance(kind, str) else None), None, message
    payload = message.get("payload")
    if not isinstance(payload, dict):
        raise BadRequestError("websocket start message without payload object", reason="malformed websocket message")
    snake, camel = payload.get("operation_name"), payload.get("operationName")
    if camel is not None and snake is not None and camel != snake:
        raise BadRequestError("operation_name and operationName differ", reason="conflicting operation names")
    request = _from_mapping({"query": payload.get("query"), "variables": payload.get("variables"), "operationName": snake if snake is not None else camel})
    return kind, WebsocketStart(message.get("id"), request), message
