"""A real DiracX 0.7.0 server on loopback for the accounts tests and the benchmark.

The server packages live in the test-only venv ``.venv-diracx`` (made by
``scripts/setup-diracx-server-venv``), never in the main venv. This module only starts
processes from that venv: ``dirac internal`` to create the config repository,
``python -m diracx.logic rotate-jwk`` for the signing keys, ``python -m diracx.db init-sql``,
``uvicorn`` for the server, and ``mint_token.py`` for credentials. It stops the server by
the pid it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_VENV = Path(os.environ.get("DIRACX_SERVER_VENV", REPO_ROOT / ".venv-diracx"))
MINT_TOKEN = Path(__file__).with_name("mint_token.py")
VO = "belle"
IDP_URL = "https://idp.belle2.test"

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "b2cal tests",
    "GIT_AUTHOR_EMAIL": "b2cal-tests@localhost",
    "GIT_COMMITTER_NAME": "b2cal tests",
    "GIT_COMMITTER_EMAIL": "b2cal-tests@localhost",
}


class DiracxServerUnavailable(RuntimeError):
    """The test DiracX server venv is missing or the server did not become ready."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DiracxTestServer:
    """Keys, a git config repository with VO ``belle``, and uvicorn serving DiracX."""

    def __init__(self, root: Path, *, venv: Path = SERVER_VENV) -> None:
        self.root = root
        self.venv = venv
        self.repo = root / "cs-repo"
        self.jwks = root / "keys" / "jwks.json"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "diracx-server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._base_env = {**os.environ, **_GIT_IDENTITY}
        # Never let the developer's own DiracX settings leak into the server under test.
        for name in list(self._base_env):
            if name.startswith("DIRACX_"):
                del self._base_env[name]

    # ---- processes ------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        path = self.venv / "bin" / name
        if not path.exists():
            raise DiracxServerUnavailable(
                f"{path} is missing; create the test-only DiracX server venv with scripts/setup-diracx-server-venv"
            )
        return str(path)

    def _run(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            args, env=env or self._base_env, capture_output=True, text=True, timeout=120, cwd=self.root
        )
        if done.returncode != 0:
            raise DiracxServerUnavailable(f"{' '.join(args[:4])} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout

    @property
    def server_env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        if not hasattr(self, "_state_key"):
            self._state_key = Fernet.generate_key().decode()
        return {
            **self._base_env,
            "DIRACX_CONFIG_BACKEND_URL": f"git+file://{self.repo}",
            "DIRACX_DB_URL_AUTHDB": f"sqlite+aiosqlite:///{self.root / 'authdb.db'}",
            "DIRACX_SERVICE_AUTH_TOKEN_KEYSTORE": f"file://{self.jwks}",
            "DIRACX_SERVICE_AUTH_TOKEN_ISSUER": self.url,
            "DIRACX_SERVICE_AUTH_STATE_KEY": self._state_key,
            "DIRACX_SERVICE_JOBS_ENABLED": "false",
            "DIRACX_SERVICE_PILOTS_ENABLED": "false",
            "DIRACX_SERVICE_RSS_ENABLED": "false",
        }

    def prepare(self) -> None:
        """Signing keys, config repository with VO belle and group belle, auth database."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.jwks.parent.mkdir(parents=True, exist_ok=True)
        python = self._bin("python")
        self._run(python, "-m", "diracx.logic", "rotate-jwk", "--jwks-path", str(self.jwks))
        dirac = self._bin("dirac")
        self._run(dirac, "internal", "generate-cs", str(self.repo))
        self._run(
            dirac, "internal", "add-vo", str(self.repo), f"--vo={VO}", f"--idp-url={IDP_URL}",
            "--idp-client-id=b2cal-tests", f"--default-group={VO}",
        )
        self._run(python, "-m", "diracx.db", "init-sql", env=self.server_env)
        # What add-vo wrote; set_registry starts from it so a test that broke the VO cannot leak.
        self._vo_template = self.default_yml()["Registry"][VO]

    def start(self, ready_timeout: float = 90.0) -> None:
        """Start uvicorn and wait until /api/health/ready answers 200 (it says 503 at first)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                self._bin("uvicorn"), "--factory", "diracx_fast_app:create_app",
                "--app-dir", str(Path(__file__).resolve().parent),
                "--host", "127.0.0.1", "--port", str(self.port),
            ],
            env=self.server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,  # its own process group: stop() signals only what we started
        )
        log.close()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DiracxServerUnavailable(f"uvicorn exited with {self.process.returncode}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise DiracxServerUnavailable(f"DiracX not ready after {ready_timeout:g} s: {self._log_tail()}")

    def stop(self) -> None:
        """Stop the uvicorn process this object started (by its pid / process group)."""
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        self.process = None

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    # ---- credentials ----------------------------------------------------------------------

    def mint_credentials(
        self,
        path: Path,
        *,
        lifetime_seconds: int = 24 * 3600,
        refresh_lifetime_seconds: int | None = None,
        refresh_known_to_server: bool = False,
    ) -> Path:
        """A diracx-client credentials file signed with the server's keys, for sub ``belle:b2cal-sync``.

        By default the refresh token is signed but unknown to the server's auth database, so a
        refresh attempt is refused, as for a revoked session; ``refresh_known_to_server``
        records it as a login would, and a refresh then succeeds (if the registry has the user).
        """
        extra = ["--refresh-lifetime-seconds", str(refresh_lifetime_seconds)] if refresh_lifetime_seconds else []
        if refresh_known_to_server:
            extra += ["--register-refresh-in", self.server_env["DIRACX_DB_URL_AUTHDB"]]
        self._run(
            self._bin("python"), str(MINT_TOKEN), str(self.jwks), self.url, str(path),
            "--lifetime-seconds", str(lifetime_seconds), *extra,
        )
        return path

    # ---- configuration repository ---------------------------------------------------------

    def default_yml(self) -> dict[str, Any]:
        return yaml.safe_load((self.repo / "default.yml").read_text())

    def commit_config(self, config: dict[str, Any], message: str) -> str:
        """Write default.yml, commit it, return the commit (= the ETag DiracX will serve).

        An unchanged file makes no commit and returns HEAD, so a test run once per database
        backend does not wait twice for the server to pick up the same content.
        """
        return self.commit_text(yaml.safe_dump(config, sort_keys=False), message)

    def commit_text(self, text: str, message: str) -> str:
        path = self.repo / "default.yml"
        if path.read_text() != text:
            path.write_text(text)
            self._run("git", "-C", str(self.repo), "add", "default.yml")
            self._run("git", "-C", str(self.repo), "commit", "-q", "-m", message)
        return self.head()

    def head(self) -> str:
        return self._run("git", "-C", str(self.repo), "rev-parse", "HEAD").strip()

    def set_registry(self, users: dict[str, Any], groups: dict[str, Any], message: str, **vo_fields: Any) -> str:
        """Replace Users and Groups of Registry[belle] (plus e.g. VOMSName) and commit."""
        config = self.default_yml()
        config["Registry"] = {VO: {**self._vo_template, **vo_fields, "Users": users, "Groups": groups}}
        return self.commit_config(config, message)

    def wait_served(self, etag: str, credentials: Path, timeout: float = 30.0) -> None:
        """Block until the server serves commit ``etag`` (it polls the repository every few seconds)."""
        token = json.loads(credentials.read_text())["access_token"]
        deadline = time.monotonic() + timeout
        served = None
        while time.monotonic() < deadline:
            request = urllib.request.Request(
                f"{self.url}/api/config/", headers={"Authorization": f"Bearer {token}", "If-None-Match": etag}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    served = response.headers.get("ETag")
            except urllib.error.HTTPError as error:
                if error.code == 304:
                    return
                served = f"HTTP {error.code}"
            time.sleep(0.25)
        raise DiracxServerUnavailable(f"DiracX still serves {served} after {timeout:g} s, expected {etag}")
