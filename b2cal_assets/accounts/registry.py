"""Map a DiracX ``Registry[<vo>]`` section to accounts.

The schema is DiracX's own (``diracx.core.config.schema.RegistryConfig``), so a registry
that DiracX would refuse is refused here too, whether it came from the server or a file.
Users are keyed by identity-provider subject; a user's groups are the groups whose
``Users`` list that subject.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml
from diracx.core.config.schema import RegistryConfig, UserConfig

from b2cal_assets.accounts.errors import RegistryMalformedError, VoMissingError
from b2cal_assets.accounts.models import Account, GroupMembership


class _ServedUserConfig(UserConfig):
    # Same fields; e-mail kept as a plain string (see _ServedRegistryConfig).
    email: str | None = pydantic.Field(None, alias="Email")


class _ServedRegistryConfig(RegistryConfig):
    """DiracX's schema for a registry the server has already validated.

    DiracX only serves a configuration that passed ``Config.model_validate``; re-checking
    10,000 e-mail addresses with email-validator would triple the mapping time for nothing.
    Every other field is still validated (types, required keys).
    """

    users: MutableMapping[str, _ServedUserConfig] = pydantic.Field(alias="Users")


@dataclass(frozen=True)
class RegistrySnapshot:
    """The accounts of one VO, plus what looked odd but did not block the sync."""

    vo: str
    accounts: dict[str, Account]  # keyed by sub
    warnings: tuple[str, ...] = field(default=())

    @property
    def dn_count(self) -> int:
        return sum(len(a.dns) for a in self.accounts.values())


def accounts_from_config(config: Mapping[str, Any], vo: str, *, served_by_diracx: bool = False) -> RegistrySnapshot:
    """Accounts of ``vo`` from a whole DiracX configuration (as ``GET /api/config/`` serves it).

    ``served_by_diracx``: the config came from a DiracX server, which validated it already.
    """
    if not isinstance(config, Mapping):
        raise RegistryMalformedError(
            f"configuration is a {type(config).__name__}, not a mapping; check the DiracX config repository"
        )
    registry = config.get("Registry")
    if not isinstance(registry, Mapping):
        raise RegistryMalformedError(
            "configuration has no Registry section (partial configuration); "
            "check default.yml in the DiracX config repository"
        )
    return accounts_from_registry(registry, vo, served_by_diracx=served_by_diracx)


def accounts_from_registry(
    registry: Mapping[str, Any], vo: str, *, served_by_diracx: bool = False
) -> RegistrySnapshot:
    """Accounts of ``vo`` from a ``Registry`` mapping (``{vo: {Users, Groups, ...}}``)."""
    if vo not in registry:
        known = ", ".join(sorted(map(str, registry))) or "none"
        raise VoMissingError(
            f"VO {vo!r} is not in the DIRAC Registry (VOs present: {known}); "
            "fix the VO name in the sync settings or add the VO to DiracX"
        )
    section = registry[vo]
    if not isinstance(section, Mapping) or "Users" not in section or "Groups" not in section:
        raise RegistryMalformedError(
            f"Registry[{vo!r}] lacks Users or Groups (partial configuration); the last good accounts stay in force"
        )
    try:
        schema = _ServedRegistryConfig if served_by_diracx else RegistryConfig
        parsed = schema.model_validate(section)
    except pydantic.ValidationError as error:
        raise RegistryMalformedError(
            f"Registry[{vo!r}] does not follow the DiracX schema ({error.error_count()} errors, first: "
            f"{_first_error(error)}); fix the config repository, the last good accounts stay in force"
        ) from None
    return _map(parsed, vo)


def _first_error(error: pydantic.ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"{location}: {first['msg']}"


def _map(parsed: RegistryConfig, vo: str) -> RegistrySnapshot:
    warnings: list[str] = []
    suspended_markers = {vo}
    if parsed.voms_name:
        # DIRAC may record the suspension under the VOMS VO name rather than the DIRAC VO name.
        suspended_markers.add(parsed.voms_name)

    memberships: dict[str, list[GroupMembership]] = {sub: [] for sub in parsed.users}
    for name in sorted(parsed.groups):
        group = parsed.groups[name]
        membership = GroupMembership(
            name=name, voms_role=group.voms_role, properties=tuple(sorted(str(p) for p in group.properties))
        )
        for sub in sorted(group.users):
            if sub in memberships:
                memberships[sub].append(membership)
            else:
                # Stale references happen in real registries; they must not block everyone else.
                warnings.append(f"group {name!r} lists unknown user {sub!r}; ignored")

    # A DN claimed by two users is ambiguous: deny it rather than guess who is behind it.
    owners: dict[str, set[str]] = {}
    for sub, user in parsed.users.items():
        for dn in user.dns:
            owners.setdefault(dn.strip(), set()).add(sub)
    ambiguous = {dn for dn, subs in owners.items() if len(subs) > 1}
    for dn in sorted(ambiguous):
        warnings.append(f"DN {dn!r} belongs to several users ({', '.join(sorted(owners[dn]))}); dropped for all")

    accounts: dict[str, Account] = {}
    for sub, user in parsed.users.items():
        dns = tuple(sorted({dn.strip() for dn in user.dns} - ambiguous))
        for dn in dns:
            if not dn.startswith("/"):
                raise RegistryMalformedError(
                    f"user {user.prefered_username!r} has DN {dn!r}, not in slash form (/C=.../CN=...); "
                    "fix it in the DIRAC registry"
                )
        accounts[sub] = Account(
            sub=sub,
            username=user.prefered_username,
            dns=dns,
            email=str(user.email) if user.email else None,
            suspended=bool(suspended_markers.intersection(user.suspended)),
            groups=tuple(memberships[sub]),
        )
    return RegistrySnapshot(vo=vo, accounts=accounts, warnings=tuple(warnings))


def load_registry_yaml(path: Path, vo: str) -> RegistrySnapshot:
    """Accounts of ``vo`` from a DiracX YAML file.

    Accepts the config repository's ``default.yml`` (``Registry:`` at the top) or a bare
    ``Registry`` mapping (``belle: {Users: ..., Groups: ...}``).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise RegistryMalformedError(f"cannot read registry file {path}: {error.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RegistryMalformedError(f"{path} is not valid YAML ({error}); fix the file and import again") from None
    if not isinstance(document, Mapping):
        raise RegistryMalformedError(f"{path} holds a {type(document).__name__}, not a DiracX Registry mapping")
    if "Registry" in document:
        return accounts_from_config(document, vo)
    return accounts_from_registry(document, vo)
