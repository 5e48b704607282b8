"""The b2cal entry point and the demo, as a user runs them."""

import json
import re
import shlex
import subprocess
import sys

import pytest
from click.testing import CliRunner

from b2cal_assets.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in SUBCOMMANDS:
        assert name in result.output


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "b2cal_assets", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "generate" in result.stdout


def test_generate_rejects_an_unknown_fault_with_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["generate", "--out", str(tmp_path), "--fault", "melted-magnet"])
    assert result.exit_code == 2
    assert "unknown fault 'melted-magnet'" in result.output


def test_generate_then_runs_list_after_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("B2CAL_HOME", str(tmp_path / "state"))
    result = CliRunner().invoke(main, ["demo", "--runs", "3", "--events-per-run", "300", "--fault", "truncated-file:2"])
    assert result.exit_code == 0, result.output
    assert re.search(r"runs seen\s+3\n", result.output) and re.search(r"quarantined\s+1\n", result.output)
    assert "e0026.r00002" in result.output and "size check failed" in result.output
    listing = CliRunner().invoke(
        main, ["runs", "list", "--database-url", f"sqlite:///{tmp_path / 'state' / 'demo' / 'b2cal.sqlite'}", "--status", "quarantined"]
    )
    assert listing.exit_code == 0 and "e0026.r00002" in listing.output and "1 run(s)" in listing.output
    assert not re.search(r"\bnan\b", result.output)  # a statistic of one value says n=1 instead

    # The closing lines: one export points every other command at the demo.
    export = next(line.strip() for line in result.output.splitlines() if line.strip().startswith("export "))
    settings = dict(item.split("=", 1) for item in shlex.split(export)[1:])
    assert set(settings) == {"B2CAL_HOME", "DAGSTER_HOME", "B2CAL_EXPERT_CONFIG"}
    assert json.loads(settings["B2CAL_EXPERT_CONFIG"])["ECLCrystalEnergy"]
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    runs = CliRunner().invoke(main, ["runs", "list"])
    assert runs.exit_code == 0 and "3 run(s)" in runs.output, runs.output
    tags = CliRunner().invoke(main, ["conditions", "tags"])
    assert tags.exit_code == 0, tags.output  # the demo's database: the default state directory has none
    assert re.search(r"\S*dagster-webserver -h 127.0.0.1 -p 3000 -m b2cal_assets.definitions", result.output)


def test_a_pull_summary_of_one_constant_has_no_nan():
    import numpy as np

    from b2cal_assets.calibration.framework.contract import pull_summary
    from b2cal_assets.demo import describe_pulls

    one = describe_pulls(pull_summary(np.array([0.4])))
    assert "nan" not in one and "n=1" in one
    many = describe_pulls(pull_summary(np.array([0.4, -0.2, 1.1])))
    assert "width" in many and "(n=3)" in many and "nan" not in many


def test_demo_refuses_to_wipe_a_directory_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "was not made by `b2cal demo`" in result.output
    assert (tmp_path / "precious.txt").exists()


@pytest.mark.slow
def test_demo_with_a_fault_lists_the_failed_check_and_does_not_promote(tmp_path):
    """`b2cal demo --fault dead-crystals`: the full demo, exit 0, the failed check named, no promotion."""
    result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path / "demo"), "--fault", "dead-crystals"])
    assert result.exit_code == 0, result.output
    assert re.search(r"ECLCrystalEnergy\s+5/6 blocking checks passed; FAILED: bad_channel_fraction", result.output)
    assert "80 dead channels" in result.output
    assert "NOT PROMOTED: the bucket failed validation" in result.output
    assert "no bucket was promoted" in result.output
