"""Regression tests for the holes of the attacker's review (H1-H6), pure where possible."""

from __future__ import annotations

import json
from typing import Any

import pytest

from b2cal_assets.proxy import graphql_ops
from b2cal_assets.proxy.errors import GraphQLSyntaxError
from b2cal_assets.proxy.graphql_ops import classify_operation
from b2cal_assets.proxy.permissions import Permission


def _doubling(n: int, root: str, leaf: str) -> str:
    """A document whose fragment F_i spreads F_{i+1} twice: 2^n leaves once expanded."""
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(n))
    return f"query Q {{ {root} }} {chain} fragment F{n} on Query {{ {leaf} }}"


def _count_walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    walks: list[int] = []
    original = graphql_ops._Walker.fields

    def counting(self, selection_set):  # type: ignore[no-untyped-def]
        walks.append(1)
        return original(self, selection_set)

    monkeypatch.setattr(graphql_ops._Walker, "fields", counting)
    return walks


def test_h1_doubling_fragments_are_refused_without_expanding(monkeypatch: pytest.MonkeyPatch) -> None:
    walks = _count_walks(monkeypatch)
    for root in ("...F0", "runsOrError { ...F0 }"):
        with pytest.raises(GraphQLSyntaxError, match="expands to"):
            classify_operation(_doubling(40, root, "__typename"), None)
    assert walks == []  # refused by the (memoised) size check before any walk


def test_h1_fragment_reuse_is_walked_once_per_fragment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under the budget (2^10 leaves), a sensitive field at the bottom is still found, and the
    # walk is linear in the number of fragments, not in the expansion.
    walks = _count_walks(monkeypatch)
    query = _doubling(10, "instigationStateOrError { ...F0 }", "logEvents { events { message } }").replace(
        "on Query", "on InstigationState"
    )
    operation = classify_operation(query, None)
    assert [f.name for f in operation.root_fields] == ["instigationStateOrError"]
    assert Permission.CAPTURED_LOGS in operation.root_fields[0].sensitive
    assert len(walks) < 50


def test_h1_fragment_cycle_through_a_field_is_refused() -> None:
    query = "query Q { runsOrError { ...A } } fragment A on Query { runsOrError { ...A } }"
    with pytest.raises(GraphQLSyntaxError, match="spreads itself"):
        classify_operation(query, None)


def test_h1_long_fragment_chain_is_refused_as_too_deep() -> None:
    n = 2000
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(n))
    with pytest.raises(GraphQLSyntaxError, match="deeper"):
        classify_operation(f"query Q {{ ...F0 }} {chain} fragment F{n} on Query {{ __typename }}", None)


@pytest.mark.parametrize(
    "query",
    [
        # Schedule.futureTicks / futureTick / scheduleState.nextTick, Sensor.nextTick: each
        # evaluates the schedule or sensor in the code server, like a dry run.
        'query S($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {'
        " futureTicks(limit: 1) { results { evaluationResult { skipReason } } } } } }",
        'query S($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {'
        " scheduleState { nextTick { evaluationResult { skipReason } } } } } }",
        'query S($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor {'
        " nextTick { ...E } } } } fragment E on DryRunInstigationTick { evaluationResult { runRequests { runKey } } }",
    ],
)
def test_h2_tick_evaluation_needs_the_dry_run_permission(query: str) -> None:
    assert Permission.SCHEDULES in classify_operation(query, None).root_fields[0].sensitive


def test_h2_next_tick_timestamp_stays_readable() -> None:
    query = ('query S($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { ... on Schedule {'
             " futureTicks(limit: 3) { results { timestamp } } scheduleState { nextTick { timestamp } } } } }")
    assert classify_operation(query, None).root_fields[0].sensitive == frozenset()


def test_h2_partition_tags_evaluation_needs_run_config() -> None:
    query = ('query P($s: PartitionSetSelector!) { partitionSetOrError(partitionSetSelector: $s) {'
             ' ... on PartitionSet { partition(partitionName: "e0026.b0001") { tagsOrError { __typename } } } } }')
    assert Permission.RUN_CONFIG in classify_operation(query, None).root_fields[0].sensitive


# --- through the proxy, in front of the session's real dagster-webserver -------------------------


def _raw_tls(world: Any, proxy: Any, persona: str, head: bytes, pieces: list[bytes]) -> bytes:
    """Send ``head`` then each piece (0.3 s apart) on one TLS connection; the status line back."""
    import socket
    import time

    from .harness import client_context

    context = client_context(world, world.proxy_file(persona))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as raw, context.wrap_socket(raw) as tls:
        tls.sendall(head)
        for piece in pieces:
            tls.sendall(piece)
            time.sleep(0.3)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_h3_a_body_sent_in_pieces_is_read_whole(world: Any, tls_proxy: Any) -> None:
    # 100 kB of JSON whitespace around a harmless query, written in three pieces.
    body = json.dumps({"query": "{ __typename }"}).encode()
    body = body[:-1] + b" " * 100_000 + b"}"
    head = (f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{tls_proxy.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    answer = _raw_tls(world, tls_proxy, "viewer", head, [body[:1000], body[1000:50_000], body[50_000:]])
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


def test_h3_a_body_beyond_the_limit_is_413(world: Any, tls_proxy: Any) -> None:
    from b2cal_assets.proxy.transport import MAX_BODY_BYTES

    from .harness import JSON_HEADERS, client_context, request

    reply = request(tls_proxy.port, "POST", "/graphql", context=client_context(world, world.proxy_file("viewer")),
                    headers=JSON_HEADERS, body=b" " * (MAX_BODY_BYTES + 1))
    assert reply.status == 413


def _upgrade(world: Any, proxy: Any, headers: dict[str, str]) -> bytes:
    lines = ["GET /graphql HTTP/1.1", f"Host: 127.0.0.1:{proxy.port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: graphql-ws"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return _raw_tls(world, proxy, "viewer", ("\r\n".join(lines) + "\r\n\r\n").encode(), [])


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {},  # browsers always send Origin on an upgrade: none is not a same-origin page
    ],
)
def test_h6_cross_site_websocket_upgrade_is_refused(world: Any, tls_proxy: Any, headers: dict[str, str]) -> None:
    answer = _upgrade(world, tls_proxy, headers)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:300]


def test_h6_same_origin_websocket_upgrade_still_works(world: Any, tls_proxy: Any) -> None:
    answer = _upgrade(world, tls_proxy, {"Origin": f"https://127.0.0.1:{tls_proxy.port}", "Sec-Fetch-Site": "same-origin"})
    assert answer.startswith(b"HTTP/1.1 101"), answer[:300]
