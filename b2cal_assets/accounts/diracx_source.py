"""Fetch the DiracX configuration with diracx-client, conditionally on its ETag.

Settings come from the environment exactly as diracx-client reads them (``DIRACX_URL``,
``DIRACX_CREDENTIALS_PATH``, ``DIRACX_CA_PATH``); the client refreshes the access token
from the refresh token in that file. Every failure is translated into one of the
``AccountsSyncError`` families with a message that names the server and never the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from b2cal_assets import config
from b2cal_assets.accounts.errors import (
    AccountsSettingsError,
    DiracxAuthError,
    DiracxServerError,
    DiracxTimeoutError,
    DiracxUnavailableError,
    RegistryMalformedError,
)

if TYPE_CHECKING:
    from azure.core.exceptions import HttpResponseError

DEFAULT_VO = "belle"
DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class DiracxSettings:
    """Where and as whom to fetch the configuration.

    ``url``: DiracX base URL; ``credentials_path``: diracx-client credentials JSON (never
    read here, only handed to the client); ``vo``: the DIRAC VO whose registry is synced.
    """

    url: str
    credentials_path: Path
    vo: str = DEFAULT_VO
    ca_path: Path | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    retries: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> DiracxSettings:
        """Settings from ``DIRACX_URL``, ``DIRACX_CREDENTIALS_PATH``, ``DIRACX_CA_PATH`` and ``B2CAL_DIRAC_VO``."""
        url = overrides.pop("url", None) or config.DIRACX_URL.raw(environ)
        if not url:
            raise AccountsSettingsError(
                "DIRACX_URL is not set: export DIRACX_URL=https://<diracx server> (or import a Registry "
                "YAML with `b2cal accounts import FILE` on sites without DiracX)"
            )
        credentials = overrides.pop("credentials_path", None) or config.DIRACX_CREDENTIALS_PATH.raw(environ)
        # Same default as diracx-client, so a `dirac login` on the host just works.
        credentials_path = Path(credentials) if credentials else Path.home() / ".cache" / "diracx" / "credentials.json"
        ca = overrides.pop("ca_path", None) or config.DIRACX_CA_PATH.raw(environ)
        vo = overrides.pop("vo", None) or config.DIRAC_VO.raw(environ) or DEFAULT_VO
        return cls(
            url=str(url), credentials_path=credentials_path, vo=vo, ca_path=Path(ca) if ca else None, **overrides
        )

    @property
    def source(self) -> str:
        """What the store records as the origin of a set (URL + VO, no credentials)."""
        return f"diracx:{self.url.rstrip('/')}#{self.vo}"


@dataclass(frozen=True)
class FetchResult:
    """``config`` is None when the server answered 304 (the ETag still matches)."""

    etag: str | None
    config: dict[str, Any] | None

    @property
    def not_modified(self) -> bool:
        return self.config is None


def fetch_config(settings: DiracxSettings, etag: str | None = None) -> FetchResult:
    """GET /api/config/ with ``If-None-Match: etag``; a 304 yields ``FetchResult(etag, None)``."""
    if not settings.credentials_path.is_file():
        raise DiracxAuthError(
            f"DiracX credentials file {settings.credentials_path} does not exist; run `dirac login` as the "
            "sync account or point DIRACX_CREDENTIALS_PATH at its credentials"
        )
    # Imported late: the client and its error types (diracx-client, azure-core, httpx2, PyJWT)
    # cost a third of a second, paid by every process loading the code location (each run
    # worker and step) and by the proxy's read-only path (lookup_dn), none of which syncs.
    import httpx2
    import jwt
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotModifiedError,
        ServiceRequestError,
        ServiceRequestTimeoutError,
        ServiceResponseError,
        ServiceResponseTimeoutError,
    )
    from diracx.client.sync import SyncDiracClient
    from diracx.core.preferences import DiracxPreferences

    preferences = DiracxPreferences(
        url=settings.url, credentials_path=settings.credentials_path, ca_path=settings.ca_path
    )
    where = settings.url
    try:
        # The constructor already talks to the server (OpenID discovery, httpx2's 5 s timeout).
        client = SyncDiracClient(
            diracx_preferences=preferences,
            retry_total=settings.retries,
            retry_backoff_factor=0.2,
            logging_enable=False,  # the network trace would print the Authorization header
        )
    except httpx2.TimeoutException:
        raise DiracxTimeoutError(
            f"DiracX at {where} did not answer its OpenID discovery in time; check the server's health"
        ) from None
    except (httpx2.TransportError, RuntimeError) as error:
        # diracx-client raises RuntimeError when /.well-known/openid-configuration is not served.
        raise DiracxUnavailableError(
            f"DiracX at {where} is unreachable ({type(error).__name__}: {_first_line(error)}); "
            "check DIRACX_URL and that the server is up"
        ) from None
    try:
        with client:
            headers = {"If-None-Match": etag} if etag else {}
            body, response_headers = client.config.serve_config(
                headers=headers,
                connection_timeout=settings.timeout_seconds,
                read_timeout=settings.timeout_seconds,
                cls=lambda pipeline_response, body, _: (body, pipeline_response.http_response.headers),
            )
    except ResourceNotModifiedError:
        return FetchResult(etag=etag, config=None)
    except ClientAuthenticationError as error:
        raise DiracxAuthError(
            f"DiracX at {where} refused the sync credentials (HTTP {error.status_code}: {_detail(error)}); "
            f"renew the token in {settings.credentials_path} (`dirac login`)"
        ) from None
    except jwt.exceptions.PyJWTError:
        # The client decodes the refresh token to decide whether to refresh; a corrupt one lands here.
        raise DiracxAuthError(
            f"the refresh token in {settings.credentials_path} is not a valid JWT; renew the credentials "
            "(`dirac login`) for the sync account"
        ) from None
    except (ServiceRequestTimeoutError, ServiceResponseTimeoutError, httpx2.TimeoutException):
        raise DiracxTimeoutError(
            f"DiracX at {where} did not answer within {settings.timeout_seconds:g} s; check the server's health"
        ) from None
    except (ServiceRequestError, ServiceResponseError, httpx2.TransportError) as error:
        raise DiracxUnavailableError(
            f"DiracX at {where} is unreachable ({type(error).__name__}: {_first_line(error)}); "
            "check DIRACX_URL and that the server is up"
        ) from None
    except HttpResponseError as error:
        if error.status_code == 403:
            raise DiracxAuthError(
                f"DiracX at {where} forbids reading the configuration with the sync token (HTTP 403: "
                f"{_detail(error)}); give the sync account a group allowed to read the config"
            ) from None
        raise DiracxServerError(
            f"DiracX at {where} answered HTTP {error.status_code} to GET /api/config/ ({_detail(error)}); "
            "check the server logs"
        ) from None
    except RuntimeError as error:
        # diracx-client raises RuntimeError when refreshing the access token fails.
        raise DiracxAuthError(
            f"DiracX at {where} refused to refresh the sync token ({_first_line(error)}); "
            f"renew the credentials in {settings.credentials_path} (`dirac login`)"
        ) from None
    if not isinstance(body, dict):
        raise RegistryMalformedError(
            f"DiracX at {where} served a {type(body).__name__} as configuration, not a mapping"
        )
    # The ETag is the config repository's commit; strip quotes in case a proxy adds them.
    new_etag = response_headers.get("ETag")
    return FetchResult(etag=new_etag.strip('"') if new_etag else None, config=body)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _detail(error: HttpResponseError) -> str:
    # DiracX error bodies are {"detail": "..."}; they never echo the bearer token.
    response = error.response
    try:
        payload = response.json() if response is not None else None
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "detail" in payload:
        return str(payload["detail"])[:200]
    return (error.reason or "no detail")[:200]
