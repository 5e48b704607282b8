"""docs/operations.md's installation guide, run as written.

The blocks marked ``<!-- guide-test: NAME -->`` are executed with only these rewrites:
site paths (/etc/b2cal, /srv/b2cal, /var/log/b2cal, /opt/b2cal/...) point into a temporary
directory and the repository's .venv; ``sudo -u postgres`` becomes a superuser connection to
the machine's PostgreSQL (PGHOST/PGUSER); the role and database names become fresh ones
(dropped at the end); the ports become free loopback ports; the host certificate paths point at
a `b2cal pki init` test PKI. The unit file's ExecStart runs with exactly its EnvironmentFile=,
Environment= and LoadCredential= settings (systemd's %d is a private credentials directory),
and the guide's health check must pass against it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from b2cal_assets_tests.conftest import POSTGRES_SERVER_URL
from b2cal_assets_tests.operations.processes import free_port, start, stop, wait_for

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "operations.md"
SHELL_BLOCKS = ("directories", "postgres", "env-file", "admin-shell", "tables", "first-sync")


def guide_blocks() -> dict[str, str]:
    text = GUIDE.read_text()
    return {name: body for name, body in re.findall(r"<!-- guide-test: (\S+) -->\n```\w*\n(.*?)\n```", text, re.S)}


def test_the_guide_marks_every_block_this_test_runs():
    assert set(guide_blocks()) == {*SHELL_BLOCKS, "unit", "health"}


class Site:
    """The rewrites that turn the guide's site into a scratch one on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root
        tag = uuid.uuid4().hex[:10]
        self.db, self.user = f"b2cal_guide_{tag}", f"b2cal_guide_{tag}"
        self.port, self.proxy_port = free_port(), free_port()
        self.pki = root / "pki"
        server = sa.engine.make_url(POSTGRES_SERVER_URL)
        self.pg_host, self.pg_port = server.host or "127.0.0.1", server.port or 5432
        self.pg_superuser, self.pg_maintenance = server.username or "postgres", server.database or "postgres"
        self.rewrites = [
            ("/opt/b2cal/venv", str(REPO / ".venv")),
            ("/opt/b2cal/src", str(REPO)),
            ("/etc/b2cal", str(root / "etc")),
            ("/srv/b2cal", str(root / "srv")),
            ("/var/log/b2cal", str(root / "log")),
            ("/etc/grid-security/hostcert.pem", str(self.pki / "host" / "hostcert.pem")),
            ("/etc/grid-security/hostkey.pem", str(self.pki / "host" / "hostkey.pem")),
            ("/etc/grid-security/certificates", str(self.pki / "certificates")),
            ("/etc/grid-security/vomsdir", str(self.pki / "vomsdir")),
            ("sudo -u postgres ", ""),
            ("-v db=b2cal -v user=b2cal", f"-v db={self.db} -v user={self.user}"),
            ("postgresql://b2cal@127.0.0.1:5432/b2cal", f"postgresql://{self.user}@{self.pg_host}:{self.pg_port}/{self.db}"),
            ("--port 3000", f"--port {self.port}"),
            ("127.0.0.1:3000", f"127.0.0.1:{self.port}"),
            ("0.0.0.0:8443", f"127.0.0.1:{self.proxy_port}"),
        ]

    def rewrite(self, text: str) -> str:
        for old, new in self.rewrites:
            text = text.replace(old, new)
        left = re.search(r"(^|[\s'\"=:(])/(etc|srv|opt|var/log)/b2cal", text, re.M)
        assert left is None, f"a site path the test does not rewrite: {left.group(0)!r} in\n{text}"
        return text

    def shell_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"], "HOME": str(self.root / "home"), "LANG": "C.UTF-8",
            "PGHOST": self.pg_host, "PGPORT": str(self.pg_port), "PGUSER": self.pg_superuser, "PGDATABASE": self.pg_maintenance,
        }

    def drop(self) -> None:
        engine = sa.create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{self.user}"'))
        engine.dispose()


def unit_environment(unit: str, credentials: Path) -> tuple[dict[str, str], list[str]]:
    """(environment, argv) of the [Service] section as systemd would build them."""
    env: dict[str, str] = {}
    argv: list[str] = []
    for line in unit.splitlines():
        key, _, value = line.partition("=")
        if key == "EnvironmentFile":
            optional, path = value.startswith("-"), Path(value.lstrip("-"))
            if optional and not path.exists():
                continue
            for entry in path.read_text().splitlines():
                if entry.strip() and not entry.startswith("#"):
                    name, _, setting = entry.partition("=")
                    env[name] = setting
        elif key == "Environment":
            name, _, setting = value.partition("=")
            env[name] = setting.replace("%d", str(credentials))
        elif key == "LoadCredential":
            name, _, source = value.partition(":")
            credentials.mkdir(mode=0o700, exist_ok=True)
            shutil.copyfile(source, credentials / name)
            (credentials / name).chmod(0o400)
        elif key == "ExecStart":
            argv = shlex.split(value)
    return env, argv


@pytest.mark.slow
@pytest.mark.postgres
def test_the_installation_guide_runs_from_database_creation_to_a_healthy_serve(tmp_path):
    blocks = guide_blocks()
    site = Site(tmp_path)
    (tmp_path / "home").mkdir()
    assert subprocess.run([str(REPO / ".venv" / "bin" / "b2cal"), "pki", "init", str(site.pki)],
                          capture_output=True).returncode == 0
    # The Registry YAML the site would take from its DiracX configuration repository.
    (tmp_path / "etc").mkdir()
    shutil.copyfile(REPO / "b2cal_assets_tests" / "accounts" / "data" / "registry.yml", tmp_path / "etc" / "registry.yaml")
    script = "set -euo pipefail\n" + "\n".join(site.rewrite(blocks[name]) for name in SHELL_BLOCKS)
    serve = None
    try:
        shell = subprocess.run(["bash", "-c", script], env=site.shell_env(), capture_output=True, text=True, timeout=600)
        assert shell.returncode == 0, f"guide commands failed:\n{shell.stdout}\n{shell.stderr}"
        assert (tmp_path / "etc" / "pgpass").stat().st_mode & 0o077 == 0  # the password file is private
        assert "B2CAL_DATABASE_URL=postgresql://" in shell.stdout  # b2cal config show
        assert "3 accounts" in shell.stdout  # b2cal accounts list after the first import

        env, argv = unit_environment(site.rewrite(blocks["unit"]), tmp_path / "credentials")
        assert Path(env["PGPASSFILE"]).read_text() == (tmp_path / "etc" / "pgpass").read_text()
        assert "password" not in " ".join(env.values()).lower()
        env.update({"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"})
        serve = start(argv, tmp_path / "serve.out", env=env)

        def ready() -> bool:
            output = (tmp_path / "serve.out").read_text(errors="replace")
            if serve.poll() is not None:
                raise AssertionError(f"the unit's ExecStart exited with {serve.returncode}:\n{output}")
            return "b2cal serve: ready" in output

        wait_for(ready, "the guide's b2cal serve to report every service healthy", deadline_s=400)
        health = subprocess.run(["bash", "-c", site.rewrite(blocks["health"])], capture_output=True, text=True, timeout=60)
        assert health.returncode == 0 and "dagster_webserver_version" in health.stdout, health.stderr
        assert (tmp_path / "log" / "proxy.log").exists()  # --log-dir as the unit says
    finally:
        if serve is not None:
            stop(serve, grace_s=90)
        site.drop()


def _unit_blocks() -> dict[str, str]:
    text = GUIDE.read_text()
    units = {"b2cal.service": guide_blocks()["unit"]}
    worker = re.search(r"```ini\n(\[Unit\]\nDescription=b2cal Celery worker.*?)\n```", text, re.S)
    assert worker, "the guide has no b2cal-worker@.service unit"
    units["b2cal-worker@.service"] = worker.group(1)
    return units


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_guides_unit_files_pass_systemd_analyze_verify(tmp_path):
    """No unknown keys, no unparsable values, executables present (paths pointed at this .venv)."""
    for name, body in _unit_blocks().items():
        (tmp_path / name).write_text(body.replace("/opt/b2cal/venv", str(REPO / ".venv")) + "\n")
    for unit in ("b2cal.service", "b2cal-worker@1.service"):
        checked = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0 and not checked.stderr.strip(), f"{unit}: {checked.stderr}"
