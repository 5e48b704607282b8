"""UpstreamPool (the proxy's forwarding client) against real loopback servers.

Each test starts an asyncio server on a free loopback port whose answers are exact bytes the
test chooses, so framing, keep-alive and failure cases are what the wire carries, not what a
framework would send. Every scenario runs under asyncio's event loop and under uvloop (the
proxy's loop in production). The servers' connections are closed at teardown.

Waiting is on events (the server saw a request, the client closed a connection); the only
timeout is GUARD_SECONDS, which turns a hang into a failure and is never a measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from b2cal_assets.proxy.errors import UpstreamError
from b2cal_assets.proxy.upstream_http import STREAM_HIGH_WATER_BYTES, UpstreamClosedError, UpstreamPool, UpstreamResponse

GUARD_SECONDS = 20.0

LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
try:
    import uvloop
except ImportError:  # the proxy falls back to asyncio's loop too
    pass
else:
    LOOP_FACTORIES["uvloop"] = uvloop.new_event_loop

Scenario = Coroutine[Any, Any, None]


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def run(request: pytest.FixtureRequest) -> Callable[[Scenario], None]:
    """Runs one test scenario to its end on a fresh event loop of the parametrised kind."""
    loop_factory = LOOP_FACTORIES[request.param]

    def run_scenario(scenario: Scenario) -> None:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(asyncio.wait_for(scenario, GUARD_SECONDS))

    return run_scenario


# --- the scripted loopback server ----------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server read it off the wire."""

    connection: int  # index of the server-side connection it arrived on
    head: bytes  # request line and header lines, up to and including the blank line
    body: bytes

    @property
    def method(self) -> str:
        return self.head.split(b" ", 1)[0].decode("ascii")

    @property
    def target(self) -> str:
        return self.head.split(b" ", 2)[1].decode("ascii")


class ServerConnection:
    """The server's side of one accepted connection."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.reader = reader
        self.writer = writer
        self.client_closed = asyncio.Event()  # set when the client closed (EOF or reset seen by the server)
        self.shut_down = False

    def shut_down_now(self) -> None:
        """Close this connection at once, like a server whose keep-alive timeout fired.

        The FIN leaves in this call (no event-loop turn), so a client that writes next, without
        awaiting, writes to a connection the server has already closed: the race a pool meets
        when it picks an idle connection the webserver is closing.
        """
        self.shut_down = True
        descriptor = self.writer.get_extra_info("socket").fileno()
        with socket.socket(fileno=os.dup(descriptor)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)


# Answers one request; returns whether the server keeps reading requests on this connection.
Handler = Callable[[ServerConnection, ReceivedRequest], Awaitable[bool]]


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


class LoopbackServer:
    """An HTTP/1.1 server on 127.0.0.1 that records requests and answers with the test's bytes."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[ReceivedRequest] = []
        self.connections: list[ServerConnection] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def __aenter__(self) -> LoopbackServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        # Closing a connection ends its handler (its reads see EOF); no handler is cancelled.
        for connection in self.connections:
            connection.writer.close()
        await asyncio.gather(*self._tasks)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = ServerConnection(len(self.connections), reader, writer)
        self.connections.append(connection)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.append(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    body = await reader.readexactly(_content_length(head))
                except (asyncio.IncompleteReadError, ConnectionError):
                    if not connection.shut_down:
                        connection.client_closed.set()
                    return
                if connection.shut_down:  # bytes that reached a closed server are not a request it received
                    return
                request = ReceivedRequest(connection.index, head, body)
                self.requests.append(request)
                if not await self.handler(connection, request):
                    return
                await writer.drain()
        finally:
            writer.close()

    def connection_indexes(self) -> list[int]:
        return [request.connection for request in self.requests]


def answer(raw: bytes, *, then_close: bool = False) -> Handler:
    """A handler writing ``raw`` to every request (and closing the connection if ``then_close``)."""

    async def handler(connection: ServerConnection, request: ReceivedRequest) -> bool:
        connection.writer.write(raw)
        return not then_close

    return handler


OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


@contextlib.asynccontextmanager
async def pool_for(server: LoopbackServer, **options: Any) -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool("127.0.0.1", server.port, **options)
    try:
        yield pool
    finally:
        await pool.close()


async def fetch(pool: UpstreamPool, method: str = "GET", target: str = "/", *, headers: Sequence[tuple[str, str]] = (),
                body: bytes | None = None, retry_safe: bool = True) -> tuple[UpstreamResponse, bytes]:
    """One request, its answer read whole and released."""
    response = await pool.request(method, target, headers, body, retry_safe=retry_safe)
    try:
        return response, await response.read()
    finally:
        response.release()


# --- framing of answers --------------------------------------------------------------------------


def test_content_length_answer_is_read_whole(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        raw = b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Run-Id: r42\r\nContent-Length: 11\r\n\r\nhello world"
        async with LoopbackServer(answer(raw)) as server, pool_for(server) as pool:
            response, body = await fetch(pool)
        assert (response.status, response.reason) == (201, "Created")
        assert response.headers == [("Content-Type", "text/plain"), ("X-Run-Id", "r42"), ("Content-Length", "11")]
        assert response.header("x-run-id") == "r42"
        assert response.content_length == 11
        assert not response.chunked
        assert body == b"hello world"

    run(scenario())


def test_chunked_answer_streams_in_order_and_the_connection_is_reused(run: Callable[[Scenario], None]) -> None:
    pieces = [b"first piece,", b"second,", b"third and last"]

    async def scenario() -> None:
        received = bytearray()
        received_grew = asyncio.Event()

        async def client_has(length: int) -> None:
            while len(received) < length:
                received_grew.clear()
                await received_grew.wait()

        async def stream(connection: ServerConnection, request: ReceivedRequest) -> bool:
            if request.target == "/again":
                connection.writer.write(OK_HELLO)
                return True
            connection.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            sent = 0
            for piece in pieces:
                # The next piece is sent only once the client has the previous ones: the client
                # must deliver chunks as they arrive, not at the end of the answer.
                await client_has(sent)
                connection.writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            connection.writer.write(b"0\r\n\r\n")
            return True

        async with LoopbackServer(stream) as server, pool_for(server) as pool:
            response = await pool.request("GET", "/log", [], None, retry_safe=True)
            assert response.chunked and response.content_length is None
            async for chunk in response.chunks():
                received.extend(chunk)
                received_grew.set()
            response.release()
            _, again = await fetch(pool, target="/again")
            assert bytes(received) == b"".join(pieces)
            assert again == b"hello"
            assert server.connection_indexes() == [0, 0]

    run(scenario())


def test_answer_delimited_by_close_is_read_whole(run: Callable[[Scenario], None]) -> None:
    """No Content-Length, not chunked: the body ends where the server closes (RFC 9112 6.3)."""

    async def scenario() -> None:
        async with LoopbackServer(answer(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", then_close=True)) as server, \
                pool_for(server) as pool:
            _, body = await fetch(pool)
            _, body_again = await fetch(pool)
            assert body == body_again == b"until the end"
            assert server.connection_indexes() == [0, 1]

    run(scenario())


def test_keep_alive_answers_reuse_one_connection(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        async with LoopbackServer(answer(OK_HELLO)) as server, pool_for(server) as pool:
            for _ in range(3):
                _, body = await fetch(pool)
                assert body == b"hello"
            assert server.connection_indexes() == [0, 0, 0]

    run(scenario())


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
], ids=["connection-close", "http-1.0"])
def test_answer_that_ends_the_connection_is_not_reused(run: Callable[[Scenario], None], raw: bytes) -> None:
    async def scenario() -> None:
        # The server keeps reading after such an answer: only the client's choice decides reuse.
        async with LoopbackServer(answer(raw)) as server, pool_for(server) as pool:
            _, first = await fetch(pool)
            _, second = await fetch(pool)
            assert first == second == b"hello"
            assert server.connection_indexes() == [0, 1]
            await server.connections[0].client_closed.wait()

    run(scenario())


@pytest.mark.parametrize("in_one_write", [True, False], ids=["one-write", "two-writes"])
def test_100_continue_is_skipped_for_the_real_answer(run: Callable[[Scenario], None], in_one_write: bool) -> None:
    interim = b"HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 5\r\n\r\nhello"

    async def scenario() -> None:
        async def continue_then_answer(connection: ServerConnection, request: ReceivedRequest) -> bool:
            if in_one_write:
                connection.writer.write(interim + final)
            else:
                connection.writer.write(interim)
                await connection.writer.drain()
                connection.writer.write(final)
            return True

        async with LoopbackServer(continue_then_answer) as server, pool_for(server) as pool:
            response, body = await fetch(pool, "POST", "/graphql", body=b"{}", retry_safe=False)
            assert (response.status, response.reason, body) == (200, "OK", b"hello")
            assert response.headers == [("X-Final", "yes"), ("Content-Length", "5")]
            _, body_again = await fetch(pool)
            assert body_again == b"hello"
            assert server.connection_indexes() == [0, 0]

    run(scenario())


def test_head_answer_announcing_a_body_ends_at_its_headers_and_is_not_reused(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        async def head_or_get(connection: ServerConnection, request: ReceivedRequest) -> bool:
            if request.method == "HEAD":
                connection.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                connection.writer.write(OK_HELLO)
            return True

        async with LoopbackServer(head_or_get) as server, pool_for(server) as pool:
            response, body = await fetch(pool, "HEAD", "/download")
            assert (response.status, response.content_length, body) == (200, 1000, b"")
            # The answer had no body to skip reliably: the connection is closed, not pooled.
            await server.connections[0].client_closed.wait()
            _, body_after = await fetch(pool)
            assert body_after == b"hello"
            assert server.connection_indexes() == [0, 1]

    run(scenario())


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n",  # the size of the unsent representation
], ids=["204", "304", "304-with-content-length"])
def test_answers_without_body_end_at_their_headers_and_are_reused(run: Callable[[Scenario], None], raw: bytes) -> None:
    async def scenario() -> None:
        async with LoopbackServer(answer(raw)) as server, pool_for(server) as pool:
            first, first_body = await fetch(pool)
            _, second_body = await fetch(pool)
            assert first.status in (204, 304)
            assert first_body == second_body == b""
            assert server.connection_indexes() == [0, 0]

    run(scenario())


# --- connections the server closed ---------------------------------------------------------------


async def _request_after_server_closed_the_pooled_connection(
    how: str, *, retry_safe: bool
) -> tuple[LoopbackServer, UpstreamResponse | UpstreamError, bytes]:
    """First request answered and pooled, then the server closes that connection under the second.

    ``how``: "idle" closes it while pooled, just before the client writes the second request
    (the keep-alive timeout race); "after-reading" reads the second request and closes without
    a byte of answer.
    """

    async def handler(connection: ServerConnection, request: ReceivedRequest) -> bool:
        if how == "after-reading" and connection.index == 0 and len(server.requests) == 2:
            return False
        connection.writer.write(OK_HELLO)
        return True

    async with LoopbackServer(handler) as server, pool_for(server) as pool:
        await fetch(pool)
        if how == "idle":
            server.connections[0].shut_down_now()
        # No await between the close and the request: the pool picks the closed connection.
        try:
            response, body = await fetch(pool, "POST", "/graphql", body=b"{}", retry_safe=retry_safe)
        except UpstreamError as error:
            return server, error, b""
        return server, response, body


@pytest.mark.parametrize("how", ["idle", "after-reading"])
def test_retry_safe_request_is_sent_again_when_the_pooled_connection_was_closed(
    run: Callable[[Scenario], None], how: str
) -> None:
    async def scenario() -> None:
        server, outcome, body = await _request_after_server_closed_the_pooled_connection(how, retry_safe=True)
        assert isinstance(outcome, UpstreamResponse), outcome
        assert (outcome.status, body) == (200, b"hello")
        received = [(request.connection, request.method) for request in server.requests]
        expected_second = [(0, "POST"), (1, "POST")] if how == "after-reading" else [(1, "POST")]
        assert received == [(0, "GET")] + expected_second

    run(scenario())


@pytest.mark.parametrize("how", ["idle", "after-reading"])
def test_non_retry_safe_request_is_not_sent_again_when_the_pooled_connection_was_closed(
    run: Callable[[Scenario], None], how: str
) -> None:
    async def scenario() -> None:
        server, outcome, _ = await _request_after_server_closed_the_pooled_connection(how, retry_safe=False)
        assert isinstance(outcome, UpstreamClosedError), outcome
        assert isinstance(outcome, UpstreamError)
        # At most once: never if the server closed first, once if it had read the request.
        times_received = [request.method for request in server.requests].count("POST")
        assert times_received == (1 if how == "after-reading" else 0)
        assert len(server.connections) == 1

    run(scenario())


def test_refused_connection_is_an_upstream_error_naming_the_address(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        # Bound but not listening: the port is certain to refuse, and no other test can take it.
        with socket.socket() as placeholder:
            placeholder.bind(("127.0.0.1", 0))
            port = placeholder.getsockname()[1]
            pool = UpstreamPool("127.0.0.1", port)
            with pytest.raises(UpstreamError, match=f"127.0.0.1:{port}") as caught:
                await pool.request("GET", "/", [], None, retry_safe=True)
            assert not isinstance(caught.value, UpstreamClosedError)
            await pool.close()

    run(scenario())


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 two hundred OK\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
], ids=["bad-status", "not-http", "two-content-lengths"])
def test_malformed_answer_is_an_upstream_error_and_the_connection_is_dropped(
    run: Callable[[Scenario], None], raw: bytes
) -> None:
    async def scenario() -> None:
        async def malformed_then_good(connection: ServerConnection, request: ReceivedRequest) -> bool:
            connection.writer.write(raw if len(server.requests) == 1 else OK_HELLO)
            return True

        async with LoopbackServer(malformed_then_good) as server, pool_for(server) as pool:
            with pytest.raises(UpstreamError, match="malformed"):
                await pool.request("GET", "/", [], None, retry_safe=True)
            await server.connections[0].client_closed.wait()
            _, body = await fetch(pool)
            assert body == b"hello"
            assert server.connection_indexes() == [0, 1]

    run(scenario())


def test_malformed_chunk_after_the_headers_fails_the_body(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
        async with LoopbackServer(answer(raw)) as server, pool_for(server) as pool:
            response = await pool.request("GET", "/", [], None, retry_safe=True)
            received = bytearray()
            with pytest.raises(UpstreamError):
                async for chunk in response.chunks():
                    received.extend(chunk)
            response.release()
            assert bytes(received) == b"hello"
            await server.connections[0].client_closed.wait()

    run(scenario())


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nonly ten b\r\n",
], ids=["content-length", "chunked"])
def test_server_closing_mid_body_fails_the_body(run: Callable[[Scenario], None], raw: bytes) -> None:
    async def scenario() -> None:
        async def truncated_then_whole(connection: ServerConnection, request: ReceivedRequest) -> bool:
            connection.writer.write(raw if connection.index == 0 else OK_HELLO)
            return connection.index != 0

        async with LoopbackServer(truncated_then_whole) as server, pool_for(server) as pool:
            response = await pool.request("GET", "/", [], None, retry_safe=True)
            received = bytearray()
            with pytest.raises(UpstreamError, match="mid-answer") as caught:
                async for chunk in response.chunks():
                    received.extend(chunk)
            response.release()
            # Not the "closed before answering" error a retry would act on.
            assert not isinstance(caught.value, UpstreamClosedError)
            assert bytes(received) == b"only ten b"
            _, body = await fetch(pool)  # the failed connection is not pooled
            assert body == b"hello"
            assert server.connection_indexes() == [0, 1]

    run(scenario())


# --- streaming and cancellation ------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_body_arrives_intact_while_reading_pauses_and_resumes(run: Callable[[Scenario], None], framing: str) -> None:
    payload = random.Random(20240607).randbytes(8 * 1024 * 1024)
    assert len(payload) > 8 * STREAM_HIGH_WATER_BYTES  # far more than the pool buffers before pausing
    piece_size = 100_003  # an odd size: the server's pieces straddle the client's reads

    async def scenario() -> None:
        async def stream(connection: ServerConnection, request: ReceivedRequest) -> bool:
            if request.target == "/again":
                connection.writer.write(OK_HELLO)
                return True
            framing_header = b"Content-Length: %d" % len(payload) if framing == "content-length" else b"Transfer-Encoding: chunked"
            connection.writer.write(b"HTTP/1.1 200 OK\r\n" + framing_header + b"\r\n\r\n")
            for start in range(0, len(payload), piece_size):
                piece = payload[start:start + piece_size]
                connection.writer.write(piece if framing == "content-length" else b"%x\r\n%s\r\n" % (len(piece), piece))
                await connection.writer.drain()
            if framing == "chunked":
                connection.writer.write(b"0\r\n\r\n")
            return True

        async with LoopbackServer(stream) as server, pool_for(server) as pool:
            response = await pool.request("GET", "/debug.tgz", [], None, retry_safe=True)
            # The pool's back-pressure shows only in its transport's reading state (a private attribute).
            transport = response._connection.transport
            assert transport is not None
            received = bytearray()
            times_seen_paused = 0
            async for chunk in response.chunks():
                received.extend(chunk)
                if len(received) == len(chunk):
                    # A consumer stalled after its first chunk: wait until the pool stops reading
                    # (there is no event for it, so look each time the loop has run once).
                    while transport.is_reading():
                        await asyncio.sleep(0)
                if not transport.is_reading():
                    times_seen_paused += 1
                await asyncio.sleep(0)  # then a slow consumer: one loop turn per chunk
            response.release()
            assert len(received) == len(payload)
            assert bytes(received) == payload
            assert times_seen_paused >= 1
            # The connection went back to the pool reading again: the next answer arrives.
            _, again = await fetch(pool, target="/again")
            assert again == b"hello"
            assert server.connection_indexes() == [0, 0]

    run(scenario())


def test_cancelled_caller_closes_its_connection(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        first_request_arrived = asyncio.Event()

        async def hold_first_answer(connection: ServerConnection, request: ReceivedRequest) -> bool:
            if connection.index == 0:
                first_request_arrived.set()
                await connection.reader.read()  # never answers; returns when the client closes
                return True
            connection.writer.write(OK_HELLO)
            return True

        async with LoopbackServer(hold_first_answer) as server, pool_for(server) as pool:
            waiting = asyncio.create_task(pool.request("GET", "/slow", [], None, retry_safe=True))
            await first_request_arrived.wait()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await server.connections[0].client_closed.wait()
            _, body = await fetch(pool)
            assert body == b"hello"
            assert server.connection_indexes() == [0, 1]

    run(scenario())


def test_answer_released_before_its_body_was_read_closes_the_connection(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        async def unfinished_then_whole(connection: ServerConnection, request: ReceivedRequest) -> bool:
            connection.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nstart" if connection.index == 0 else OK_HELLO)
            return True

        async with LoopbackServer(unfinished_then_whole) as server, pool_for(server) as pool:
            response = await pool.request("GET", "/", [], None, retry_safe=True)
            body = response.chunks()
            assert await anext(body) == b"start"  # nothing more is buffered: only the unfinished answer is left
            await body.aclose()
            response.release()  # the browser went away mid-download
            await server.connections[0].client_closed.wait()
            _, body_after = await fetch(pool)
            assert body_after == b"hello"
            assert server.connection_indexes() == [0, 1]

    run(scenario())


def test_releasing_an_answer_twice_pools_its_connection_once(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        async with LoopbackServer(answer(OK_HELLO)) as server, pool_for(server) as pool:
            response, _ = await fetch(pool)
            response.release()  # a second release, e.g. from an outer finally
            # Two answers held at once need two connections, not one handed out twice.
            first = await pool.request("GET", "/a", [], None, retry_safe=True)
            second = await pool.request("GET", "/b", [], None, retry_safe=True)
            assert (await first.read(), await second.read()) == (b"hello", b"hello")
            first.release()
            second.release()
            assert sorted(server.connection_indexes()) == [0, 0, 1]

    run(scenario())


def test_bytes_arriving_on_an_idle_connection_keep_it_out_of_the_pool(run: Callable[[Scenario], None]) -> None:
    """A server may write to an idle connection before closing it (408 Request Timeout)."""

    async def scenario() -> None:
        async def answer_then_time_out(connection: ServerConnection, request: ReceivedRequest) -> bool:
            connection.writer.write(OK_HELLO)
            if connection.index == 0:
                connection.writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
            return True

        async with LoopbackServer(answer_then_time_out) as server, pool_for(server) as pool:
            response = await pool.request("GET", "/", [], None, retry_safe=True)
            body = await response.read()
            response.release()
            # The 408 was written with the answer: it is read by now or with the next loop turn.
            await server.connections[0].client_closed.wait()
            _, body_after = await fetch(pool)
            assert body == body_after == b"hello"
            assert server.connection_indexes() == [0, 1]

    run(scenario())


# --- what is sent --------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    ("X-Note", "a\r\nX-B2cal-User: admin"),
    ("X-Note", "a\nX-B2cal-User: admin"),
    ("X-Note", "a\rb"),
    ("X-Note\r\nX-B2cal-User", "admin"),
    ("X-B2cal-User: admin\r\nX-Note", "a"),
], ids=["crlf-in-value", "lf-in-value", "cr-in-value", "crlf-in-name", "colon-in-name"])
def test_header_with_line_break_is_refused_before_anything_is_sent(
    run: Callable[[Scenario], None], header: tuple[str, str]
) -> None:
    async def scenario() -> None:
        async with LoopbackServer(answer(OK_HELLO)) as server, pool_for(server) as pool:
            await fetch(pool, target="/before")
            with pytest.raises(UpstreamError, match="cannot be forwarded"):
                await pool.request("GET", "/refused", [("Accept", "*/*"), header], None, retry_safe=True)
            await fetch(pool, target="/after")
            # On one connection, requests are read in order: a byte of the refused one would
            # have been read before /after.
            assert [(request.connection, request.target) for request in server.requests] == [(0, "/before"), (0, "/after")]
            assert b"admin" not in server.requests[1].head

    run(scenario())


def test_request_bytes_are_what_was_asked(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        async with LoopbackServer(answer(OK_HELLO)) as server:
            async with pool_for(server, host_header="dagster.example:3000") as pool:
                await fetch(pool, "POST", "/graphql?op=LaunchRun", retry_safe=False, body=b'{"query": "{}"}', headers=[
                    ("X-B2cal-User", "alice"), ("Accept", "application/json"), ("accept", "text/html"),
                    ("Content-Type", "application/json"),
                ])
                await fetch(pool, "GET", "/logs/r1/%F0%9F%90%8D?x=%20", headers=[("X-Raw", "caf\udcc3\udca9")])
                await fetch(pool, "DELETE", "/thing", body=b"")
            async with pool_for(server) as default_host_pool:
                await fetch(default_host_pool, "GET", "/")
        assert [(request.head, request.body) for request in server.requests] == [
            (b"POST /graphql?op=LaunchRun HTTP/1.1\r\nHost: dagster.example:3000\r\nX-B2cal-User: alice\r\n"
             b"Accept: application/json\r\naccept: text/html\r\nContent-Type: application/json\r\n"
             b"Content-Length: 15\r\n\r\n", b'{"query": "{}"}'),
            # No body: no Content-Length. A header value that was not UTF-8 goes out as its bytes.
            (b"GET /logs/r1/%F0%9F%90%8D?x=%20 HTTP/1.1\r\nHost: dagster.example:3000\r\nX-Raw: caf\xc3\xa9\r\n\r\n", b""),
            # An empty body is still a body: Content-Length 0.
            (b"DELETE /thing HTTP/1.1\r\nHost: dagster.example:3000\r\nContent-Length: 0\r\n\r\n", b""),
            (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % server.port, b""),
        ]

    run(scenario())


# --- pool management -----------------------------------------------------------------------------


def test_connection_idle_longer_than_idle_timeout_is_not_reused(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        # idle_timeout 0: every pooled connection is already too old when picked (no sleeping).
        async with LoopbackServer(answer(OK_HELLO)) as server, pool_for(server, idle_timeout=0.0) as pool:
            await fetch(pool)
            await fetch(pool)
            assert server.connection_indexes() == [0, 1]
            await server.connections[0].client_closed.wait()

    run(scenario())


def test_idle_connections_beyond_max_idle_are_closed(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        async with LoopbackServer(answer(OK_HELLO)) as server, pool_for(server, max_idle=1) as pool:
            held = [await pool.request("GET", f"/{index}", [], None, retry_safe=True) for index in range(3)]
            for response in held:
                await response.read()
                response.release()
            await server.connections[1].client_closed.wait()
            await server.connections[2].client_closed.wait()
            await fetch(pool)
            assert server.connection_indexes() == [0, 1, 2, 0]

    run(scenario())


def test_close_closes_idle_and_busy_connections(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        async def half_body_for_busy(connection: ServerConnection, request: ReceivedRequest) -> bool:
            connection.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf" if request.target == "/busy" else OK_HELLO)
            return True

        async with LoopbackServer(half_body_for_busy) as server:
            pool = UpstreamPool("127.0.0.1", server.port)
            busy = await pool.request("GET", "/busy", [], None, retry_safe=True)  # its body stays unread
            await fetch(pool, target="/idle")  # a second connection, pooled
            await pool.close()
            await server.connections[0].client_closed.wait()
            await server.connections[1].client_closed.wait()
            with pytest.raises(UpstreamError):
                await busy.read()
            busy.release()
            assert server.connection_indexes() == [0, 1]

    run(scenario())


@pytest.mark.parametrize(("method", "target"), [("GET", "/a b"), ("GET", "/a\r\nX: y"), ("GE T", "/"), ("GET", "http://evil/")])
def test_request_lines_that_could_split_are_refused_before_sending(method: str, target: str) -> None:
    from b2cal_assets.proxy.upstream_http import _encode_head

    with pytest.raises(UpstreamError, match="request line"):
        _encode_head(method, target, "127.0.0.1:1", [], None)


def test_requests_beyond_max_connections_wait_for_a_released_answer(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        async with LoopbackServer(answer(OK_HELLO)) as server, pool_for(server, max_connections=1) as pool:
            first = await pool.request("GET", "/one", [], None, retry_safe=True)
            second = asyncio.ensure_future(fetch(pool, target="/two"))
            for _ in range(20):  # let the second request run as far as it can
                await asyncio.sleep(0)
            assert not second.done() and len(server.requests) == 1  # waiting for the slot, nothing sent
            assert await first.read() == b"hello"
            first.release()
            _, body = await second
            assert body == b"hello" and len(server.requests) == 2
            assert server.connection_indexes() == [0, 0]  # the freed connection was reused

    run(scenario())


def test_a_failed_request_frees_its_slot(run: Callable[[Scenario], None]) -> None:
    async def scenario() -> None:
        async with LoopbackServer(answer(b"not http\r\n\r\n")) as broken:
            pool = UpstreamPool("127.0.0.1", broken.port, max_connections=1)
            try:
                for _ in range(3):  # would wait forever on the second if the first kept its slot
                    with pytest.raises(UpstreamError):
                        await pool.request("GET", "/", [], None, retry_safe=False)
            finally:
                await pool.close()

    run(scenario())
