"""`b2cal serve` as a real process: health, supervision, clean shutdown, nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from b2cal_assets.operations.serve import proxy_command
from b2cal_assets_tests.operations.processes import free_port, group_alive, start, stop, wait_for

REPO = Path(__file__).resolve().parents[2]


class Serve:
    """A `b2cal serve` subprocess and what it printed."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.out = tmp_path / "serve.out"
        self.process = start([sys.executable, "-m", "b2cal_assets", "serve", *args], self.out, env=env, cwd=REPO)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"b2cal serve exited with {self.process.returncode}:\n{self.text()}")
            return "b2cal serve: ready" in self.text()

        wait_for(ready, "b2cal serve to report every service healthy", deadline_s=300)

    def pids(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in re.findall(r"started (\S+) \(pid (\d+)\)", self.text())}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B2CAL_", "DAGSTER_"))}
    env["B2CAL_HOME"] = str(tmp_path / "state")
    return env


def _server_info(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=10) as response:
        return json.loads(response.read())


def _assert_nothing_left(pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        assert not group_alive(pid), f"{name} (process group {pid}) left processes behind"


@pytest.mark.slow
def test_serve_reports_a_dead_service_and_stops_the_others(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = _env(tmp_path)
    env["DAGSTER_HOME"] = str(home)
    port = free_port()
    args = ["--port", str(port), "--log-dir", str(tmp_path / "logs")]
    if proxy_command() is not None:
        from b2cal_assets.auth.pki import build_test_pki

        pki = build_test_pki(tmp_path / "pki")
        args += ["--proxy-listen", f"127.0.0.1:{free_port()}", "--cert", str(pki.host.cert_path), "--key", str(pki.host.key_path),
                 "--ca-dir", str(pki.ca_dir), "--vomsdir", str(pki.vomsdir), "--accounts-db", f"sqlite:///{tmp_path / 'accounts.sqlite'}"]
    else:
        args.append("--no-proxy")
    serve = Serve(tmp_path, args, env)
    try:
        serve.wait_ready()
        pids = serve.pids()
        assert {"dagster-webserver", "dagster-daemon"} <= set(pids)
        assert _server_info(port)["dagster_webserver_version"]
        os.kill(pids["dagster-daemon"], signal.SIGKILL)
        assert serve.process.wait(120) == 1
    finally:
        stop(serve.process)
    text = serve.text()
    assert f"dagster-daemon (pid {pids['dagster-daemon']}) exited with code -9; stopping the others" in text
    assert "all services stopped" in text
    _assert_nothing_left(pids)


@pytest.mark.slow
def test_serve_demo_prints_url_and_certificate_and_sigterm_stops_everything(tmp_path):
    port, proxy_port = free_port(), free_port()
    args = ["--demo", "--workdir", str(tmp_path / "site"), "--runs", "2", "--events-per-run", "600", "--port", str(port),
            "--proxy-listen", f"127.0.0.1:{proxy_port}", "--log-dir", str(tmp_path / "logs")]
    serve = Serve(tmp_path, args, _env(tmp_path))
    try:
        serve.wait_ready()
        pids = serve.pids()
        assert _server_info(port)["dagster_webserver_version"]
        # Runs launched from the UI are the webserver's (and its code server's) children: same environment as the demo.
        for service in ("dagster-webserver", "dagster-daemon"):
            environ = dict(e.split(b"=", 1) for e in Path(f"/proc/{pids[service]}/environ").read_bytes().split(b"\0") if b"=" in e)
            assert b"ECLCrystalEnergy" in environ[b"B2CAL_EXPERT_CONFIG"], service
            assert environ[b"B2CAL_REPORTS_DIR"] == str(tmp_path / "site" / "reports").encode(), service
            assert b"B2CAL_DEMO_MODE" not in environ, "serve mode signs off through the proxy, never DEMO"
        text = serve.text()
        assert f"http://127.0.0.1:{port}" in text
        if proxy_command() is not None:
            assert f"open https://127.0.0.1:{proxy_port}/" in text
            p12 = re.search(r"import the client certificate (\S+\.p12) \(password (\S+)\)", text)
            assert p12 and Path(p12.group(1)).is_file()
            from cryptography.hazmat.primitives.serialization import pkcs12

            bundle = pkcs12.load_pkcs12(Path(p12.group(1)).read_bytes(), p12.group(2).encode())
            assert "Admin" in bundle.cert.certificate.subject.rfc4514_string()
            # One account and PKCS#12 per role, each listed with its role.
            for account, role in (("viewer", "viewer"), ("ecl_expert", "launcher scoped to asset group ecl"),
                                  ("production", "launcher"), ("reviewer", "reviewer"), ("operator", "editor"), ("admin", "admin")):
                line = re.search(rf"b2cal serve:\s+{account}\s+(.*): (\S+\.p12)", text)
                assert line and line.group(1).startswith(role) and Path(line.group(2)).is_file(), (account, text[-2000:])
        os.kill(serve.process.pid, signal.SIGTERM)
        assert serve.process.wait(120) == 0
    finally:
        stop(serve.process)
    assert "all services stopped" in serve.text()
    _assert_nothing_left(pids)
