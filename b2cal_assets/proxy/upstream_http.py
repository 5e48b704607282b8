"""The forwarding client: HTTP/1.1 keep-alive connections to the one loopback webserver.

Why not aiohttp's ClientSession for forwarding: per request it built more objects (request,
response, payload, timer, trace hooks) than the rest of the proxy together; bench_proxy.py
measured it as the largest share of the proxy's CPU per request. This client does only what
forwarding to one trusted upstream needs: a pool of idle connections, request bytes written
in one call, and responses parsed by httptools (llhttp, the parser uvicorn and aiohttp use).
The proxy's own GraphQL reads and websockets still use aiohttp.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Sequence

import httptools

from .errors import UpstreamError

# Streamed bodies: reading from the webserver pauses while this much waits for the client.
STREAM_HIGH_WATER_BYTES = 256 * 1024


class UpstreamClosedError(UpstreamError):
    """The webserver closed the connection before answering (a pooled connection it timed out)."""


def _encode_head(method: str, target: str, host: str, headers: Sequence[tuple[str, str]], body_length: int | None) -> bytes:
    if not method.isalpha() or any(c in target for c in " \r\n\t") or not target.startswith("/"):
        # aiohttp's parser already refuses such request lines; checked again because a split
        # request line would let one client request become two upstream.
        raise UpstreamError(f"request line {method!r} {target!r} cannot be forwarded", reason="malformed request line")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise UpstreamError(f"header {name!r} cannot be forwarded: line break or colon in it", reason="malformed request header")
        lines.append(f"{name}: {value}")
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}")
    lines.append("\r\n")
    # surrogateescape: header bytes that are not UTF-8 reach the webserver as the client sent them.
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


class UpstreamResponse:
    """Status and headers of one answer; the body is read with :meth:`read` or :meth:`chunks`."""

    def __init__(self, connection: _Connection, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        self._connection = connection
        self._released = False
        self.status = status
        self.reason = reason
        self.headers = headers

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def content_length(self) -> int | None:
        value = self.header("content-length")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def chunked(self) -> bool:
        return self.header("transfer-encoding") is not None

    async def read(self) -> bytes:
        """The whole body (call only for bodies known to be small)."""
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive."""
        connection = self._connection
        while True:
            chunk = await connection.next_chunk()
            if chunk is None:
                return
            yield chunk

    def release(self) -> None:
        """Give the connection back to the pool if the answer was read to its end, else close it."""
        # Once only: a second release (an outer finally) would pool the connection twice, and two
        # requests would then share it.
        if not self._released:
            self._released = True
            self._connection.finish()
            self._connection.pool.slot_freed()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (no pipelining)."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = time.monotonic()
        self.closed = False
        self.reusable = True
        self._head_request = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[UpstreamResponse] | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._error: BaseException | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._answered = False  # any byte of the current answer received
        self._ends_at_close = False  # the current answer's body has no framing: it ends at EOF

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamError(f"the webserver sent a malformed HTTP answer: {error}"))
            self.close()

    def eof_received(self) -> None:
        # llhttp ends an answer without Content-Length or chunked framing only when told of the
        # end of input, which httptools cannot do: its end is the server's EOF (RFC 9112 6.3).
        if self._ends_at_close and not self._complete:
            self._complete = True
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if not self._complete:
            if self._answered:
                self._fail(UpstreamError(f"the webserver closed the connection mid-answer ({exc!r})"))
            else:
                self._fail(UpstreamClosedError(f"the webserver closed the connection before answering ({exc!r})"))

    # --- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            # An answer nobody asked for (e.g. "408 Request Timeout" written to an idle connection
            # before the server closes it): stop parsing so none of it reaches the current answer;
            # data_received then closes the connection, which keeps it out of the pool.
            raise UpstreamError("the webserver sent an answer after the one to the current request")

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # interim (100 Continue): the real answer follows
            self._reason, self._headers = b"", []
            return
        headers = [(n.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for n, v in self._headers]
        response = UpstreamResponse(self, status, self._reason.decode("latin-1"), headers)
        self.reusable = self.parser.should_keep_alive()
        self._ends_at_close = response.content_length is None and not response.chunked
        if self._head_request:
            # llhttp cannot be told a response answers HEAD and would wait for the body that
            # Content-Length announces: end the answer here and do not reuse the connection.
            self.reusable = False
            self._complete = True
        if self._head is not None and not self._head.done():
            self._head.set_result(response)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > STREAM_HIGH_WATER_BYTES and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            return
        self._complete = True
        self._wake()

    # --- used by the pool and the response ------------------------------------------------

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self._wake()

    async def send(self, head: bytes, body: bytes | None, *, head_request: bool) -> UpstreamResponse:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._head_request = head_request
        self._reason, self._headers = b"", []
        self._head = loop.create_future()
        self._complete = self._answered = self._ends_at_close = False
        self._error = None
        self.transport.write(head + body if body else head)
        return await self._head

    async def next_chunk(self) -> bytes | None:
        while True:
            if self._body:
                chunk = self._body.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= STREAM_HIGH_WATER_BYTES // 2 and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return chunk
            if self._complete:
                return None
            if self._error is not None:
                raise self._error
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup
            self._wakeup = None

    def finish(self) -> None:
        if self._complete and self.reusable and not self._body and not self.closed:
            self.idle_since = time.monotonic()
            self.pool.put_back(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        self.pool.forget(self)


class UpstreamPool:
    """Keep-alive connections to one HTTP/1.1 server.

    ``idle_timeout`` stays below the webserver's own keep-alive timeout (uvicorn: 5 s), so a
    request is not written to a connection the server is closing.
    """

    def __init__(self, host: str, port: int, *, host_header: str | None = None, idle_timeout: float = 3.0,
                 max_idle: int = 64, max_connections: int = 256, connect_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.host_header = host_header or f"{host}:{port}"
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self._idle: collections.deque[_Connection] = collections.deque()
        self._all: set[_Connection] = set()
        # Requests in flight at once: beyond it they wait here instead of opening ever more
        # sockets to the single-process webserver (a flood of clients must not exhaust it).
        self._slots = asyncio.Semaphore(max_connections)

    def slot_freed(self) -> None:
        self._slots.release()

    def put_back(self, connection: _Connection) -> None:
        if len(self._idle) >= self.max_idle:
            connection.close()
        else:
            self._idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        self._all.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    async def _connection(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: least likely to be timed out
            if not connection.closed and now - connection.idle_since < self.idle_timeout:
                return connection
            connection.close()
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self.host, self.port), self.connect_timeout
            )
        except (TimeoutError, OSError) as error:
            raise UpstreamError(f"cannot connect to the webserver at {self.host}:{self.port}: {error!r}") from None
        self._all.add(connection)
        return connection

    async def request(self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes | None, *,
                      retry_safe: bool) -> UpstreamResponse:
        """Send one request; a ``retry_safe`` one is sent again once if a pooled connection was stale.

        The caller must call :meth:`UpstreamResponse.release` when done with the answer.
        """
        head = _encode_head(method, target, self.host_header, headers, None if body is None else len(body))
        await self._slots.acquire()
        try:
            for attempt in (1, 2):
                connection = await self._connection()
                try:
                    return await connection.send(head, body, head_request=method == "HEAD")
                except UpstreamClosedError:
                    connection.close()
                    if attempt == 2 or not retry_safe:
                        raise
                except BaseException:  # cancelled (client went away) or failed: the connection is in an unknown state
                    connection.close()
                    raise
            raise AssertionError("unreachable")
        except BaseException:
            self._slots.release()  # no answer to release it later
            raise

    async def close(self) -> None:
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
