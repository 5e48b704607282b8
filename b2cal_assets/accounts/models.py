"""Accounts as the platform sees them: one DIRAC user with DNs, email, state and groups.

Plain frozen dataclasses so the proxy, the CLI and the Dagster asset share one shape and
two accounts compare equal exactly when nothing the proxy cares about differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class GroupMembership:
    """A DIRAC group the user belongs to, with what it grants."""

    name: str
    voms_role: str | None = None
    properties: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "voms_role": self.voms_role, "properties": list(self.properties)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> GroupMembership:
        properties = data.get("properties") or []
        assert isinstance(properties, list)
        voms_role = data.get("voms_role")
        return cls(
            name=str(data["name"]),
            voms_role=None if voms_role is None else str(voms_role),
            properties=tuple(str(p) for p in properties),
        )


@dataclass(frozen=True)
class Account:
    """One user of the VO as registered in DIRAC.

    ``sub`` is the identity-provider subject DiracX keys users by; ``username`` is DIRAC's
    login name (``PreferedUsername``). ``dns`` are slash-form certificate subjects
    (``/C=JP/O=KEK/.../CN=Jane Doe``), sorted.
    """

    sub: str
    username: str
    dns: tuple[str, ...] = ()
    email: str | None = None
    suspended: bool = False
    groups: tuple[GroupMembership, ...] = field(default=())

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    @property
    def voms_roles(self) -> tuple[str, ...]:
        """The VOMS FQANs that map to the user's groups (``/belle``, ``/belle/Role=production``)."""
        return tuple(sorted({g.voms_role for g in self.groups if g.voms_role}))

    @property
    def properties(self) -> tuple[str, ...]:
        """Union of the DIRAC properties of all the user's groups."""
        return tuple(sorted({p for g in self.groups for p in g.properties}))

    def to_json(self) -> dict[str, object]:
        return {
            "sub": self.sub,
            "username": self.username,
            "dns": list(self.dns),
            "email": self.email,
            "suspended": self.suspended,
            "groups": [g.to_json() for g in self.groups],
        }


@dataclass(frozen=True)
class AccountsDiff:
    """What a sync changed, by username (what an operator recognises)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    @classmethod
    def between(cls, old: dict[str, Account], new: dict[str, Account]) -> AccountsDiff:
        """Diff two account sets keyed by ``sub``."""
        added = sorted(new[s].username for s in new.keys() - old.keys())
        removed = sorted(old[s].username for s in old.keys() - new.keys())
        changed = sorted(new[s].username for s in new.keys() & old.keys() if new[s] != old[s])
        return cls(tuple(added), tuple(removed), tuple(changed))
