"""`b2cal proxy`: serve the Dagster UI behind X.509/VOMS role checks."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from b2cal_assets.command_line import database_url_option

from .errors import ProxyConfigError


@click.command(name="proxy")
@click.option("--listen", help="HOST:PORT to listen on (default 0.0.0.0:8443).")
@click.option("--upstream", help="dagster-webserver URL on loopback (default http://127.0.0.1:3000).")
@click.option("--cert", type=click.Path(path_type=Path), help="Server certificate (PEM); enables TLS termination.")
@click.option("--key", type=click.Path(path_type=Path), help="Server private key (PEM).")
@click.option("--ca-dir", type=click.Path(path_type=Path), help="IGTF CA directory (hashed *.0 and *.r0 files).")
@click.option("--crl-dir", type=click.Path(path_type=Path), help="Extra CRLs for the TLS handshake (default: those in --ca-dir).")
@click.option("--vomsdir", type=click.Path(path_type=Path), help="vomsdir with <vo>/<host>.lsc files.")
@click.option("--policy", type=click.Path(path_type=Path), help="Role policy YAML/JSON (default: the shipped VO belle policy).")
@database_url_option
@click.option("--path-prefix", help="The webserver's path prefix (its -l option), e.g. /dagster; the UI is then served under it.")
@click.option("--trusted-front", multiple=True, help="Address/CIDR of a TLS terminator whose RFC 9440 headers are trusted (repeatable).")
@click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), help="YAML file with the same settings (flags win).")
@click.option("--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def proxy(listen: str | None, upstream: str | None, cert: Path | None, key: Path | None, ca_dir: Path | None,
          crl_dir: Path | None, vomsdir: Path | None, policy: Path | None, database_url: str | None, path_prefix: str | None,
          trusted_front: tuple[str, ...], config_file: Path | None, log_level: str) -> None:
    """Serve the Dagster UI behind X.509/VOMS role checks.

    Every request is authenticated from the client certificate (RFC 3820 proxies with VOMS
    attributes allowed), mapped to a DIRAC account and platform roles, and every GraphQL
    operation is checked before it reaches dagster-webserver. Decisions go to the logger
    b2cal.proxy.audit, one JSON line each.
    """
    from .config import load_config
    from .server import ProxyState, serve

    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(config_file, {
            "listen": listen, "upstream": upstream, "cert": cert, "key": key, "ca_dir": ca_dir, "crl_dir": crl_dir,
            "vomsdir": vomsdir, "policy": policy, "accounts_db": database_url, "path_prefix": path_prefix,
            "trusted_front": trusted_front,
        })
        state = ProxyState(config)
    except ProxyConfigError as error:
        raise click.ClickException(str(error)) from None

    def ready(port: int) -> None:
        click.echo(f"b2cal proxy: listening on {config.listen_host_port[0]}:{port}, upstream {config.upstream}", err=True)

    serve(state, ready)
