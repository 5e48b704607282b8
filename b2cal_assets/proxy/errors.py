"""Exception types of the proxy.

Each refusal carries a short client-safe ``reason`` and a detailed message for the log, the
same split as :mod:`b2cal_assets.auth.errors`.
"""

from __future__ import annotations

from b2cal_assets.auth.errors import RefusalError


class ReverseProxyRefusal(RefusalError):
    """Base of every refusal of the reverse proxy (b2cal_assets.proxy); not the X.509 proxy-certificate
    ``ProxyError`` of b2cal_assets.auth."""

    reason: str = "request refused"
    status: int = 403


class ProxyConfigError(ReverseProxyRefusal):
    """The proxy configuration (flags, config file, policy file) is unusable."""

    reason = "proxy configuration error"
    status = 500


class PolicyFileError(ProxyConfigError):
    """The policy file does not have the documented shape."""

    reason = "policy file error"


class BadRequestError(ReverseProxyRefusal):
    """The request cannot be understood (malformed GraphQL, JSON, path); answered with 400."""

    reason = "bad request"
    status = 400


class BodyTooLargeError(BadRequestError):
    """A request body beyond the proxy's limit."""

    status = 413


class GraphQLSyntaxError(BadRequestError):
    """The GraphQL document does not parse."""

    reason = "malformed GraphQL document"


class OperationSelectionError(BadRequestError):
    """``operationName`` does not select exactly one operation of the document."""

    reason = "cannot select the GraphQL operation"


class LaunchParametersError(BadRequestError):
    """A launch mutation whose parameters the proxy cannot read or tag."""

    reason = "launch parameters must be passed as GraphQL variables"


class NotAuthenticatedError(ReverseProxyRefusal):
    """No usable client certificate; answered with 401."""

    reason = "client certificate required"
    status = 401


class ForbiddenError(ReverseProxyRefusal):
    """Authenticated but not allowed; answered with 403."""

    reason = "forbidden"
    status = 403


class UpstreamError(ReverseProxyRefusal):
    """dagster-webserver could not be reached or answered nonsense; answered with 502."""

    reason = "Dagster webserver unavailable"
    status = 502


class CertificateProblemError(ForbiddenError):
    """The client certificate's chain failed OpenSSL's verification (revoked, expired, untrusted
    CA); the handshake was let through only to say so. ``problem`` and ``advice`` are for the page."""

    reason = "client certificate not accepted"

    def __init__(self, message: str, *, problem: str, advice: str) -> None:
        super().__init__(message, reason=f"client certificate not accepted: {problem}")
        self.problem = problem
        self.advice = advice
