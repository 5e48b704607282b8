"""Certificate problems explained: the 401 page says how to import a grid certificate and which
CAs are accepted; a revoked, expired or untrusted chain completes the handshake and gets a 403
page naming the problem, while OpenSSL's verification stays exactly as strict."""

from __future__ import annotations

import ssl

import pytest

from b2cal_assets.proxy.tls_verify import make_bridge

from .harness import RunningProxy, World, client_context, request

HTML = {"Accept": "text/html,application/xhtml+xml"}


def _context_with(world: World, name: str, rogue: bool = False) -> ssl.SSLContext:
    context = client_context(world, None)
    credential = world.pki.rogue_users[name] if rogue else world.pki.users[name]
    context.load_cert_chain(str(credential.cert_path), str(credential.key_path))
    return context


def test_the_bridge_finds_openssl_objects_in_this_python() -> None:
    # Fails when CPython's PySSLContext / PySSLSocket layout moves (tls_verify reads their first fields).
    bridge = make_bridge()
    assert bridge is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_OPTIONAL
    bridge.install(context)
    assert context.verify_mode is ssl.CERT_OPTIONAL
    connection = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    assert bridge.verdict(connection) == (0, "ok")
    other = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(RuntimeError):  # a connection of a context without the bridge: cannot tell
        bridge.verdict(other.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True))


@pytest.mark.slow
def test_no_certificate_page_explains_the_pkcs12_import_and_lists_the_cas(world: World, tls_proxy: RunningProxy) -> None:
    reply = request(tls_proxy.port, "GET", "/asset-groups", context=client_context(world, None), headers=HTML)
    assert reply.status == 401
    page = reply.body.decode()
    assert "PKCS#12" in page and "openssl pkcs12 -export" in page and "Manage certificates" in page
    assert world.pki.ca.credential.subject in page  # the accepted CA, by name


@pytest.mark.slow
@pytest.mark.parametrize(("who", "rogue", "named"), [("mallory", False, "revoked"), ("eve", True, "not issued by a CA accepted here")])
def test_failing_chain_gets_a_page_naming_the_problem(world: World, tls_proxy: RunningProxy, who: str, rogue: bool, named: str) -> None:
    reply = request(tls_proxy.port, "GET", "/asset-groups", context=_context_with(world, who, rogue), headers=HTML)
    assert reply.status == 403
    page = reply.body.decode()
    assert "Certificate not accepted" in page and named in page and "Accepted certification authorities" in page


@pytest.mark.slow
def test_a_failing_chain_never_reaches_the_webserver_even_for_graphql(world: World, tls_proxy: RunningProxy) -> None:
    reply = request(tls_proxy.port, "POST", "/graphql", context=_context_with(world, "mallory"),
                    body=b'{"query": "{ version }"}', headers={"Content-Type": "application/json"})
    assert reply.status == 403 and "revoked" in reply.json()["error"] and "data" not in reply.json()
