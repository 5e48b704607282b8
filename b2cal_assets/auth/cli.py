"""``b2cal auth check`` and ``b2cal pki``: the auth library from the shell.

``auth check`` prints one JSON object and exits 0 (authenticated), 1 (refused) or 2 (usage
error, including an unusable CA directory). ``pki`` makes a throw-away test PKI and VOMS
proxies with the reference ``voms-proxy-fake``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from .errors import ConfigurationError

EXIT_AUTHENTICATED, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def _parse_time(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time ({error})", param_hint="--at") from error
    # A time without zone is taken as UTC, the zone of every certificate field.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def auth() -> None:
    """Validate X.509 certificate chains and VOMS attributes."""


@auth.command("check")
@click.option("--chain", "chain_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Certificate chain, leaf first (PEM or DER); a proxy file works as is.")
@click.option("--ca-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Trusted CA directory in IGTF layout (<hash>.0 certificates, <hash>.r0 CRLs).")
@click.option("--vomsdir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="vomsdir with <vo>/<host>.lsc files or AA certificates.")
@click.option("--at", "at_text", default=None, help="Verification time, ISO 8601 (default: now).")
@click.option("--host", default=None, help="Local host name, matched against AC targets.")
@click.option("--vo", "vos", multiple=True, help="Accept ACs of this VO only (repeatable; default: any VO in the vomsdir).")
@click.option("--allow-limited", is_flag=True, help="Accept limited proxies.")
def check(chain_file: Path, ca_dir: Path, vomsdir: Path, at_text: str | None, host: str | None,
          vos: tuple[str, ...], allow_limited: bool) -> None:
    """Validate a chain and print {authenticated, identity, fqans, errors, voms_errors} as JSON."""
    from .authenticator import Authenticator
    from .chain import ProxyPolicy

    at = _parse_time(at_text)
    try:
        authenticator = Authenticator(
            ca_dir, vomsdir, host=host, expected_vos=vos or None,
            proxy_policy=ProxyPolicy(allow_limited=allow_limited), use_cache=False,
        )
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from error
    data = chain_file.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in data and not data.startswith(b"\x30"):
        # Neither PEM nor DER (a DER certificate starts with a SEQUENCE tag): say so plainly.
        raise click.BadParameter(
            f"{chain_file} holds no certificate (neither PEM '-----BEGIN CERTIFICATE-----' nor DER); "
            "give the chain leaf first, e.g. a proxy file or usercert.pem",
            param_hint="--chain",
        )
    result = authenticator.authenticate(data, at=at)
    click.echo(json.dumps(result.to_json(), indent=2))
    sys.exit(EXIT_AUTHENTICATED if result.authenticated else EXIT_REFUSED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def pki() -> None:
    """Make a test PKI (CA, CRL, user/host certificates, VOMS AA) and VOMS proxies."""


@pki.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--vo", default="belle", show_default=True)
@click.option("--voms-host", default="voms.b2cal.test", show_default=True)
@click.option("--voms-port", default=15020, show_default=True, type=int)
@click.option("--user", "users", multiple=True, default=("alice", "bob"), show_default=True)
def pki_init(directory: Path, vo: str, voms_host: str, voms_port: int, users: tuple[str, ...]) -> None:
    """Create CA, CRL, users, host, AA, the IGTF CA directory and the vomsdir under DIRECTORY."""
    from .pki import build_test_pki

    try:
        made = build_test_pki(directory, vo=vo, voms_host=voms_host, voms_port=voms_port, users=users)
    except ConfigurationError as error:
        raise click.ClickException(str(error)) from error
    click.echo(json.dumps({
        "ca_dir": str(made.ca_dir),
        "vomsdir": str(made.vomsdir),
        "aa": str(made.aa.cert_path),
        "host": str(made.host.cert_path),
        "users": {name: str(credential.cert_path) for name, credential in made.users.items()},
        "revoked": ["mallory"],
    }, indent=2))


@pki.command("proxy")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--user", default="alice", show_default=True, help="User under DIRECTORY/users/.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fqan", "fqans", multiple=True, help="FQAN to assert (repeatable); none makes a plain proxy.")
@click.option("--vo", default="belle", show_default=True)
@click.option("--voms-uri", default="voms.b2cal.test:15020", show_default=True)
@click.option("--hours", type=int, default=12, show_default=True)
@click.option("--limited", is_flag=True)
def pki_proxy(directory: Path, user: str, out: Path, fqans: tuple[str, ...], vo: str, voms_uri: str,
              hours: int, limited: bool) -> None:
    """Make an RFC proxy for a user of DIRECTORY with voms-proxy-fake (AC signed by the test AA)."""
    from .pki import load_credential, voms_proxy_fake

    user_dir = directory / "users" / user
    if not (user_dir / "usercert.pem").is_file():
        raise click.UsageError(f"no user {user!r} in {directory / 'users'}")
    aa = load_credential(directory / "aa", "host") if fqans else None
    try:
        voms_proxy_fake(cert=user_dir / "usercert.pem", key=user_dir / "userkey.pem", out=out,
                        ca_dir=directory / "certificates", aa=aa, vo=vo, uri=voms_uri, fqans=fqans,
                        hours=hours, vomslife=hours, limited=limited)
    except ConfigurationError as error:
        raise click.ClickException(str(error)) from error
    click.echo(str(out))
