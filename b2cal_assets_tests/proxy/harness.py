"""Test harness: a real dagster-webserver, a test PKI with voms-proxy-fake proxies, an accounts store, and the proxy.

Module/session scoped: the webserver and the PKI are made once; the proxy runs on its own
event loop in a thread so the tests talk to it over real TLS from ordinary blocking clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from b2cal_assets.accounts.sync import import_registry_yaml
from b2cal_assets.auth.pki import Credential, TestPKI, build_test_pki, voms_proxy_fake
from b2cal_assets.database import platform_database
from b2cal_assets.proxy.config import ProxyConfig
from b2cal_assets.proxy.server import ProxyState, new_event_loop, start_server

PERSONAS = ("viewer", "launcher", "ecl", "reviewer", "admin", "suspended", "stranger")
FQANS = {
    "viewer": ["/belle"],
    "launcher": ["/belle/Role=production"],
    "ecl": ["/belle", "/belle/calibration/ecl"],
    "reviewer": ["/belle/calibration/Role=reviewer"],
    "admin": ["/belle/Role=lcgadmin"],
    "suspended": ["/belle/Role=lcgadmin"],
    "stranger": ["/belle"],
}
WEBSERVER = Path(sys.executable).parent / "dagster-webserver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def registry(pki: TestPKI) -> dict[str, Any]:
    """DiracX Registry: every persona but the stranger has an account; 'suspended' is suspended."""
    users = {}
    for name in PERSONAS:
        if name == "stranger":
            continue
        users[f"sub-{name}"] = {"PreferedUsername": name, "DNs": [pki.users[name].subject], "Email": f"{name}@belle2.org"}
    users["sub-suspended"]["Suspended"] = ["belle"]
    everyone = list(users)
    groups = {
        "belle": {"Users": everyone, "Properties": ["NormalUser"], "VOMSRole": "/belle"},
        "belle_production": {"Users": ["sub-launcher"], "Properties": ["NormalUser"], "VOMSRole": "/belle/Role=production"},
        "belle_admin": {"Users": ["sub-admin", "sub-suspended"], "Properties": ["NormalUser"], "VOMSRole": "/belle/Role=lcgadmin"},
    }
    return {"belle": {"IdP": {"URL": "https://idp.belle2.org", "ClientID": "b2cal"}, "DefaultGroup": "belle", "Users": users, "Groups": groups}}


@dataclass
class World:
    pki: TestPKI
    root: Path
    webserver_port: int
    accounts_url: str
    proxies: dict[str, Path] = field(default_factory=dict)

    @property
    def ca_file(self) -> Path:
        return self.pki.ca.credential.cert_path

    def proxy_file(self, name: str, **options: Any) -> Path:
        """A voms-proxy-fake proxy for persona ``name`` (memoised by name + options)."""
        key = name + json.dumps(options, sort_keys=True)
        if key not in self.proxies:
            user = options.pop("user", name)
            voms = options.pop("voms", True)
            fqans = options.pop("fqans", FQANS.get(user, ["/belle"]))
            credential: Credential = self.pki.users.get(user) or self.pki.rogue_users[user]
            self.proxies[key] = voms_proxy_fake(
                cert=credential.cert_path, key=credential.key_path, out=self.root / "proxies" / f"{len(self.proxies)}-{name}.pem",
                ca_dir=self.pki.ca_dir, aa=self.pki.aa if voms else None, vo=self.pki.vo, uri=self.pki.voms_uri,
                fqans=fqans if voms else (), **options,
            )
        return self.proxies[key]


@dataclass
class Webserver:
    """A dagster-webserver subprocess serving the project's code location."""

    port: int
    pid: int
    home: Path  # its DAGSTER_HOME
    prefix: str = ""  # its -l path prefix

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"


@contextlib.contextmanager
def start_webserver(root: Path, *, prefix: str = "", instance: dict[str, Any] | None = None,
                    env: dict[str, str] | None = None) -> Iterator[Webserver]:
    """A dagster-webserver on a free loopback port with its own DAGSTER_HOME and b2cal state under ``root``.

    ``prefix``: its ``-l`` path prefix. ``instance``: dagster.yaml settings (none: Dagster's
    defaults, under which launched runs stay queued, as no daemon dequeues them). ``env``:
    extra environment of the webserver and the runs it starts. The process
    runs in a session of its own, and the whole group is stopped on exit, so the code server
    and any run worker it started go with it.
    """
    home = root / "dagster_home"
    home.mkdir(parents=True)
    if instance:
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    state = root / "b2cal"
    env = {
        **os.environ, "DAGSTER_HOME": str(home), "B2CAL_HOME": str(state),
        "B2CAL_DATABASE_URL": f"sqlite:///{state / 'b2cal.sqlite'}", "B2CAL_INCOMING": str(state / "incoming"),
        "B2CAL_PAYLOAD_DIR": str(state / "payloads"), "B2CAL_WORK_DIR": str(state / "work"), **(env or {}),
    }
    port = free_port()
    log_path = root / "webserver.log"
    log = open(log_path, "wb")
    # -a defs: the module also holds the per-domain Definitions it merges.
    command = [str(WEBSERVER), "-h", "127.0.0.1", "-p", str(port), "-m", "b2cal_assets.definitions", "-a", "defs"]
    process = subprocess.Popen(command + (["-l", prefix] if prefix else []), env=env, cwd=root, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{prefix}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dagster-webserver did not start; see {log_path}:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield Webserver(port=port, pid=process.pid, home=home, prefix=prefix)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait()
        # Its children (code server, run workers) are in its process group, whose id is its pid.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        log.close()


@contextlib.contextmanager
def make_world(root: Path) -> Iterator[World]:
    """PKI, accounts store and a dagster-webserver subprocess under ``root``; stopped on exit."""
    if shutil.which("voms-proxy-fake") is None:  # pragma: no cover - CI installs voms-clients
        raise RuntimeError("voms-proxy-fake not found: apt-get install -y voms-clients")
    pki = build_test_pki(root / "pki", users=PERSONAS)
    accounts_url = f"sqlite:///{root / 'accounts.sqlite'}"
    (root / "registry.yaml").write_text(yaml.safe_dump(registry(pki)))
    import_registry_yaml(root / "registry.yaml", "belle", store=platform_database(accounts_url).accounts())
    with start_webserver(root) as webserver:
        yield World(pki=pki, root=root, webserver_port=webserver.port, accounts_url=accounts_url)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with make_world(tmp_path_factory.mktemp("proxy")) as made:
        yield made


class RunningProxy:
    """The proxy on its own event loop in a daemon thread."""

    def __init__(self, config: ProxyConfig) -> None:
        self.state = ProxyState(config)
        self.loop = new_event_loop()  # the loop `b2cal proxy` runs on (uvloop when installed)
        self.port = 0
        started = threading.Event()

        async def boot() -> None:
            self.runner, self.port = await start_server(self.state)
            started.set()

        self.thread = threading.Thread(target=self._run, args=(boot,), daemon=True)
        self.thread.start()
        if not started.wait(30):
            raise RuntimeError("proxy did not start")

    def _run(self, boot: Any) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(boot())
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def base_config(world: World, **overrides: Any) -> ProxyConfig:
    options: dict[str, Any] = dict(
        listen="127.0.0.1:0", upstream=f"http://127.0.0.1:{world.webserver_port}", cert=world.pki.host.cert_path,
        key=world.pki.host.key_path, ca_dir=world.pki.ca_dir, vomsdir=world.pki.vomsdir, accounts_db=world.accounts_url,
        asset_groups_ttl=30.0,
    )
    options.update(overrides)
    config = ProxyConfig(**options)
    config.validate()
    return config


@pytest.fixture(scope="session")
def tls_proxy(world: World) -> Iterator[RunningProxy]:
    proxy = RunningProxy(base_config(world))
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def front_proxy(world: World) -> Iterator[RunningProxy]:
    """A plain-HTTP proxy trusting 127.0.0.1 as its TLS terminator (RFC 9440 headers)."""
    proxy = RunningProxy(base_config(world, cert=None, key=None, trusted_front=["127.0.0.1/32"]))
    yield proxy
    proxy.stop()


def client_context(world: World, cert: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(world.ca_file))
    context.check_hostname = False  # the host certificate names b2cal.b2cal.test; we dial 127.0.0.1
    if cert is not None:
        context.load_cert_chain(str(cert))
    return context


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(port: int, method: str, path: str, *, context: ssl.SSLContext | None = None, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> Reply:
    connection: http.client.HTTPConnection
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


JSON_HEADERS = {"Content-Type": "application/json"}
RUN_DONE = ("SUCCESS", "FAILURE", "CANCELED")
# A webserver whose launched runs start at once (DefaultRunLauncher subprocess), no daemon needed.
RUNS_START_AT_ONCE = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}}


def upstream_graphql(webserver: Webserver, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """``data`` of a query sent straight to the webserver (the tests' own look, not through the proxy)."""
    reply = request(webserver.port, "POST", webserver.prefix + "/graphql", headers=JSON_HEADERS,
                    body=json.dumps({"query": query, "variables": variables or {}}).encode())
    body = reply.json()
    if reply.status != 200 or "data" not in body or body.get("errors"):
        raise RuntimeError(f"webserver on port {webserver.port} answered {reply.status}: {str(body)[:500]}")
    return body["data"]


def asset_launch_params(webserver: Webserver, asset_path: list[str], tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """ExecutionParams materialising one asset of the harness code location."""
    data = upstream_graphql(webserver, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    repo = data["repositoriesOrError"]["nodes"][0]
    return {"selector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"],
                         "jobName": "__ASSET_JOB", "assetSelection": [{"path": asset_path}]},
            "mode": "default", "executionMetadata": {"tags": tags or []}}


def wait_for_run(webserver: Webserver, run_id: str, timeout: float = 180.0) -> str:
    """The run's final status, polled; a RuntimeError naming the last status if it does not end in ``timeout`` s."""
    deadline = time.monotonic() + timeout
    status = "unknown"
    while time.monotonic() < deadline:
        data = upstream_graphql(webserver, "query R($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }",
                                {"id": run_id})
        status = data["runOrError"].get("status") or data["runOrError"]["__typename"]
        if status in RUN_DONE:
            return status
        time.sleep(0.5)
    raise RuntimeError(f"run {run_id} still {status} after {timeout} s; see {webserver.home.parent / 'webserver.log'}")
