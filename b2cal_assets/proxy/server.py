"""The aiohttp shell: TLS termination, authentication, the role check, and forwarding.

Everything that decides lives in the pure modules (transport, graphql_ops, decide, policy,
who, headers); this module moves bytes and calls them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import ipaddress
import json
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from b2cal_assets.accounts.freshness import Access, FreshnessPolicy, Verdict
from b2cal_assets.accounts.view import AccountsView
from b2cal_assets.auth import Authenticator, AuthResult
from b2cal_assets.auth.cache import chain_fingerprint
from b2cal_assets.web.guard import cross_site

from .config import ProxyConfig
from .decide import (
    Decision,
    Facts,
    FactsRequest,
    Principal,
    authorize,
    authorize_path,
    facts_needed,
    inject_identity,
    lookups_refused,
    path_facts_needed,
)
from .errors import (
    BadRequestError,
    BodyTooLargeError,
    CertificateProblemError,
    ForbiddenError,
    NotAuthenticatedError,
    ReverseProxyRefusal,
    UpstreamError,
)
from .graphql_ops import classify_operation
from .headers import forward_request_headers, forward_response_headers, rfc9440_chain
from .pages import certificate_problem_page, certificate_required_page, refusal_page
from .permissions import Permission
from .policy import Policy, load_policy
from .refusals import REFUSED_HEADER, graphql_refusal
from .tls_verify import ADVICE, X509_V_OK, VerifyBridge, make_bridge
from .transport import MAX_BODY_BYTES, GraphQLPayload, extract_http, extract_ws_message
from .ui_permissions import Judge, Plan, asset_keys_in, rewrite_answer
from .ui_permissions import plan as ui_plan
from .upstream import UpstreamFacts
from .upstream_http import UpstreamPool
from .upstream_schema import UpstreamSchema
from .who import resolve_principal

log = logging.getLogger("b2cal.proxy")
audit = logging.getLogger("b2cal.proxy.audit")

# Idle upstream connections are dropped before uvicorn's 5 s keep-alive timeout closes them
# under us (a request sent on a connection being closed fails).
UPSTREAM_KEEPALIVE_S = 3.0
# Upstream answers with a Content-Length up to this size are read whole and sent in one write
# (headers and body in one TLS record batch); larger or unframed ones (run logs, downloads) stream.
BUFFER_LIMIT_BYTES = 1 << 20
# Distinct plain-read GraphQL requests remembered (see ProxyApp._plain_reads), and the largest
# body remembered (the UI's documents are a few kB): at most 8 MB of keys.
PLAIN_READS_REMEMBERED = 512
PLAIN_READ_MAX_BYTES = 16 * 1024


def make_server_ssl_context(config: ProxyConfig, bridge: VerifyBridge | None = None) -> ssl.SSLContext:
    """TLS server context accepting RFC 3820 proxy chains, checking CRLs, never resuming sessions.

    ``bridge``: let handshakes with a failing client chain complete, so each request can be
    refused with a page naming the problem (OpenSSL's verification is unchanged; see tls_verify).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    assert config.cert is not None and config.key is not None
    context.load_cert_chain(str(config.cert), str(config.key))
    # OPTIONAL: a client without a certificate gets a clear 401 instead of a handshake alert;
    # one presenting an untrusted, expired or revoked chain gets a 403 page naming the problem
    # (with the bridge; without it the handshake fails).
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(capath=str(config.ca_dir))
    crl_files = sorted(Path(config.crl_dir).glob("*.r*")) if config.crl_dir else []
    for crl in crl_files:
        context.load_verify_locations(cafile=str(crl))
    context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS | ssl.VERIFY_CRL_CHECK_CHAIN | ssl.VERIFY_X509_STRICT
    # A resumed session carries no peer chain; no tickets and no TLS 1.3 tickets at all, and
    # a request without a verified chain is refused anyway (fail closed).
    context.options |= ssl.OP_NO_TICKET
    # TLS 1.2 renegotiation could swap the client certificate inside a connection.
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.num_tickets = 0
    if bridge is not None:
        bridge.install(context)
    return context


# Verified chain per TLS connection (keyed by its SSLObject, forgotten with it): a connection's
# peer chain cannot change, as the server context refuses renegotiation, so keep-alive requests
# skip fetching and DER-encoding it again. Authentication still runs on every request.
_CHAINS: weakref.WeakKeyDictionary[Any, tuple[list[bytes], bytes]] = weakref.WeakKeyDictionary()


def verified_chain(request: web.BaseRequest) -> tuple[list[bytes], bytes] | None:
    """DER certificates of the TLS peer as OpenSSL verified them (leaf first) and their
    fingerprint (the authenticator's cache key), worked out once per connection; or None."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    known = _CHAINS.get(ssl_object)
    if known is not None:
        return known
    chain: Any = None
    if hasattr(ssl_object, "get_verified_chain"):  # Python 3.13+
        chain = ssl_object.get_verified_chain()
    else:  # 3.10-3.12: the same call on the private C object
        inner = getattr(ssl_object, "_sslobj", None)
        if inner is not None and hasattr(inner, "get_verified_chain"):
            chain = inner.get_verified_chain()
    if not chain:
        return None
    # Private: only the _ssl module exports ENCODING_DER (test_architecture fails if it moves).
    der = [c.public_bytes(ssl._ssl.ENCODING_DER) if not isinstance(c, bytes) else c for c in chain]  # type: ignore[attr-defined]
    known = _CHAINS[ssl_object] = (der, chain_fingerprint(der))
    return known


# OpenSSL's verdict on each connection's client chain (see tls_verify), read once per connection.
_VERDICTS: weakref.WeakKeyDictionary[Any, tuple[int, str]] = weakref.WeakKeyDictionary()


def check_verdict(request: web.BaseRequest, bridge: VerifyBridge | None) -> None:
    """Refuse a connection whose client chain OpenSSL did not verify (the handshake was let through
    only to say why); raises CertificateProblemError. Without the bridge OpenSSL refused it already."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None or bridge is None or not bridge.installed_on(ssl_object):
        return
    verdict = _VERDICTS.get(ssl_object)
    if verdict is None:
        try:
            verdict = bridge.verdict(ssl_object)
        except RuntimeError as error:  # cannot tell: refuse (fail closed)
            verdict = (-1, str(error))
        _VERDICTS[ssl_object] = verdict
    code, text = verdict
    if code != X509_V_OK:
        advice = ADVICE.get(code, "the certificate chain could not be verified against the accepted CAs and their CRLs")
        raise CertificateProblemError(f"client chain failed verification at the handshake: {text} (X509 error {code})",
                                      problem=text, advice=advice)


def _peer_ip(request: web.BaseRequest) -> str:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[0]) if peer else ""


def _check_websocket_origin(request: web.BaseRequest) -> None:
    """Refuse a websocket upgrade another site's page could have opened.

    Why: browsers apply no CORS to websockets and present the user's client certificate, so
    a page on any site could subscribe as the user. Browsers always send Origin on an upgrade
    (RFC 6455), so a present Origin must be this proxy's own and Sec-Fetch-Site not cross-site
    (the /graphql POST guard's check); API clients, which send none, stay allowed.
    """
    why = cross_site(request.headers, request.host)
    if why is not None:
        raise ForbiddenError(f"websocket upgrade refused: {why}", reason="cross-origin websocket refused")


def _wants_html(request: web.BaseRequest) -> bool:
    # endswith: under a path prefix the GraphQL endpoint is <prefix>/graphql.
    return "text/html" in request.headers.get("Accept", "") and not request.path.rstrip("/").endswith("/graphql")


def error_response(request: web.BaseRequest, status: int, reason: str) -> web.Response:
    """Short refusal: HTML for browsers, JSON (GraphQL-shaped too) for API clients."""
    if _wants_html(request):
        title = {400: "Bad request", 401: "Certificate required", 403: "Forbidden", 502: "Bad gateway"}.get(status, "Error")
        return web.Response(status=status, text=refusal_page(status, title, reason), content_type="text/html")
    return web.json_response({"error": reason, "status": status, "errors": [{"message": reason}]}, status=status)


class ProxyState:
    """Long-lived objects of one proxy process."""

    def __init__(self, config: ProxyConfig, *, policy: Policy | None = None, accounts: AccountsView | None = None,
                 authenticator: Authenticator | None = None) -> None:
        self.config = config
        self.policy = policy or load_policy(config.policy)
        self.authenticator = authenticator or Authenticator(
            config.ca_dir, config.vomsdir, host=config.server_name, expected_vos=[self.policy.vo]
        )
        if accounts is None:
            from b2cal_assets.config import database_url
            from b2cal_assets.database import platform_database

            accounts = AccountsView(platform_database(config.accounts_db or database_url()).accounts(), policy=FreshnessPolicy.from_env(),
                                    recheck_seconds=config.accounts_recheck)
        self.accounts = accounts
        self.trusted_fronts = [ipaddress.ip_network(a, strict=False) for a in config.trusted_front]
        upstream = urlsplit(config.upstream)
        self.upstream_base = f"{upstream.scheme}://{upstream.netloc}"
        self.upstream_address = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        self.upstream_host = upstream.netloc
        self.session: aiohttp.ClientSession | None = None
        self.pool: UpstreamPool | None = None
        self.facts: UpstreamFacts | None = None
        self.web: Any = None  # the review pages under <prefix>/b2cal/ (b2cal_assets.web), made in start()
        self.schema: UpstreamSchema | None = None
        self.verify_bridge: VerifyBridge | None = make_bridge() if config.cert is not None else None

    async def start(self) -> None:
        # Forwarded requests: the lean pool. The proxy's own reads and websockets: aiohttp.
        self.pool = UpstreamPool(*self.upstream_address, host_header=self.upstream_host, idle_timeout=UPSTREAM_KEEPALIVE_S)
        # auto_decompress off: bytes pass through with their Content-Encoding untouched.
        self.session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=UPSTREAM_KEEPALIVE_S),
        )
        self.facts = UpstreamFacts(self.session, self.upstream_base + self.config.path_prefix + "/graphql",
                                   ttl=self.config.asset_groups_ttl)
        from b2cal_assets.web.console import WebConsole

        self.web = WebConsole(self)
        self.schema = UpstreamSchema(self.session, self.upstream_base + self.config.path_prefix + "/graphql")

    async def close(self) -> None:
        if self.web is not None:
            self.web.close()
        if self.pool is not None:
            await self.pool.close()
        if self.session is not None:
            await self.session.close()

    def is_trusted_front(self, ip: str) -> bool:
        if not self.trusted_fronts:  # the usual deployment: this proxy terminates TLS itself
            return False
        return self._trusted_front(ip)

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - one ProxyState per process, peers repeat
    def _trusted_front(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_fronts)


def _audit(request: web.BaseRequest, principal: Principal | None, decision: str, what: str, why: str, **extra: Any) -> None:
    record = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "peer": _peer_ip(request),
        "dn": principal.dn if principal else extra.pop("dn", None),
        "user": principal.username if principal else None,
        "roles": principal.roles_tag if principal else None,
        "role_source": principal.role_source if principal else None,
        "method": request.method,
        "path": request.path,
        "what": what,
        "decision": decision,
        "why": why,
        **extra,
    }
    (audit.info if decision == "allow" else audit.warning)(json.dumps(record, sort_keys=False))


def _header_safe(text: str) -> str:
    """``text`` as one header value: printable ASCII, no line breaks."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:500]


def _describe(operations: list) -> str:
    return "; ".join(op.describe() for op in operations)


class ProxyApp:
    """Request handling; one instance per process."""

    def __init__(self, state: ProxyState) -> None:
        self.state = state
        # GraphQL requests found to be plain reads, by everything their decision rests on: the
        # user and grants, method, media types, query string and exact body. The UI polls the
        # same few documents all day; a repeat skips parsing and deciding. Only decisions that
        # needed no facts from the webserver (asset groups, run owners) are kept, and the
        # policy never changes while the process runs, so a repeat would be decided the same.
        self._plain_reads: dict[tuple[Any, ...], None] = {}

    # --- who ---------------------------------------------------------------------------------

    def authenticate(self, request: web.BaseRequest) -> Principal:
        state = self.state
        peer = _peer_ip(request)
        chain: list[bytes] | None = None
        fingerprint: bytes | None = None
        if state.is_trusted_front(peer):
            chain = rfc9440_chain(list(request.headers.items()))
        if chain is None:
            check_verdict(request, state.verify_bridge)
            known = verified_chain(request)
            if known is not None:
                chain, fingerprint = known
        if not chain:
            reused = False
            ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
            if ssl_object is not None:
                reused = bool(ssl_object.session_reused)
            raise NotAuthenticatedError(
                f"no verified client certificate chain from {peer} (TLS: {ssl_object is not None}, session reused: {reused})",
                reason="client certificate required",
            )
        result: AuthResult = state.authenticator.authenticate(chain, fingerprint=fingerprint)
        if result.identity is None:
            return resolve_principal(result, None, state.policy, Verdict(Access.ALLOW))
        verdict = state.accounts.verdict()
        account = state.accounts.lookup_dn(result.identity.subject)
        return resolve_principal(result, account, state.policy, verdict)

    # --- entry -------------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        principal: Principal | None = None
        try:
            path = self._checked_path(request)
            principal = self.authenticate(request)
            if principal.note:
                log.info("%s: %s", principal.dn, principal.note)
            if self.state.web is not None and self.state.web.owns(path):
                return await self.state.web.handle(self, request, principal, path)
            if path in ("/graphql", "/graphql/"):
                if request.headers.get("Upgrade", "").lower() == "websocket":
                    _check_websocket_origin(request)
                    return await self.websocket(request, principal)
                if self.state.web is not None:  # cross-site POSTs; a review page's action token and nonce
                    self.state.web.check_graphql_post(request, principal)
                return await self.graphql(request, principal)
            facts = await self._facts(path_facts_needed(path))
            decision = authorize_path(self.state.policy, principal, path, request.method, facts)
            if not decision.allowed:
                raise ForbiddenError(decision.detail, reason=decision.reason)
            if set(decision.permissions) - {Permission.READ.value}:
                _audit(request, principal, "allow", f"{request.method} {path}", decision.detail,
                       permissions=list(decision.permissions))
            body = await self._read_body(request)
            return await self.forward(request, principal, body)
        except ReverseProxyRefusal as error:
            _audit(request, principal, "deny", f"{request.method} {request.path}", error.message, status=error.status)
            if isinstance(error, (NotAuthenticatedError, CertificateProblemError)) and _wants_html(request):
                return self._certificate_page(error)
            return error_response(request, error.status, error.reason)

    def _certificate_page(self, error: ReverseProxyRefusal) -> web.Response:
        """401/403 pages saying how to import a grid certificate and which CAs are accepted."""
        from b2cal_assets.auth.identity import slash_dn

        cas = [slash_dn(c.subject) for c in self.state.authenticator.ca_dir.store.certificates]
        if isinstance(error, CertificateProblemError):
            text = certificate_problem_page(error.problem, error.advice, cas)
        else:
            text = certificate_required_page(error.reason, cas)
        return web.Response(status=error.status, text=text, content_type="text/html")

    def _checked_path(self, request: web.BaseRequest) -> str:
        """Decoded path without the prefix; refuse dot segments the two servers might resolve differently."""
        path = request.path
        if "\x00" in path or "\\" in path or any(segment in (".", "..") for segment in path.split("/")):
            raise BadRequestError(f"path {path!r} has dot segments or odd characters", reason="unsupported path")
        prefix = self.state.config.path_prefix
        if prefix:
            if path == prefix or path == "/":
                return "/"
            if not path.startswith(prefix + "/"):
                raise BadRequestError(f"path {path!r} outside prefix {prefix}", reason=f"not found: the UI is under {prefix}/")
            return path[len(prefix):]
        return path

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        """The whole body up to MAX_BODY_BYTES (413 beyond it).

        Why a loop: ``content.read(n)`` returns what is buffered so far, so a body sent in
        pieces would be decided on and forwarded truncated.
        """
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise BodyTooLargeError(f"body of {request.content_length} bytes", reason="request body too large")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BodyTooLargeError("body larger than the limit", reason="request body too large")

    # --- GraphQL over HTTP ------------------------------------------------------------------

    async def _facts(self, needed: FactsRequest) -> Facts:
        """Ask the webserver what the decision needs (nothing when nothing is needed)."""
        if needed.empty:
            return Facts()
        upstream = self.state.facts
        if upstream is None:
            raise UpstreamError("the proxy's upstream client is not started (ProxyState.start was not awaited)")
        return await upstream.facts(needed)

    async def _decide(self, principal: Principal, payload_requests: list, mutations_allowed: bool,
                      transport: str) -> tuple[list, list[Decision], bool]:
        """Operations, decisions, and whether any decision needed facts from the webserver."""
        state = self.state
        operations = []
        decisions = []
        used_facts = False
        for graphql_request in payload_requests:
            operation = classify_operation(graphql_request.query, graphql_request.operation_name)
            needed = facts_needed(operation, graphql_request)
            used_facts |= not needed.empty
            decide = functools.partial(authorize, state.policy, principal, operation, graphql_request,
                                       mutations_allowed=mutations_allowed, transport=transport)
            # What needs no facts (the base permissions) first: a refused caller costs no upstream
            # query, and the number of look-ups one request may cause is capped.
            decision = decide(None) if not needed.empty else decide(Facts())
            if decision.allowed and not needed.empty:
                decision = lookups_refused(needed) or decide(await self._facts(needed))
            operations.append(operation)
            decisions.append(decision)
        return operations, decisions, used_facts

    async def graphql(self, request: web.BaseRequest, principal: Principal) -> web.StreamResponse:
        body = await self._read_body(request)
        content_types = tuple(request.headers.getall("Content-Type", []))
        read_key = (principal.username, principal.grants, request.method, content_types, request.rel_url.raw_query_string, body)
        if read_key in self._plain_reads:
            if audit.isEnabledFor(logging.DEBUG):
                audit.debug("allow %s %s (repeat of a plain read)", principal.username, request.method)
            return await self.forward(request, principal, body, retry_safe=True)
        payload: GraphQLPayload = extract_http(request.method, list(content_types), list(request.rel_url.query.items()), body)
        transport = f"{request.method} {payload.source}"
        operations, decisions, used_facts = await self._decide(principal, payload.requests, payload.mutations_allowed, transport)
        for decision in decisions:
            if not decision.allowed:
                _audit(request, principal, "deny", _describe(operations), decision.detail, permissions=list(decision.permissions),
                       status=403)
                return await self._graphql_refusal(request, payload, decision.reason)
        rewritten = False
        for operation, graphql_request in zip(operations, payload.requests):
            rewritten |= inject_identity(operation, graphql_request, principal)
        plans = await self._ui_plans(operations, payload.requests)
        as_json = rewritten or any(plans)
        if as_json:
            body = payload.body() if payload.source in ("json", "batch") else json.dumps(payload.requests[0].to_json()).encode()
        mutation = any(op.kind == "mutation" for op in operations)
        if mutation or any(d.permissions and set(d.permissions) - {"read"} for d in decisions):
            _audit(request, principal, "allow", _describe(operations), "; ".join(d.detail for d in decisions),
                   permissions=sorted({p for d in decisions for p in d.permissions}), tagged=rewritten)
        else:
            if not used_facts and not as_json and len(body) <= PLAIN_READ_MAX_BYTES:
                if len(self._plain_reads) >= PLAIN_READS_REMEMBERED:
                    self._plain_reads.pop(next(iter(self._plain_reads)))  # the oldest
                self._plain_reads[read_key] = None
            if audit.isEnabledFor(logging.DEBUG):  # plain reads: one line only when asked for
                audit.debug("allow %s %s %s", principal.username, request.method, _describe(operations))
        if any(plans):
            return await self._forward_telling_permissions(request, principal, payload, plans, body, retry_safe=not mutation)
        return await self.forward(request, principal, body, content_type="application/json" if rewritten else None,
                                  retry_safe=not mutation)

    async def _ui_plans(self, operations: list, requests: list) -> list[Plan | None]:
        """Per request: how to tell its permission fields truthfully (None: it selects none)."""
        plans: list[Plan | None] = []
        for operation, graphql_request in zip(operations, requests):
            found = None
            if operation.kind in ("query", "mutation") and "ermission" in graphql_request.query:
                schema = await self.state.schema.schema() if self.state.schema is not None else None
                if schema is None:
                    # Without the schema the answer would say "allowed" to everything: refuse instead.
                    raise UpstreamError("the webserver's GraphQL schema is unknown, so permission fields cannot be told")
                found = ui_plan(schema, graphql_request.query, graphql_request.operation_name)
                if found is not None:
                    graphql_request.query = found.upstream_query
            plans.append(found)
        return plans

    async def _forward_telling_permissions(self, request: web.BaseRequest, principal: Principal, payload: GraphQLPayload,
                                           plans: list[Plan | None], body: bytes, *, retry_safe: bool) -> web.StreamResponse:
        """Forward a document selecting permission fields (as JSON POST), then rewrite the answer's fields."""
        pool = self.state.pool
        assert pool is not None
        headers = [(n, v) for n, v in self._headers(request, principal, "application/json") if n.lower() != "accept-encoding"]
        headers.append(("Accept-Encoding", "identity"))
        path = quote(request.path, safe="/:@!$&'()*+,;=-._~")
        upstream = await pool.request("POST", path, headers, body, retry_safe=retry_safe)
        try:
            answer_bytes = await upstream.read()
            status = upstream.status
            response_headers = [(n, v) for n, v in forward_response_headers(upstream.headers, pool.host_header)
                                if n.lower() not in ("content-length", "content-type", "content-encoding", "transfer-encoding")]
        finally:
            upstream.release()
        try:
            answer = json.loads(answer_bytes)
        except ValueError:
            raise UpstreamError(f"the webserver answered {status} with no JSON to a document selecting permission fields") from None
        answers = answer if payload.source == "batch" and isinstance(answer, list) else [answer]
        facts = self.state.facts
        assert facts is not None
        groups = await facts.asset_groups(asset_keys_in(answers))
        judge = Judge(self.state.policy, principal.grants, principal.username, groups)
        for found, one in zip(plans, answers):
            if found is not None:
                rewrite_answer(found, one, judge)
        return web.Response(status=status, body=json.dumps(answer).encode(), content_type="application/json",
                            headers=CIMultiDict(response_headers))

    async def _graphql_refusal(self, request: web.BaseRequest, payload: GraphQLPayload, reason: str) -> web.Response:
        """A refused GraphQL request, answered where its sender looks.

        Browsers (the Dagster UI: fetches carry Sec-Fetch-Mode, which scripts cannot set) get a
        GraphQL answer with HTTP 200, since the UI renders an ``UnauthorizedError`` member or
        GraphQL errors but leaves a dialog spinning on an HTTP error. API clients keep the
        403 with the same reason. Both carry the reason in ``X-B2cal-Refused``.
        """
        headers = {REFUSED_HEADER: _header_safe(reason)}
        if "Sec-Fetch-Mode" not in request.headers:
            response = error_response(request, 403, reason)
            response.headers.update(headers)
            return response
        schema = self.state.schema
        unions = await schema.unauthorized_unions() if schema is not None else None
        answers = [graphql_refusal(r.query, r.operation_name, reason, unions) for r in payload.requests]
        return web.json_response(answers if payload.source == "batch" else answers[0], status=200, headers=headers)

    # --- forwarding ---------------------------------------------------------------------------

    @staticmethod
    def _upstream_target(request: web.BaseRequest) -> str:
        # Forward the decoded path we classified, re-quoted: the webserver sees what we checked.
        path = quote(request.path, safe="/:@!$&'()*+,;=-._~")
        query = request.rel_url.raw_query_string
        return path + (f"?{query}" if query else "")

    def _upstream_url(self, request: web.BaseRequest) -> str:
        return self.state.upstream_base + self._upstream_target(request)

    def _headers(self, request: web.BaseRequest, principal: Principal, content_type: str | None) -> list[tuple[str, str]]:
        headers = forward_request_headers(
            list(request.headers.items()), client_ip=_peer_ip(request), scheme=request.scheme, host=request.host,
            identity=[("X-B2cal-User", principal.username), ("X-B2cal-Roles", principal.roles_tag)],
        )
        if content_type is not None:
            headers = [(n, v) for n, v in headers if n.lower() != "content-type"] + [("Content-Type", content_type)]
        return headers

    async def forward(self, request: web.BaseRequest, principal: Principal, body: bytes, *, content_type: str | None = None,
                      retry_safe: bool | None = None) -> web.StreamResponse:
        """Send the request upstream and relay the answer.

        ``retry_safe``: the request changes nothing upstream (GET/HEAD, or GraphQL without a
        mutation), so it is sent once more if the pooled connection was closed under it.
        """
        pool = self.state.pool
        assert pool is not None
        if retry_safe is None:
            retry_safe = request.method in ("GET", "HEAD")
        headers = self._headers(request, principal, content_type)
        data = body if body or request.method not in ("GET", "HEAD") else None
        upstream = await pool.request(request.method, self._upstream_target(request), headers, data, retry_safe=retry_safe)
        try:
            response_headers = forward_response_headers(upstream.headers, pool.host_header)
            length = upstream.content_length
            framed = length is not None and not upstream.chunked
            if framed and request.method != "HEAD" and length <= BUFFER_LIMIT_BYTES:
                payload = await upstream.read()
                return web.Response(status=upstream.status, reason=upstream.reason, body=payload,
                                    headers=CIMultiDict(response_headers))
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in response_headers:
                response.headers.add(name, value)
            if framed:
                response.content_length = length
            await response.prepare(request)
            if request.method != "HEAD":
                # Streaming: chunks go out as they come (run logs, debug downloads).
                try:
                    async for chunk in upstream.chunks():
                        await response.write(chunk)
                except UpstreamError as error:
                    # The status line is gone already: a 502 cannot follow. Cut the connection so the
                    # client sees a truncated transfer, never a short body that looks complete.
                    log.warning("%s %s: the webserver's answer broke off mid-stream: %s", request.method, request.path, error)
                    if request.transport is not None:
                        request.transport.close()
                    return response
            await response.write_eof()
            return response
        finally:
            upstream.release()

    # --- websocket ----------------------------------------------------------------------------

    async def websocket(self, request: web.BaseRequest, principal: Principal) -> web.StreamResponse:
        session = self.state.session
        assert session is not None
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        url = self._upstream_url(request).replace("http", "ws", 1)
        try:
            upstream = await session.ws_connect(url, protocols=protocols or ("graphql-ws",), autoping=True, max_msg_size=MAX_BODY_BYTES,
                                                headers=[(n, v) for n, v in self._headers(request, principal, None)
                                                         if n.lower().startswith(("x-forwarded", "x-b2cal", "cookie"))])
        except (TimeoutError, aiohttp.ClientError) as error:
            raise UpstreamError(f"websocket to the webserver failed: {error!r}") from None
        client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=MAX_BODY_BYTES)
        await client.prepare(request)
        _audit(request, principal, "allow", "websocket open", "read")

        async def client_to_upstream() -> None:
            async for message in client:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    await client.close(code=1003, message=b"text messages only")
                    return
                try:
                    kind, start, _ = extract_ws_message(message.data)
                    if start is not None:
                        (operation,), decisions, _ = await self._decide(principal, [start.request], False, "websocket")
                        if not decisions[0].allowed:
                            _audit(request, principal, "deny", f"ws {operation.describe()}", decisions[0].detail, status=403)
                            await client.send_json({"type": "error", "id": start.operation_id, "payload": {"message": decisions[0].reason}})
                            continue
                        if decisions[0].permissions and set(decisions[0].permissions) - {"read"}:
                            _audit(request, principal, "allow", f"ws {operation.describe()}", decisions[0].detail)
                except ReverseProxyRefusal as error:
                    _audit(request, principal, "deny", "ws message", error.message, status=error.status)
                    operation_id = None
                    with contextlib.suppress(ValueError, TypeError, AttributeError):
                        operation_id = json.loads(message.data).get("id")
                    await client.send_json({"type": "error", "id": operation_id, "payload": {"message": error.reason}})
                    continue
                await upstream.send_str(message.data)
            await upstream.close()

        async def upstream_to_client() -> None:
            async for message in upstream:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await client.send_str(message.data)
                elif message.type is aiohttp.WSMsgType.BINARY:
                    await client.send_bytes(message.data)
                else:
                    break
            await client.close()

        tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
        try:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            await upstream.close()
            await client.close()
        return client


async def _reload_loop(state: ProxyState) -> None:
    """Pick up CRLs written by fetch-crl without a restart."""
    while True:
        await asyncio.sleep(state.config.ca_reload_interval)
        try:
            if await asyncio.to_thread(state.authenticator.reload):
                log.info("CA directory %s changed: CRLs reloaded, cached decisions dropped", state.config.ca_dir)
        except Exception as error:  # noqa: BLE001 - keep serving with the old CRLs, but say so loudly
            log.error("reloading the CA directory %s failed: %r; still using the previous CRLs", state.config.ca_dir, error)


class RunningServer:
    """A listening proxy; ``cleanup`` stops accepting, ends the background reload and closes upstream clients."""

    def __init__(self, runner: web.ServerRunner, reload_task: asyncio.Task, state: ProxyState) -> None:
        self.runner = runner
        self.reload_task = reload_task
        self.state = state

    async def cleanup(self) -> None:
        await self.runner.cleanup()
        self.reload_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reload_task
        await self.state.close()


async def start_server(state: ProxyState) -> tuple[RunningServer, int]:
    """Start listening; returns the server and the bound port (useful with port 0).

    aiohttp's low-level server: one handler takes every path, so there is no router, no
    middleware chain and no Application per request to pay for.
    """
    config = state.config
    host, port = config.listen_host_port
    await state.start()
    reload_task = asyncio.create_task(_reload_loop(state))
    runner = web.ServerRunner(web.Server(ProxyApp(state).handle, access_log=None), handle_signals=False)
    try:
        await runner.setup()
        ssl_context = make_server_ssl_context(config, state.verify_bridge) if config.cert is not None else None
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=512)
        await site.start()
    except BaseException:
        await RunningServer(runner, reload_task, state).cleanup()
        raise
    # Private: aiohttp has no public way to ask a TCPSite for its bound port (test_architecture checks it).
    sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname()[1] if sockets else port
    return RunningServer(runner, reload_task, state), bound


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when installed (its TLS and socket transports cost less CPU per
    request than asyncio's), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(state: ProxyState, ready: Callable[[int], Awaitable[None] | None] | None = None) -> None:
    """Run until interrupted (the CLI's entry)."""

    async def main() -> None:
        runner, port = await start_server(state)
        log.info("b2cal proxy listening on %s:%d -> %s", state.config.listen_host_port[0], port, state.config.upstream)
        if ready is not None:
            outcome = ready(port)
            if asyncio.iscoroutine(outcome):
                await outcome
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
