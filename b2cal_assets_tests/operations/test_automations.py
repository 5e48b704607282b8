"""The start-up listing of automations: pure states, the real code location, and `b2cal serve`'s output."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from b2cal_assets.operations.automations import (
    Automation,
    automation_states,
    automations_of,
    describe,
    startup_listing,
)
from b2cal_assets_tests.operations.processes import free_port, group_alive, start, stop, wait_for

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = Automation("dirac_accounts_every_10_minutes", "schedule", True, ("B2CAL_ACCOUNTS_REGISTRY_YAML", "DIRACX_URL"))
SENSOR = Automation("new_run_files", "sensor", True)
OFF = Automation("cleanup", "schedule", False)

IDLE_ACCOUNTS = "  idle   schedule dirac_accounts_every_10_minutes  (set B2CAL_ACCOUNTS_REGISTRY_YAML or DIRACX_URL)"


def test_an_automation_needing_a_setting_is_idle_until_one_is_set() -> None:
    assert [s.active for s in automation_states([ACCOUNTS, SENSOR, OFF], {})] == [False, True, False]
    assert [s.active for s in automation_states([ACCOUNTS], {"DIRACX_URL": " "})] == [False]
    assert [s.active for s in automation_states([ACCOUNTS], {"DIRACX_URL": "https://diracx.example"})] == [True]
    assert [s.active for s in automation_states([ACCOUNTS], {"B2CAL_ACCOUNTS_REGISTRY_YAML": "/srv/registry.yml"})] == [True]


def test_describe_lists_active_first_with_what_each_idle_one_needs() -> None:
    assert describe(automation_states([OFF, ACCOUNTS, SENSOR], {})) == "\n".join([
        "automations: 1 active, 2 idle",
        "  active sensor   new_run_files",
        "  idle   schedule cleanup  (stopped by default; start it in the UI)",
        IDLE_ACCOUNTS,
    ])


def test_the_platform_declares_what_its_accounts_schedule_needs() -> None:
    from b2cal_assets.definitions import defs

    automations = {a.name: a for a in automations_of(defs)}
    assert automations["dirac_accounts_every_10_minutes"] == ACCOUNTS
    # The other automations work on the defaults; none is declared as waiting for a setting.
    assert {name for name, a in automations.items() if a.needs_any_of} == {"dirac_accounts_every_10_minutes"}
    assert all(a.running_by_default for a in automations.values())


def test_startup_listing_of_the_platform_without_and_with_a_source() -> None:
    without = startup_listing({})
    assert without.splitlines()[0] == "automations: 4 active, 1 idle" and IDLE_ACCOUNTS in without.splitlines()
    assert startup_listing({"DIRACX_URL": "https://diracx.example"}).splitlines()[0] == "automations: 5 active, 0 idle"


def test_a_code_location_that_does_not_load_is_one_line() -> None:
    assert startup_listing({}, "b2cal_assets_tests.operations.no_such_module") == (
        "automations: not listed (b2cal_assets_tests.operations.no_such_module did not load: "
        "ModuleNotFoundError: No module named 'b2cal_assets_tests.operations.no_such_module')"
    )


@pytest.mark.slow
def test_serve_prints_the_listing_at_start_up(tmp_path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B2CAL_", "DAGSTER_", "DIRACX_"))}
    env.update(B2CAL_HOME=str(tmp_path / "state"), DAGSTER_HOME=str(home))
    out = tmp_path / "serve.out"
    process = start([sys.executable, "-m", "b2cal_assets", "serve", "--no-proxy", "--port", str(free_port()),
                     "--log-dir", str(tmp_path / "logs")], out, env=env, cwd=REPO)
    try:
        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"b2cal serve exited with {process.returncode}:\n{out.read_text()}")
            return "b2cal serve: ready" in out.read_text()

        wait_for(ready, "b2cal serve to report every service healthy", deadline_s=300)
    finally:
        stop(process, signal.SIGTERM)
    text = out.read_text()
    for name, pid in re.findall(r"started (\S+) \(pid (\d+)\)", text):
        assert not group_alive(int(pid)), f"{name} left processes behind"
    lines = text.splitlines()
    assert "b2cal serve: automations: 4 active, 1 idle" in lines
    assert IDLE_ACCOUNTS in lines
