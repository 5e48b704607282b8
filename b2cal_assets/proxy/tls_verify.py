"""Client-certificate verification reported instead of dropped.

With Python's ``ssl`` a client certificate that fails verification (revoked, expired, an
untrusted CA) aborts the handshake: the browser shows a bare network error and cannot be told
why. Here OpenSSL still runs exactly the same verification (same CA directory, CRLs, flags),
but a verify callback lets the handshake complete, and OpenSSL's verdict is read afterwards
with ``SSL_get_verify_result``; a connection whose verdict is not ``X509_V_OK`` is refused on
every request with a page naming the problem. Its chain is never used as an identity.

The standard library exposes neither a verify callback nor the verify result, so this module
reaches them through ctypes: the ``SSL_CTX *`` and ``SSL *`` pointers are read from the first
fields of CPython's ``PySSLContext`` / ``PySSLSocket`` objects. Both reads are checked against
OpenSSL itself (``SSL_CTX_get_verify_mode``, ``SSL_get_SSL_CTX``) and a test fails when the
layout moves; if the bridge cannot be set up, the handshake keeps failing as before (never a
weaker check).
"""

from __future__ import annotations

import ctypes
import logging
import ssl
import sys
import weakref
from typing import Any

log = logging.getLogger("b2cal.proxy")

X509_V_OK = 0
SSL_VERIFY_PEER = 0x01
_HEAD = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)  # PyObject_HEAD (release build)
_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)

# OpenSSL X509_V_ERR_* codes a user can act on -> what to tell them.
ADVICE: dict[int, str] = {
    2: "the issuing CA's certificate is not installed here (unable to get issuer certificate)",
    3: "the CA's revocation list (CRL) is missing here, so revocation cannot be checked",
    9: "the certificate is not valid yet (check your clock, or wait until its start date)",
    10: "the certificate has expired: renew it with your certification authority and import the new one",
    11: "the CA's revocation list (CRL) is not valid yet",
    12: "the CA's revocation list (CRL) has expired on this server: the operators must refresh the CRLs (fetch-crl)",
    18: "the certificate is self-signed, not issued by an accepted CA",
    19: "the chain ends in a self-signed CA that is not accepted here",
    20: "the certificate was issued by a CA that is not accepted here",
    21: "the certificate was not issued by a CA accepted here (or its chain is incomplete)",
    23: "the certificate has been revoked by its CA: request a new certificate",
}


def _ssl_library() -> ctypes.CDLL:
    # The _ssl extension's own handle: dlsym searches the libssl/libcrypto it was linked with,
    # so the functions are the same ones the interpreter uses.
    return ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]


class VerifyBridge:
    """Installs the reporting verify callback on a server context and reads each connection's verdict."""

    def __init__(self) -> None:
        lib = _ssl_library()
        self._set_verify = lib.SSL_CTX_set_verify
        self._set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
        self._set_verify.restype = None
        self._get_mode = lib.SSL_CTX_get_verify_mode
        self._get_mode.argtypes = [ctypes.c_void_p]
        self._get_mode.restype = ctypes.c_int
        self._get_ctx = lib.SSL_get_SSL_CTX
        self._get_ctx.argtypes = [ctypes.c_void_p]
        self._get_ctx.restype = ctypes.c_void_p
        self._get_result = lib.SSL_get_verify_result
        self._get_result.argtypes = [ctypes.c_void_p]
        self._get_result.restype = ctypes.c_long
        self._error_string = lib.X509_verify_cert_error_string
        self._error_string.argtypes = [ctypes.c_long]
        self._error_string.restype = ctypes.c_char_p
        # Accept at the handshake; the verdict OpenSSL reached stays in the verify result.
        self._callback = _VERIFY_CALLBACK(lambda preverify_ok, store_ctx: 1)
        self._contexts: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()
        self._pointers: dict[int, int] = {}

    @staticmethod
    def _pointer(obj: Any) -> int:
        return ctypes.c_void_p.from_address(id(obj) + _HEAD).value or 0

    def install(self, context: ssl.SSLContext) -> None:
        """Let handshakes of ``context`` (verify mode already CERT_OPTIONAL) complete whatever the verdict."""
        if context.verify_mode is not ssl.CERT_OPTIONAL:
            raise ValueError("the reporting callback is for CERT_OPTIONAL server contexts")
        ctx = self._pointer(context)
        if not ctx or self._get_mode(ctx) != SSL_VERIFY_PEER:
            raise RuntimeError("cannot find OpenSSL's SSL_CTX in this Python's SSLContext")
        self._set_verify(ctx, SSL_VERIFY_PEER, self._callback)
        self._contexts.add(context)
        self._pointers[id(context)] = ctx

    def verdict(self, ssl_object: Any) -> tuple[int, str]:
        """(OpenSSL verify result, its text) of one connection's client certificate.

        Raises RuntimeError when the connection's ``SSL *`` cannot be found with certainty
        (the caller then refuses the request).
        """
        inner = getattr(ssl_object, "_sslobj", ssl_object)
        context = getattr(ssl_object, "context", None)
        expected = self._pointers.get(id(context)) if context is not None else None
        ssl_pointer = ctypes.c_void_p.from_address(id(inner) + _HEAD + ctypes.sizeof(ctypes.c_void_p)).value or 0
        if not ssl_pointer or expected is None or self._get_ctx(ssl_pointer) != expected:
            raise RuntimeError("cannot find OpenSSL's SSL object of this connection")
        code = int(self._get_result(ssl_pointer))
        text = (self._error_string(code) or b"unknown error").decode("ascii", "replace")
        return code, text

    def installed_on(self, ssl_object: Any) -> bool:
        return getattr(ssl_object, "context", None) in self._contexts


def make_bridge() -> VerifyBridge | None:
    """The bridge, or None (logged) where this interpreter's layout is not the one expected."""
    if sys.implementation.name != "cpython" or hasattr(sys, "gettotalrefcount"):
        log.warning("client-certificate problems cannot be reported on %s: failing handshakes stay bare", sys.implementation.name)
        return None
    try:
        return VerifyBridge()
    except (OSError, AttributeError) as error:
        log.warning("client-certificate problems cannot be reported (%r): failing handshakes stay bare", error)
        return None
