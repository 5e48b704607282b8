"""Proxy settings from flags and an optional YAML config file (flags win)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .errors import ProxyConfigError


@dataclass
class ProxyConfig:
    """Everything ``b2cal proxy`` needs. Keys of the config file are these field names."""

    listen: str = "0.0.0.0:8443"
    upstream: str = "http://127.0.0.1:3000"
    cert: Path | None = None
    key: Path | None = None
    ca_dir: Path = Path("/etc/grid-security/certificates")
    crl_dir: Path | None = None  # default: the CRLs (*.r0) in ca_dir
    vomsdir: Path = Path("/etc/grid-security/vomsdir")
    policy: Path | None = None  # default: the shipped policy for VO belle
    accounts_db: str | None = None  # default: the platform database
    trusted_front: list[str] = field(default_factory=list)
    path_prefix: str = ""  # the webserver's -l prefix, e.g. /dagster
    server_name: str | None = None  # this host's name, for VOMS AC targets
    asset_groups_ttl: float = 30.0  # seconds the asset -> group map is trusted
    accounts_recheck: float = 2.0  # seconds between accounts-store generation checks
    ca_reload_interval: float = 60.0  # seconds between CA/CRL directory checks

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, separator, port = self.listen.rpartition(":")
        if not separator or not port.isdigit():
            raise ProxyConfigError(f"--listen {self.listen!r}: write HOST:PORT, e.g. 0.0.0.0:8443")
        return host.strip("[]") or "0.0.0.0", int(port)

    def validate(self) -> None:
        """Refuse configurations that would be insecure or cannot work, saying which setting."""
        self.listen_host_port  # noqa: B018 - raises on a bad value
        upstream = urlsplit(self.upstream)
        if upstream.scheme != "http" or not upstream.hostname or upstream.path not in ("", "/"):
            # dagster-webserver serves plain HTTP; it listens on loopback behind this proxy.
            raise ProxyConfigError(f"--upstream {self.upstream!r}: give the webserver's loopback address as http://HOST:PORT "
                                   "(a path prefix goes in path_prefix)")
        if (self.cert is None) != (self.key is None):
            raise ProxyConfigError("--cert and --key go together")
        if self.cert is None and not self.trusted_front:
            raise ProxyConfigError(
                "no --cert/--key (TLS) and no --trusted-front: nobody could authenticate; give a server certificate, "
                "or the address of the TLS terminator in front"
            )
        for name in ("cert", "key", "ca_dir", "vomsdir", "policy", "crl_dir"):
            value = getattr(self, name)
            if value is not None and not Path(value).exists():
                raise ProxyConfigError(f"--{name.replace('_', '-')} {value}: no such file or directory")
        if self.path_prefix and (not self.path_prefix.startswith("/") or self.path_prefix.endswith("/")):
            raise ProxyConfigError(f"path_prefix {self.path_prefix!r} must start with / and not end with /")


_PATHS = {"cert", "key", "ca_dir", "crl_dir", "vomsdir", "policy"}


def load_config(file: Path | None, overrides: Mapping[str, Any]) -> ProxyConfig:
    """Settings from ``file`` (YAML mapping) overridden by flags given (None/empty = not given)."""
    data: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = yaml.safe_load(Path(file).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ProxyConfigError(f"cannot read config file {file}: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ProxyConfigError(f"config file {file}: top level must be a mapping")
        data.update(loaded or {})
    known = {f.name for f in fields(ProxyConfig)}
    unknown = set(data) - known
    if unknown:
        raise ProxyConfigError(f"config file {file}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    for key, value in overrides.items():
        if value not in (None, (), []):
            data[key] = list(value) if isinstance(value, tuple) else value
    for key in _PATHS & set(data):
        if data[key] is not None:
            data[key] = Path(data[key])
    if isinstance(data.get("trusted_front"), str):
        data["trusted_front"] = [data["trusted_front"]]
    config = ProxyConfig(**data)
    config.validate()
    return config
