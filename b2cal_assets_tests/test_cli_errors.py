"""One error style at the command line: every foreseeable mistake is at most two lines on
stderr, a non-zero exit (2 for usage), no traceback, and nothing half-written.

The cases of issue 16 first, then sweeps of the same classes (bad database URLs, paths that
cannot be written) over every command that takes them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from b2cal_assets.cli import main

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fails_cleanly(args: list[str], *, code: int | None = None, env: dict[str, str] | None = None) -> str:
    """Run `b2cal ARGS`; assert the failure is clean and return stderr."""
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    # An escaped exception would be kept by the runner instead of the SystemExit of the boundary.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("Error: "), result.stderr
    return result.stderr


def nothing_in(path: Path) -> bool:
    return not path.exists() or not any(path.iterdir())


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    """An empty state directory (B2CAL_HOME) and no platform-database override."""
    home = tmp_path / "state"
    monkeypatch.setenv("B2CAL_HOME", str(home))
    for name in ("B2CAL_DATABASE_URL", "B2CAL_INCOMING", "B2CAL_PAYLOAD_DIR"):
        monkeypatch.delenv(name, raising=False)
    return home


# --- the cases of issue 16 ----------------------------------------------------------------------


def test_a_missing_sqlite_database_is_one_line_and_not_created(tmp_path):
    target = tmp_path / "nonexistent" / "dir" / "x.sqlite"
    err = fails_cleanly(["conditions", "show", "X", "--database-url", f"sqlite:///{target}"], code=1)
    assert "no platform database at" in err
    assert not target.parent.exists()


def test_an_unparsable_database_url_is_one_line():
    err = fails_cleanly(["conditions", "show", "X", "--database-url", "notaurl"], code=1)
    assert "cannot use the database URL" in err and "B2CAL_DATABASE_URL" in err


def test_an_unreachable_postgresql_is_one_line():
    url = f"postgresql://b2cal@127.0.0.1:{_free_port()}/b2cal"
    err = fails_cleanly(["conditions", "tags", "--database-url", url], code=1)
    assert "not usable" in err and "the server is running" in err


def test_runs_list_after_a_demo_elsewhere_says_where_it_looked_and_creates_nothing(state):
    err = fails_cleanly(["runs", "list"], code=1)
    assert f"no platform database at {state / 'b2cal.sqlite'}" in err
    assert not state.exists()
    fails_cleanly(["conditions", "tags"], code=1)
    assert not state.exists()


@pytest.mark.parametrize("args", [
    ["generate", "--out", "/proc/nope", "--runs", "1", "--events-per-run", "30"],
    ["pki", "init", "/proc/x"],
    ["pki", "proxy", "{pki}", "--out", "/proc/x/alice.proxy"],
], ids=["generate", "pki-init", "pki-proxy"])
def test_an_unwritable_output_path_is_one_line(args, tmp_path):
    if "{pki}" in args:
        assert CliRunner().invoke(main, ["pki", "init", str(tmp_path / "pki")]).exit_code == 0
        args = [a.replace("{pki}", str(tmp_path / "pki")) for a in args]
    err = fails_cleanly(args, code=1)
    assert "/proc/" in err


def test_conditions_export_to_an_unwritable_directory_is_one_line(tmp_path):
    from b2cal_assets.database import platform_database

    url = f"sqlite:///{tmp_path / 'b2cal.sqlite'}"
    platform_database(url).conditions(tmp_path / "payloads").create_tag("t1")
    err = fails_cleanly(["conditions", "export", "--tag", "t1", "--out", "/proc/forbidden",
                         "--database-url", url, "--payload-dir", tmp_path / "payloads"], code=1)
    assert "/proc/forbidden" in err
    err = fails_cleanly(["conditions", "export", "--tag", "nope", "--out", tmp_path / "out", "--database-url", url], code=1)
    assert "nope" in err and nothing_in(tmp_path / "out")


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", "-5"], "--seed"),
    (["--first-run", "99998", "--runs", "5"], "exceed the run numbers"),
    (["--runs", "2", "--fault", "corrupt-file:99"], "outside the generated runs 1-2"),
    (["--events-per-run", "1"], "--events-per-run"),
    (["--fault", "nonsense"], "unknown fault 'nonsense'"),
], ids=["negative-seed", "run-range", "fault-run", "events-per-run", "fault-name"])
def test_generate_refuses_bad_arguments_before_writing(args, message, tmp_path):
    out = tmp_path / "incoming"
    err = fails_cleanly(["generate", "--out", out, *args], code=2)
    assert message in err
    assert not out.exists()


def test_demo_refuses_a_bad_fault_before_creating_its_workdir(tmp_path):
    workdir = tmp_path / "demo"
    err = fails_cleanly(["demo", "--workdir", workdir, "--fault", "nonsense"], code=2)
    assert "unknown fault 'nonsense'" in err
    assert not workdir.exists()


def test_reindex_of_a_missing_incoming_root_is_a_usage_error(state, tmp_path):
    fails_cleanly(["runs", "reindex", "--incoming", tmp_path / "nonexistent"], code=2)
    err = fails_cleanly(["runs", "reindex"], code=2)
    assert "B2CAL_INCOMING" in err and not state.exists()


def test_auth_check_of_a_text_file_says_it_holds_no_certificate(tmp_path):
    assert CliRunner().invoke(main, ["pki", "init", str(tmp_path / "pki")]).exit_code == 0
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    err = fails_cleanly(["auth", "check", "--chain", text, "--ca-dir", tmp_path / "pki" / "certificates",
                         "--vomsdir", tmp_path / "pki" / "vomsdir"], code=2)
    assert "holds no certificate" in err


def test_accounts_import_of_a_pkcs12_file_is_one_line_and_keeps_the_store(tmp_path):
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    from b2cal_assets.auth.pki import build_test_pki

    alice = build_test_pki(tmp_path / "pki").users["alice"]
    p12 = tmp_path / "alice.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"alice", alice.private_key, alice.certificate, None, BestAvailableEncryption(b"secret")))
    url = f"sqlite:///{tmp_path / 'b2cal.sqlite'}"
    err = fails_cleanly(["accounts", "import", p12, "--database-url", url])
    assert "alice.p12" in err or "not text" in err or "YAML" in err


def test_the_old_accounts_db_spelling_still_works_and_fails_cleanly():
    err = fails_cleanly(["accounts", "list", "--accounts-db", "notaurl"], code=1)
    assert "cannot use the database URL" in err


# --- the same classes on every command ----------------------------------------------------------

READ_COMMANDS = [
    ["runs", "list"],
    ["conditions", "tags"],
    ["conditions", "show", "T"],
    ["conditions", "export", "--tag", "T", "--out", "{tmp}/out"],
    ["accounts", "list"],
    ["accounts", "show", "/C=JP/CN=nobody"],
    ["db", "current"],
]
WRITE_COMMANDS = [
    ["accounts", "import", "{registry}"],
    ["db", "upgrade"],
]


@pytest.fixture
def registry_file() -> Path:
    return REPO / "b2cal_assets_tests" / "accounts" / "data" / "registry.yml"


@pytest.mark.parametrize("command", READ_COMMANDS + WRITE_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("bad_url", ["notaurl", "nosuchdialect://x/y", "sqlite:////nonexistent-b2cal/dir/x.sqlite",
                                     "postgresql://b2cal@127.0.0.1:{port}/b2cal"],
                         ids=["garbage", "dialect", "sqlite-missing-dir", "postgres-down"])
def test_every_database_command_fails_cleanly_on_a_bad_url(command, bad_url, tmp_path, registry_file):
    url = bad_url.replace("{port}", str(_free_port()))
    args = [a.replace("{tmp}", str(tmp_path)).replace("{registry}", str(registry_file)) for a in command]
    fails_cleanly([*args, "--database-url", url], code=1)
    assert not Path("/nonexistent-b2cal").exists()
    assert nothing_in(tmp_path / "out")


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_read_commands_never_create_the_database(command, state, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    err = fails_cleanly(args, code=1)
    assert "no platform database" in err
    assert not state.exists()


def test_a_bad_database_url_in_the_environment_is_one_line(monkeypatch):
    monkeypatch.setenv("B2CAL_DATABASE_URL", "notaurl")
    assert "cannot use the database URL" in fails_cleanly(["runs", "list"], code=1)


def test_an_unusable_state_directory_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("B2CAL_HOME", "/proc/forbidden-state")
    assert "/proc/forbidden-state" in fails_cleanly(["demo", "--runs", "1"], code=1)


def test_the_installed_entry_point_prints_no_traceback(tmp_path):
    """The same boundary in a real process (console script semantics, stderr as a user sees it)."""
    target = tmp_path / "missing" / "x.sqlite"
    proc = subprocess.run([sys.executable, "-m", "b2cal_assets", "runs", "list", "--database-url", f"sqlite:///{target}"],
                          capture_output=True, text=True, env={**os.environ, "B2CAL_HOME": str(tmp_path / "state")})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not target.parent.exists()


@pytest.mark.parametrize("args", [
    ["demo", "--workdir", "/proc/forbidden-demo", "--runs", "1"],
    ["serve", "--no-proxy", "--dagster-home", "{home}", "--log-dir", "/proc/forbidden-logs"],
], ids=["demo-workdir", "serve-log-dir"])
def test_unwritable_work_and_log_directories_are_one_line(args, tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    err = fails_cleanly([a.replace("{home}", str(tmp_path / "home")) for a in args], code=1)
    assert "/proc/forbidden" in err


def test_serve_without_an_instance_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert "DAGSTER_HOME" in fails_cleanly(["serve", "--no-proxy"], code=2)
    assert "has no dagster.yaml" in fails_cleanly(["serve", "--no-proxy", "--dagster-home", tmp_path], code=2)


def test_the_proxy_refuses_a_bad_database_url_before_listening(tmp_path):
    assert CliRunner().invoke(main, ["pki", "init", str(tmp_path / "pki")]).exit_code == 0
    pki = tmp_path / "pki"
    err = fails_cleanly(["proxy", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:1",
                         "--cert", pki / "host" / "hostcert.pem", "--key", pki / "host" / "hostkey.pem",
                         "--ca-dir", pki / "certificates", "--vomsdir", pki / "vomsdir", "--database-url", "notaurl"], code=1)
    assert "cannot use the database URL" in err


def test_an_unknown_command_and_a_bad_option_are_two_line_usage_errors():
    fails_cleanly(["calibrate-everything"], code=2)
    fails_cleanly(["runs", "list", "--no-such-option"], code=2)
