"""Registry contents the accounts tests commit to the DiracX config repository."""

from __future__ import annotations

from typing import Any

ALICE_DN = "/C=JP/O=KEK/OU=CRC/CN=Alice Aoki"
BOB_DN = "/C=DE/O=GermanGrid/OU=KIT/CN=Bob Braun"
BOB_DN_2 = "/DC=org/DC=terena/DC=tcs/C=DE/O=KIT/CN=Bob Braun"
CAROL_DN = "/C=IT/O=INFN/OU=Personal Certificate/L=Napoli/CN=Carol Conti"


def baseline() -> tuple[dict[str, Any], dict[str, Any]]:
    """Three users: alice (production), bob (two DNs), carol (lcgadmin)."""
    users = {
        "sub-alice": {"PreferedUsername": "alice", "DNs": [ALICE_DN], "Email": "alice@belle2.org"},
        "sub-bob": {"PreferedUsername": "bob", "DNs": [BOB_DN, BOB_DN_2], "Email": "bob@belle2.org"},
        "sub-carol": {"PreferedUsername": "carol", "DNs": [CAROL_DN], "Email": "carol@belle2.org"},
    }
    groups = {
        "belle": {"Users": ["sub-alice", "sub-bob", "sub-carol"], "Properties": ["NormalUser"], "VOMSRole": "/belle"},
        "belle_production": {
            "Users": ["sub-alice"],
            "Properties": ["NormalUser", "ProductionManagement"],
            "VOMSRole": "/belle/Role=production",
        },
        "belle_admin": {
            "Users": ["sub-carol"],
            "Properties": ["NormalUser", "ServiceAdministrator"],
            "VOMSRole": "/belle/Role=lcgadmin",
        },
    }
    return users, groups


def synthetic(n_users: int, dns_per_user: int = 2) -> tuple[dict[str, Any], dict[str, Any]]:
    """``n_users`` users with ``dns_per_user`` DNs each, in groups like Belle II's."""
    users: dict[str, Any] = {}
    for i in range(n_users):
        users[f"sub-{i:06d}"] = {
            "PreferedUsername": f"user{i:06d}",
            "DNs": [f"/C=JP/O=KEK/OU=CRC/CN=User {i:06d} cert{j}" for j in range(dns_per_user)],
            "Email": f"user{i:06d}@belle2.org",
        }
    subs = list(users)
    groups = {
        "belle": {"Users": subs, "Properties": ["NormalUser"], "VOMSRole": "/belle"},
        "belle_production": {
            "Users": subs[::50],
            "Properties": ["NormalUser", "ProductionManagement"],
            "VOMSRole": "/belle/Role=production",
        },
        "belle_admin": {
            "Users": subs[::500],
            "Properties": ["NormalUser", "ServiceAdministrator"],
            "VOMSRole": "/belle/Role=lcgadmin",
        },
    }
    return users, groups
