"""`b2cal serve`: dagster-webserver, dagster-daemon and the authorising proxy under one supervisor.

The supervisor starts each service as a child in its own session (so the service and whatever
it spawns, the code server and run workers, form one process group whose id is the child's
pid), waits until each is healthy, then watches them:

- webserver healthy: ``GET /server_info`` answers 200 on loopback;
- daemon healthy: every daemon the instance needs wrote a heartbeat since it started;
- proxy healthy: its TLS port accepts connections.

If one dies, it says which (name, pid, exit code, the end of its log) and stops the others.
Ctrl-C or SIGTERM stops all of them: SIGTERM to each process group, SIGKILL after a grace period.

``--demo`` first prepares a demo site with ``b2cal demo``'s stages and a demo PKI, then serves it
and prints the browser URL and the PKCS#12 client certificate to import.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import click

from b2cal_assets import config
from b2cal_assets.command_line import database_url_option

DEFAULT_WEBSERVER_PORT = 3000
DEFAULT_PROXY_LISTEN = "127.0.0.1:8443"
DEMO_P12_PASSWORD = "b2cal-demo"
CODE_LOCATION_MODULE = "b2cal_assets.definitions"
STOP_GRACE_S = 20.0


class ServeError(click.ClickException):
    """A service could not be started or became unhealthy; the message names it."""


@dataclass
class Service:
    """One supervised child: how to start it and how to tell it is healthy."""

    name: str
    args: list[str]
    healthy: Callable[[], bool]
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, env: Mapping[str, str]) -> None:
        with self.log_path.open("ab") as log:
            # Own session: pgid == pid, so stopping the group by our child's pid takes its children too.
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env), start_new_session=True
            )

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process else None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class Supervisor:
    services: list[Service]
    env: Mapping[str, str]
    echo: Callable[[str], None] = click.echo
    stopping: bool = False
    _started: list[Service] = field(default_factory=list)

    def start_all(self, health_deadline_s: float) -> None:
        """Start the services in order, each healthy before the next starts."""
        for service in self.services:
            service.start(self.env)
            self._started.append(service)
            self.echo(f"b2cal serve: started {service.name} (pid {service.pid}), log {service.log_path}")
            self._wait_healthy(service, health_deadline_s)
            self.echo(f"b2cal serve: {service.name} is healthy")

    def _wait_healthy(self, service: Service, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while not self.stopping:
            code = service.exit_code()
            if code is not None:
                raise ServeError(f"{service.name} (pid {service.pid}) exited with code {code} while starting; "
                                 f"end of {service.log_path}:\n{service.log_tail()}")
            if self._healthy(service):
                return
            if time.monotonic() > end:
                raise ServeError(f"{service.name} (pid {service.pid}) did not become healthy within {deadline_s:.0f} s; "
                                 f"end of {service.log_path}:\n{service.log_tail()}")
            time.sleep(0.5)

    @staticmethod
    def _healthy(service: Service) -> bool:
        try:
            return service.healthy()
        except Exception:  # noqa: BLE001 - a probe error only means "not healthy yet"; the deadline reports it
            return False

    def watch(self) -> Service | None:
        """Block until a service exits (returned) or a stop is requested (None)."""
        while not self.stopping:
            for service in self._started:
                if service.exit_code() is not None:
                    return service
            time.sleep(0.5)
        return None

    def stop_all(self) -> None:
        """SIGTERM every started service's process group (in reverse order), SIGKILL what remains."""
        for service in reversed(self._started):
            _signal_group(service, signal.SIGTERM)
        end = time.monotonic() + STOP_GRACE_S
        for service in reversed(self._started):
            if service.process is None:
                continue
            try:
                service.process.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.echo(f"b2cal serve: {service.name} (pid {service.pid}) ignored SIGTERM for {STOP_GRACE_S:.0f} s; killing it")
            # The group may outlive its leader (code server, run workers): leave nothing behind.
            _signal_group(service, signal.SIGKILL)
            if service.process.poll() is None:
                service.process.wait()


def _signal_group(service: Service, sig: int) -> None:
    if service.process is None:
        return
    try:
        os.killpg(service.process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


# --- health probes ---------------------------------------------------------------------------


def webserver_healthy(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        with urllib.request.urlopen(f"{url}/server_info", timeout=3) as response:
            return response.status == 200 and "dagster_webserver_version" in json.loads(response.read())

    return probe


def daemon_healthy(dagster_home: Path, since: float) -> Callable[[], bool]:
    """Every daemon the instance requires has a heartbeat newer than ``since`` (epoch seconds)."""

    def probe() -> bool:
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(dagster_home)) as instance:
            required = set(instance.get_required_daemon_types())
            beats = instance.get_daemon_heartbeats()
            return bool(required) and all(t in beats and beats[t].timestamp >= since for t in required)

    return probe


def port_healthy(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.create_connection((host, port), timeout=2):
            return True

    return probe


# --- building the services -------------------------------------------------------------------


def _bin(name: str) -> str:
    """A console script of this environment (next to the running interpreter)."""
    candidate = Path(sys.executable).parent / name
    if not candidate.exists():
        raise ServeError(f"{name} is not installed next to {sys.executable}; install the project (pip install -e .)")
    return str(candidate)


def proxy_command() -> list[str] | None:
    """How to start `b2cal proxy`, or None when this installation has no proxy."""
    from b2cal_assets.cli import SUBCOMMANDS

    if "proxy" in SUBCOMMANDS:
        return [sys.executable, "-m", "b2cal_assets", "proxy"]
    if importlib.util.find_spec("b2cal_assets.proxy.cli") is not None:
        return [sys.executable, "-c", "from b2cal_assets.proxy.cli import proxy; proxy(prog_name='b2cal proxy')"]
    return None


def _path_prefix(text: str) -> str:
    """``/dagster`` form (leading slash, no trailing one), or empty."""
    text = text.strip()
    if not text or text == "/":
        return ""
    if not text.startswith("/") or any(c in text for c in "?#\\ "):
        raise click.BadParameter(f"{text!r} is not a URL path such as /dagster")
    return text.rstrip("/")


def split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8443)")
    return host.strip("[]"), int(port)


@dataclass
class ProxySettings:
    listen: str
    cert: Path | None = None
    key: Path | None = None
    ca_dir: Path | None = None
    crl_dir: Path | None = None
    vomsdir: Path | None = None
    policy: Path | None = None
    accounts_db: str | None = None
    trusted_front: tuple[str, ...] = ()
    path_prefix: str = ""

    def args(self, upstream: str) -> list[str]:
        out = ["--listen", self.listen, "--upstream", upstream]
        if self.path_prefix:
            out += ["--path-prefix", self.path_prefix]
        for flag, value in (("--cert", self.cert), ("--key", self.key), ("--ca-dir", self.ca_dir), ("--crl-dir", self.crl_dir),
                            ("--vomsdir", self.vomsdir), ("--policy", self.policy), ("--database-url", self.accounts_db)):
            if value is not None:
                out += [flag, str(value)]
        for front in self.trusted_front:
            out += ["--trusted-front", front]
        return out


def build_services(
    *, dagster_home: Path, host: str, port: int, workspace: Path | None, proxy: ProxySettings | None, log_dir: Path,
    path_prefix: str = "",
) -> list[Service]:
    target = ["-w", str(workspace)] if workspace else ["-m", CODE_LOCATION_MODULE]
    if path_prefix:
        target += ["-l", path_prefix]
    url = f"http://{host}:{port}"
    started = time.time()
    services = [
        Service("dagster-webserver", [_bin("dagster-webserver"), "-h", host, "-p", str(port), *target],
                webserver_healthy(url + path_prefix), log_dir / "dagster-webserver.log"),
        Service("dagster-daemon", [_bin("dagster-daemon"), "run", *target],
                daemon_healthy(dagster_home, started), log_dir / "dagster-daemon.log"),
    ]
    if proxy is not None:
        command = proxy_command()
        if command is None:
            raise ServeError("this installation has no proxy (b2cal_assets.proxy.cli); serve with --no-proxy")
        proxy_host, proxy_port = split_host_port(proxy.listen)
        services.append(Service("proxy", [*command, *proxy.args(url)], port_healthy(proxy_host, proxy_port), log_dir / "proxy.log"))
    return services


# --- the demo site -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoAccount:
    """One demo user: DIRAC groups (beyond ``belle``), the role they give, and the PKCS#12 file."""

    name: str
    groups: tuple[str, ...]
    role: str
    p12: Path | None = None


# One account per role of the default policy (proxy/default_policy.yaml).
DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount("viewer", (), "viewer: reads everything, launches nothing"),
    DemoAccount("ecl_expert", ("belle_calib_ecl",), "launcher scoped to asset group ecl (ECL calibration expert)"),
    DemoAccount("production", ("belle_production",), "launcher: every asset group except the sign-off groups"),
    DemoAccount("reviewer", ("belle_calib_reviewer",), "reviewer: signs off buckets (promotion, validation groups)"),
    DemoAccount("operator", ("belle_calib_operator",), "editor: also sensors, schedules, code locations, wipes"),
    DemoAccount("admin", ("belle_admin",), "admin: everything"),
)
# The fault that blocks the demo's second bucket (its validation fails, so no sign-off passes).
DEMO_BLOCKING_FAULT = "dead-crystals"


@dataclass
class DemoSite:
    workdir: Path
    env: dict[str, str]
    proxy: ProxySettings | None
    p12: Path | None  # the admin's, for scripts that want one certificate
    accounts: tuple[DemoAccount, ...] = ()
    buckets: tuple[tuple[str, str], ...] = ()  # (bucket, state for the announcement)


def prepare_demo(workdir: Path, runs: int, events_per_run: int, with_proxy: bool, proxy_listen: str) -> DemoSite:
    """``b2cal demo``'s stages into ``workdir`` except its DEMO sign-off, a demo PKI, one account and
    PKCS#12 per role.

    The runs are split into two buckets of (nearly) equal size: the first clean, as large as
    ``b2cal demo``'s single bucket at the default 10 runs so every calibration passes, left
    TESTING for a reviewer to sign off in the UI; the second carries a fault that fails its
    validation (blocked). Both buckets hold enough data for every calibration: a smaller second
    bucket would be blocked for lack of data, not by its fault.
    """
    import json

    from b2cal_assets.demo import DEMO_EXPERT_CONFIG, STAGES, DemoContext, prepare_workdir

    prepare_workdir(workdir)
    clean = runs - runs // 2
    faults = (f"{DEMO_BLOCKING_FAULT}:{clean + 1}-{runs}",) if runs > 1 else ()
    ctx = DemoContext(workdir, runs, events_per_run, seed=1, faults=faults, bucket_max_runs=clean if runs > 1 else None)
    for name, stage in STAGES:
        if name == "promote":  # serve mode: a reviewer signs off through the proxy, never DEMO
            continue
        click.echo(f"b2cal serve --demo: stage {name}")
        stage(ctx)
    for label, value in ctx.summary:
        if label.startswith(("bucket ", "  e", "scheduler", "validation")):
            click.echo(f"b2cal serve --demo:   {label.strip()}: {value}")
    # What the code server and the runs it launches read (runs launched from the UI included).
    env = {
        "DAGSTER_HOME": str(ctx.dagster_home),
        "B2CAL_INCOMING": str(ctx.incoming),
        "B2CAL_DATABASE_URL": ctx.database_url,
        "B2CAL_WORK_DIR": str(workdir / "work"),
        "B2CAL_PAYLOAD_DIR": str(workdir / "payloads"),
        "B2CAL_REPORTS_DIR": str(workdir / "reports"),
        "B2CAL_EXPERT_CONFIG": json.dumps(DEMO_EXPERT_CONFIG),
    }
    buckets = _bucket_states(ctx.database_url, ctx.workdir / "payloads")
    if not with_proxy:
        return DemoSite(workdir, env, None, None, buckets=buckets)
    from b2cal_assets.auth.pki import build_test_pki

    pki = build_test_pki(workdir / "pki", users=[a.name for a in DEMO_ACCOUNTS])
    _import_demo_accounts(workdir, ctx.database_url, {a.name: pki.users[a.name].subject for a in DEMO_ACCOUNTS})
    # The accounts schedule re-imports the file, so the demo's accounts outlive B2CAL_ACCOUNTS_MAX_AGE.
    env["B2CAL_ACCOUNTS_REGISTRY_YAML"] = str(workdir / "pki" / "demo-registry.yaml")
    accounts = []
    for account in DEMO_ACCOUNTS:
        p12 = workdir / "certificates" / f"{account.name}.p12"
        p12.parent.mkdir(exist_ok=True)
        _write_pkcs12(pki.users[account.name], p12, account.name)
        accounts.append(DemoAccount(account.name, account.groups, account.role, p12))
    proxy = ProxySettings(
        listen=proxy_listen, cert=pki.host.cert_path, key=pki.host.key_path, ca_dir=pki.ca_dir, vomsdir=pki.vomsdir,
        accounts_db=ctx.database_url,
    )
    return DemoSite(workdir, env, proxy, accounts[-1].p12, tuple(accounts), buckets)


def _bucket_states(database_url: str, payload_dir: Path) -> tuple[tuple[str, str], ...]:
    """Each demo bucket and what a visitor can do with it (from its staging tag's state)."""
    from b2cal_assets.calibration.plugins import discover_calibrations
    from b2cal_assets.conditions.errors import UnknownTagError
    from b2cal_assets.conditions.staging import staging_tag_name
    from b2cal_assets.conditions.tags import TagState
    from b2cal_assets.database import platform_database
    from b2cal_assets.validation.inputs import evaluate_bucket
    from b2cal_assets.validation.resources import ValidationResource

    database = platform_database(database_url)
    conditions, buckets = database.conditions(payload_dir), database.buckets()
    running_tag = ValidationResource().running_tag
    states = []
    for bucket in buckets.buckets():
        tag = staging_tag_name(bucket.key)
        try:
            state = conditions.tag(tag).state
        except UnknownTagError:
            states.append((bucket.key, f"staging tag {tag}: none (every calibration failed)"))
            continue
        if state not in (TagState.OPEN, TagState.TESTING):  # signed off, published or invalidated
            states.append((bucket.key, f"staging tag {tag}: {state}"))
            continue
        # What a reviewer will find: sign-off is refused while a blocking check fails.
        outcomes = evaluate_bucket(conditions, buckets, bucket.key, discover_calibrations(), running_tag)
        blocking = [f"{name} {o.check}" for name, checks in outcomes.items() for o in checks if o.blocking and not o.passed]
        waiting = "awaiting sign-off" if state is TagState.TESTING else "awaiting its validation reports"
        verdict = f"blocked, failed: {', '.join(blocking)}" if blocking else f"every blocking check passed, {waiting}"
        states.append((bucket.key, f"staging tag {tag}: {state}, {verdict}"))
    return tuple(states)


def _import_demo_accounts(workdir: Path, database_url: str, subjects: Mapping[str, str]) -> None:
    """One account per demo user, in ``belle`` and the DIRAC groups of its role."""
    import yaml

    from b2cal_assets.accounts.sync import import_registry_yaml

    users = {f"sub-{name}": {"PreferedUsername": name, "DNs": [dn], "Email": f"{name}@belle2.org"} for name, dn in subjects.items()}
    groups: dict[str, dict] = {"belle": {"Users": sorted(users), "Properties": ["NormalUser"]}}
    for account in DEMO_ACCOUNTS:
        for group in account.groups:
            groups.setdefault(group, {"Users": [], "Properties": ["NormalUser"]})["Users"].append(f"sub-{account.name}")
    registry = {"belle": {"IdP": {"URL": "https://idp.b2cal.test", "ClientID": "b2cal-demo"}, "DefaultGroup": "belle",
                          "Users": users, "Groups": groups}}
    path = workdir / "pki" / "demo-registry.yaml"
    path.write_text(yaml.safe_dump(registry))
    import_registry_yaml(path, "belle", accounts_db=database_url)


def _write_pkcs12(credential, out: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    data = pkcs12.serialize_key_and_certificates(
        name.encode(), credential.private_key, credential.certificate, None, BestAvailableEncryption(DEMO_P12_PASSWORD.encode())
    )
    out.write_bytes(data)
    out.chmod(0o600)


# --- the command -------------------------------------------------------------------------------


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="dagster-webserver address (keep it on loopback behind the proxy).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_WEBSERVER_PORT, show_default=True, help="dagster-webserver port.")
@click.option("--workspace", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help=f"workspace.yaml to load (default: the module {CODE_LOCATION_MODULE}, which honours B2CAL_EXECUTOR).")
@click.option("--dagster-home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dagster instance directory holding dagster.yaml (default: $DAGSTER_HOME).")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Service logs (default: <state>/serve/logs).")
@click.option("--no-proxy", is_flag=True, help="Do not start the proxy (the UI stays on loopback only).")
@click.option("--proxy-listen", default=DEFAULT_PROXY_LISTEN, show_default=True, help="HOST:PORT of the proxy's TLS port.")
@click.option("--cert", type=click.Path(path_type=Path), help="Proxy: server certificate (PEM).")
@click.option("--key", type=click.Path(path_type=Path), help="Proxy: server key (PEM).")
@click.option("--ca-dir", type=click.Path(path_type=Path), help="Proxy: IGTF CA directory.")
@click.option("--crl-dir", type=click.Path(path_type=Path), help="Proxy: extra CRL directory.")
@click.option("--vomsdir", type=click.Path(path_type=Path), help="Proxy: vomsdir (<vo>/<host>.lsc).")
@click.option("--policy", type=click.Path(path_type=Path), help="Proxy: role policy file.")
@database_url_option
@click.option("--trusted-front", multiple=True, help="Proxy: trusted TLS terminator address/CIDR (repeatable).")
@click.option("--path-prefix", default="", callback=lambda _c, _p, v: _path_prefix(v),
              help="Serve the UI under this path (e.g. /dagster): the webserver's -l and the proxy's --path-prefix.")
@click.option("--demo", is_flag=True, help="Serve a fresh demo site (b2cal demo's data) with a demo PKI.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None, help="--demo: site directory (default <state>/serve-demo).")
@click.option("--runs", type=click.IntRange(1, 100), default=10, show_default=True,
              help="--demo: runs to generate (two buckets: the second half of the runs carries a blocking fault).")
@click.option("--events-per-run", type=click.IntRange(10), default=50_000, show_default=True,
              help="--demo: events per run (the default is enough for all four calibrations to pass).")
@click.option("--health-timeout", type=float, default=180.0, show_default=True, help="Seconds each service may take to become healthy.")
def serve(host: str, port: int, workspace: Path | None, dagster_home: Path | None, log_dir: Path | None, no_proxy: bool,
          proxy_listen: str, cert: Path | None, key: Path | None, ca_dir: Path | None, crl_dir: Path | None,
          vomsdir: Path | None, policy: Path | None, database_url: str | None, trusted_front: tuple[str, ...], path_prefix: str, demo: bool,
          workdir: Path | None, runs: int, events_per_run: int, health_timeout: float) -> None:
    """Run dagster-webserver, dagster-daemon and the proxy together, until Ctrl-C or SIGTERM."""
    env = dict(os.environ)
    proxy: ProxySettings | None = None
    site: DemoSite | None = None
    if demo:
        site = prepare_demo((workdir or config.state_dir() / "serve-demo").resolve(), runs, events_per_run,
                            with_proxy=not no_proxy and proxy_command() is not None, proxy_listen=proxy_listen)
        env.update(site.env)
        env.pop("B2CAL_DEMO_MODE", None)  # sign-offs in serve mode are a reviewer's, through the proxy
        proxy = site.proxy
        home = Path(site.env["DAGSTER_HOME"])
    else:
        configured = dagster_home or config.DAGSTER_HOME.get()
        if configured is None:
            raise click.UsageError("no Dagster instance: set DAGSTER_HOME (a directory with dagster.yaml) or pass --dagster-home")
        home = configured.resolve()
        if not (home / "dagster.yaml").exists():
            raise click.UsageError(f"{home} has no dagster.yaml; copy the repository's dagster.yaml there (production) "
                                   "or write `telemetry: {enabled: false}` into it (embedded SQLite)")
        if not no_proxy:
            proxy = ProxySettings(proxy_listen, cert, key, ca_dir, crl_dir, vomsdir, policy, database_url, trusted_front, path_prefix)
    env["DAGSTER_HOME"] = str(home)
    logs = (log_dir or config.state_dir() / "serve" / "logs").resolve()
    logs.mkdir(parents=True, exist_ok=True)
    if proxy is not None:
        proxy.path_prefix = path_prefix
    services = build_services(dagster_home=home, host=host, port=port, workspace=workspace, proxy=proxy, log_dir=logs,
                              path_prefix=path_prefix)
    supervisor = Supervisor(services, env)

    def request_stop(signum: int, _frame: object) -> None:
        supervisor.stopping = True

    # SIGINT too: the children have their own sessions, so Ctrl-C reaches only us; we stop them.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    failed: Service | None = None
    try:
        supervisor.start_all(health_timeout)
        if not supervisor.stopping:
            if workspace is None:  # the listing knows the platform's own code location only
                from b2cal_assets.operations.automations import startup_listing
                click.echo("b2cal serve: " + startup_listing(env))
            _announce(host, port, proxy, site)
            failed = supervisor.watch()
    finally:
        if failed is not None:
            click.echo(f"b2cal serve: {failed.name} (pid {failed.pid}) exited with code {failed.exit_code()}; stopping the others. "
                       f"End of {failed.log_path}:\n{failed.log_tail()}", err=True)
        supervisor.stop_all()
        click.echo("b2cal serve: all services stopped")
    if failed is not None:
        raise SystemExit(1)


def _announce(host: str, port: int, proxy: ProxySettings | None, site: DemoSite | None) -> None:
    click.echo(f"b2cal serve: dagster-webserver at http://{host}:{port} (loopback; for this machine only)")
    if proxy is not None:
        proxy_host, proxy_port = split_host_port(proxy.listen)
        click.echo(f"b2cal serve: open https://{proxy_host}:{proxy_port}{proxy.path_prefix}/ in a browser")
    if site is not None:
        for bucket, state in site.buckets:
            click.echo(f"b2cal serve: bucket {bucket}: {state}")
    if site is not None and site.accounts:
        click.echo(f"b2cal serve: demo accounts (PKCS#12 password {DEMO_P12_PASSWORD}; import one into the browser):")
        for account in site.accounts:
            click.echo(f"b2cal serve:   {account.name:<11} {account.role}: {account.p12}")
        click.echo(f"b2cal serve: import the client certificate {site.p12} (password {DEMO_P12_PASSWORD}) into the browser, "
                   f"and trust the demo CA {site.workdir / 'pki' / 'ca' / 'cacert.pem'} for the server certificate")
    click.echo("b2cal serve: ready; Ctrl-C or SIGTERM stops every service")
