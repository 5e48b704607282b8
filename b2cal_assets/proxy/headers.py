"""Header handling of an HTTP proxy: hop-by-hop headers, identity headers, RFC 9440.

Pure functions over lists of (name, value) pairs, so they are tested without a server.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Iterable, Sequence

from .errors import BadRequestError

# RFC 9110 section 7.6.1 plus the de-facto ones (Proxy-Connection, Keep-Alive).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
     "transfer-encoding", "upgrade"}
)

# Identity headers set by TLS terminators and auth proxies. Compared after lower-casing and
# mapping "_" to "-", because some servers (and CGI/WSGI bridges) treat the two alike.
IDENTITY_HEADERS = frozenset(
    {
        "client-cert", "client-cert-chain",  # RFC 9440
        "ssl-client-cert", "ssl-client-cert-chain", "ssl-client-s-dn", "ssl-client-i-dn", "ssl-client-verify",
        "ssl-client-escaped-cert", "x-ssl-client-cert", "x-ssl-client-dn", "x-ssl-client-s-dn", "x-ssl-client-verify",
        "x-client-cert", "x-client-dn", "x-client-verify", "x-forwarded-client-cert", "x-remote-user", "remote-user",
        "x-forwarded-user", "x-forwarded-email", "x-forwarded-preferred-username", "x-auth-request-user",
        "x-auth-request-email", "x-user", "x-b2cal-user", "x-b2cal-roles", "x-b2cal-dn",
    }
)
IDENTITY_PREFIXES = ("ssl-client-cert-chain-", "x-b2cal-")
# Request headers never forwarded: hop-by-hop, framing (re-framed upstream), and the ones the
# proxy sets itself.
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"}


@functools.lru_cache(maxsize=4096)  # a few dozen distinct names in practice; called ~25 times per request
def canonical(name: str) -> str:
    """Header name compared case- and underscore-insensitively."""
    return name.strip().lower().replace("_", "-")


def is_identity_header(name: str) -> bool:
    name = canonical(name)
    return name in IDENTITY_HEADERS or name.startswith(IDENTITY_PREFIXES)


def connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Header names listed in Connection: they are hop-by-hop too (RFC 9110 7.6.1)."""
    tokens: set[str] = set()
    for name, value in headers:
        if canonical(name) == "connection":
            tokens |= {canonical(t) for t in value.split(",") if t.strip()}
    return tokens


def forward_request_headers(
    headers: Sequence[tuple[str, str]],
    *,
    client_ip: str,
    scheme: str,
    host: str | None,
    identity: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """Headers for the upstream request: hop-by-hop and every identity header removed, ours added.

    Host is dropped (the client library sets the upstream's); X-Forwarded-* are replaced, not
    appended, since the webserver is reachable only through this proxy.
    """
    drop = _REQUEST_DROP | connection_tokens(headers)
    kept = [(n, v) for n, v in headers if canonical(n) not in drop and not is_identity_header(n)]
    kept.append(("X-Forwarded-For", client_ip))
    kept.append(("X-Forwarded-Proto", scheme))
    if host:
        kept.append(("X-Forwarded-Host", host))
    kept.extend(identity)
    return kept


def forward_response_headers(headers: Sequence[tuple[str, str]], upstream_host: str | None = None) -> list[tuple[str, str]]:
    """Upstream response headers minus hop-by-hop ones (and Content-Length: the server re-frames).

    A redirect naming ``upstream_host`` (HOST:PORT of the webserver, which builds absolute URLs
    from the Host it sees, its own loopback address, with the scheme from X-Forwarded-Proto)
    is made relative, so the browser stays on this proxy.
    """
    drop = HOP_BY_HOP | connection_tokens(headers) | {"content-length"}
    kept = [(n, v) for n, v in headers if canonical(n) not in drop]
    if upstream_host:
        kept = [(n, _relative(v, upstream_host) if canonical(n) in ("location", "content-location") else v) for n, v in kept]
    return kept


def _relative(url: str, host: str) -> str:
    for origin in (f"http://{host}", f"https://{host}"):
        if url.lower().startswith(origin.lower()):
            rest = url[len(origin):]
            if rest == "" or rest[0] in "/?#":
                return rest if rest.startswith("/") else "/" + rest
    return url


def _sf_binary(item: str, header: str) -> bytes:
    item = item.strip()
    if len(item) < 2 or item[0] != ":" or item[-1] != ":":
        raise BadRequestError(f"{header}: item is not an RFC 8941 byte sequence (:base64:)", reason=f"malformed {header} header")
    try:
        return base64.b64decode(item[1:-1], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(f"{header}: invalid base64", reason=f"malformed {header} header") from None


def rfc9440_chain(headers: Sequence[tuple[str, str]]) -> list[bytes] | None:
    """DER certificates (leaf first) from ``Client-Cert`` / ``Client-Cert-Chain``, or None if absent.

    Only call this for requests from a trusted front end; raises :class:`BadRequestError`
    for malformed or repeated headers. Names are matched exactly, case aside: ``Client_Cert``
    and other spellings are not read.
    """
    # Only the RFC 9440 names, compared case-insensitively as HTTP field names are (RFC 9110
    # 5.1); an underscore spelling (Client_Cert) is another header that some servers and
    # CGI-style bridges fold into this one, so it is never read (and is stripped upstream).
    leaf = [v for n, v in headers if n.lower() == "client-cert"]
    chain = [v for n, v in headers if n.lower() == "client-cert-chain"]
    if not leaf:
        if chain:
            raise BadRequestError("Client-Cert-Chain without Client-Cert", reason="Client-Cert-Chain without Client-Cert")
        return None
    if len(leaf) > 1:
        raise BadRequestError("several Client-Cert headers", reason="several Client-Cert headers")
    result = [_sf_binary(leaf[0], "Client-Cert")]
    for value in chain:  # several field lines are one list (RFC 8941 3.1)
        result.extend(_sf_binary(item, "Client-Cert-Chain") for item in value.split(",") if item.strip())
    return result
