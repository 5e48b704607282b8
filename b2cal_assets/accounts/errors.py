"""Failure families of the accounts sync, each with a short machine-readable ``reason``.

The ``reason`` is what the store records and the proxy repeats ("why is my access denied");
the message is the detailed, actionable text for logs. No message ever carries a token.
"""

from __future__ import annotations


class AccountsError(Exception):
    """Base class of every accounts-store and accounts-sync error."""


class AccountsSettingsError(AccountsError):
    """The sync is not configured (e.g. DIRACX_URL missing or the credentials file unreadable)."""


class AccountsStoreError(AccountsError):
    """The accounts store in the platform database cannot be read or written."""


class AccountsSyncError(AccountsError):
    """A sync failed; the last good accounts set stays in force."""

    reason = "sync_failed"


class DiracxUnavailableError(AccountsSyncError):
    """The DiracX server did not answer (connection refused, DNS, TLS)."""

    reason = "server_unavailable"


class DiracxTimeoutError(AccountsSyncError):
    """The DiracX server accepted the connection but did not answer in time."""

    reason = "timeout"


class DiracxAuthError(AccountsSyncError):
    """DiracX refused the credentials (401) or the token lacks the rights (403)."""

    reason = "unauthorized"


class DiracxServerError(AccountsSyncError):
    """DiracX answered with an unexpected status (5xx, 404, ...)."""

    reason = "server_error"


class RegistryMalformedError(AccountsSyncError):
    """The registry does not follow the DiracX schema, or is partial (users or groups missing)."""

    reason = "malformed_registry"


class VoMissingError(AccountsSyncError):
    """The configured VO is not in ``Registry``."""

    reason = "vo_missing"
