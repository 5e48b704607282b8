"""Where the accounts come from: one class per source behind ``AccountsSource``.

A source only fetches and maps; ``sync.sync_accounts`` does the rest (validate, store a
generation, record freshness or the failure) the same way for every source. The deployment
picks the source through ``accounts_source_from_environment``: the first class in
``SOURCES`` whose setting is present wins. A new source is one class added to ``SOURCES``.

Pure Python: no Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from b2cal_assets import config
from b2cal_assets.accounts.diracx_source import (
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_VO,
    DiracxSettings,
    fetch_config,
)
from b2cal_assets.accounts.errors import AccountsSettingsError

# The registry mapping (DiracX's pydantic schema, slow to import) is imported by the fetches
# that use it: every process loading the code location imports this module, few of them sync.
if TYPE_CHECKING:
    from b2cal_assets.accounts.registry import RegistrySnapshot

VO_SETTING = config.DIRAC_VO.env


class AccountsSourceNotConfiguredError(AccountsSettingsError):
    """No source setting is present: there is nothing to sync from (not a failure to retry)."""


@dataclass(frozen=True)
class Fetched:
    """A source's answer. ``snapshot`` is None when the source confirms ``etag`` is still current."""

    snapshot: RegistrySnapshot | None
    etag: str | None


class AccountsSource(Protocol):
    """One origin of the accounts set."""

    # The environment variable whose presence selects this source (listed in error messages).
    setting: ClassVar[str]

    @property
    def source(self) -> str:
        """What the store records as the set's origin (no credentials); ETags are only reused for the same one."""
        ...

    def fetch(self, etag: str | None) -> Fetched:
        """The accounts, or ``Fetched(None, etag)`` if ``etag`` still names them; raises ``AccountsSyncError``."""
        ...


@dataclass(frozen=True)
class DiracxSource:
    """The ``Registry[<vo>]`` section DiracX serves, fetched conditionally on its config ETag."""

    settings: DiracxSettings
    setting: ClassVar[str] = "DIRACX_URL"

    @property
    def source(self) -> str:
        return self.settings.source

    def fetch(self, etag: str | None) -> Fetched:
        from b2cal_assets.accounts.registry import accounts_from_config

        result = fetch_config(self.settings, etag)
        if result.not_modified:
            return Fetched(None, etag)
        assert result.config is not None
        return Fetched(accounts_from_config(result.config, self.settings.vo, served_by_diracx=True), result.etag)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None, timeout_seconds: float) -> DiracxSource | None:
        if not config.BY_NAME[cls.setting].raw(env):
            return None
        return cls(DiracxSettings.from_env(env, timeout_seconds=timeout_seconds))


@dataclass(frozen=True)
class RegistryFileSource:
    """A DiracX Registry YAML file, for sites without DiracX (read in full every time: no ETag)."""

    path: Path
    vo: str = DEFAULT_VO
    setting: ClassVar[str] = "B2CAL_ACCOUNTS_REGISTRY_YAML"

    @property
    def source(self) -> str:
        return f"file:{Path(self.path).resolve()}#{self.vo}"

    def fetch(self, etag: str | None) -> Fetched:
        from b2cal_assets.accounts.registry import load_registry_yaml

        return Fetched(load_registry_yaml(Path(self.path), self.vo), None)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None, timeout_seconds: float) -> RegistryFileSource | None:
        configured = (config.BY_NAME[cls.setting].raw(env) or "").strip()
        if not configured:
            return None
        path = Path(configured)
        # A deployment that names a file which is not there is misconfigured, not failing:
        # said once here, so the schedule skips instead of launching runs that cannot succeed.
        if not path.is_file():
            raise AccountsSettingsError(f"{cls.setting}={configured} is not a readable file; fix the path or unset it")
        return cls(path, (config.DIRAC_VO.raw(env) or "").strip() or DEFAULT_VO)


# Order is precedence: a registry file set explicitly beats a DiracX URL left in the environment.
SOURCES: tuple[type[RegistryFileSource | DiracxSource], ...] = (RegistryFileSource, DiracxSource)
SOURCE_SETTINGS: tuple[str, ...] = tuple(source.setting for source in SOURCES)
NOT_CONFIGURED = "no accounts source configured: set " + " or ".join(SOURCE_SETTINGS)


def accounts_source_from_environment(
    environ: Mapping[str, str] | None = None, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> AccountsSource:
    """The source this deployment configures; ``AccountsSettingsError`` when none or a broken one.

    ``AccountsSourceNotConfiguredError`` (a subclass) says that no source setting is present.
    """
    for source_class in SOURCES:
        source = source_class.from_environment(environ, timeout_seconds)
        if source is not None:
            return source
    raise AccountsSourceNotConfiguredError(NOT_CONFIGURED)
