"""One test PKI per session, and VOMS proxies made on demand by voms-proxy-fake.

Everything lives under pytest's session temporary directory, so nothing is left behind.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from b2cal_assets.auth.authenticator import Authenticator
from b2cal_assets.auth.chain import ProxyPolicy
from b2cal_assets.auth.pki import Credential, TestPKI, build_test_pki, issue_certificate, voms_proxy_fake

LOCAL_HOST = "b2cal.test"  # AC targets; short because voms-proxy-fake crashes on long -target values


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if shutil.which("voms-proxy-fake") is None:  # pragma: no cover - CI installs voms-clients
        pytest.exit("voms-proxy-fake not found: apt-get install -y voms-clients (see .ci/apt-packages.d/auth.txt)", 2)


class PKIFixture:
    """The session PKI plus extra attribute authorities and a memoised proxy factory."""

    def __init__(self, pki: TestPKI, workdir: Path) -> None:
        self.pki = pki
        self.workdir = workdir
        ca = pki.ca.credential
        # Trusted by the CA, but the vomsdir has no LSC file for this server.
        self.unlisted_aa: Credential = issue_certificate(
            ca, workdir / "aa-unlisted", "/C=JP/O=KEK/OU=CRC/CN=voms2.b2cal.test", stem="host", dns_names=["voms2.b2cal.test"]
        )
        # Claims to be voms.b2cal.test but its subject is not the one in the LSC file.
        self.impostor_aa: Credential = issue_certificate(
            ca, workdir / "aa-impostor", "/C=JP/O=KEK/OU=CRC/CN=impostor.b2cal.test", stem="host", dns_names=["impostor.b2cal.test"]
        )
        self._made: dict[str, Path] = {}

    def proxy(self, name: str, *, user: str = "alice", voms: bool = True, **options: Any) -> Path:
        """A proxy file made once per session by voms-proxy-fake; ``name`` keys the memo."""
        if name in self._made:
            return self._made[name]
        credential = self.pki.users.get(user) or self.pki.rogue_users[user]
        options.setdefault("fqans", ["/belle/Role=NULL/Capability=NULL"])
        aa = options.pop("aa", self.pki.aa) if voms else None
        if not voms:
            options.pop("fqans")
        path = voms_proxy_fake(
            cert=credential.cert_path, key=credential.key_path, out=self.workdir / "proxies" / f"{name}.pem",
            ca_dir=self.pki.ca_dir, aa=aa, vo=options.pop("vo", self.pki.vo), uri=options.pop("uri", self.pki.voms_uri),
            **options,
        )
        self._made[name] = path
        return path


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> PKIFixture:
    root = tmp_path_factory.mktemp("auth-pki")
    return PKIFixture(build_test_pki(root / "pki"), root)


@pytest.fixture
def make_authenticator(test_pki: PKIFixture) -> Callable[..., Authenticator]:
    def make(**options: Any) -> Authenticator:
        options.setdefault("host", LOCAL_HOST)
        options.setdefault("expected_vos", ["belle"])
        options.setdefault("proxy_policy", ProxyPolicy())
        return Authenticator(test_pki.pki.ca_dir, test_pki.pki.vomsdir, **options)

    return make


@pytest.fixture
def authenticator(make_authenticator: Callable[..., Authenticator]) -> Authenticator:
    return make_authenticator()
