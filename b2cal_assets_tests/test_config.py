"""One configuration module: every setting declared once, read through it, documented from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from b2cal_assets import config
from b2cal_assets.cli import main
from b2cal_assets.command_line import roles_table

REPO = Path(__file__).resolve().parents[1]
OPERATIONS = REPO / "docs" / "operations.md"


def _generated_block(name: str) -> str:
    text = OPERATIONS.read_text()
    match = re.search(rf"<!-- BEGIN {name}:[^>]*-->\n(.*?)<!-- END {name} -->", text, re.S)
    assert match, f"docs/operations.md has no generated {name} block"
    return match.group(1)


def test_the_settings_table_in_the_operations_guide_is_the_generated_one():
    assert _generated_block("config-table") == config.markdown_table(), (
        "docs/operations.md's settings table differs from config.SETTINGS: paste the output of `b2cal config table`"
    )


def test_the_roles_table_in_the_operations_guide_matches_the_shipped_policy():
    assert _generated_block("roles-table") == roles_table(), (
        "docs/operations.md's roles table differs from proxy/default_policy.yaml: paste `b2cal config roles`"
    )


def test_b2cal_config_table_prints_the_table():
    result = CliRunner().invoke(main, ["config", "table"])
    assert result.exit_code == 0 and result.output == config.markdown_table()


def _environment_reads(tree: ast.AST) -> list[str]:
    """Names read from os.environ / os.getenv in a module (writes such as os.environ[...] = ... are allowed)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func
            if target.attr == "getenv" and isinstance(target.value, ast.Name) and target.value.id == "os":
                found.append("os.getenv")
            if (target.attr == "get" and isinstance(target.value, ast.Attribute) and target.value.attr == "environ"):
                found.append("os.environ.get")
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            value = node.value
            if isinstance(value, ast.Attribute) and value.attr == "environ":
                found.append("os.environ[...]")
    return found


def test_no_module_reads_the_environment_except_config():
    """Settings are read through config.SETTINGS; copying the whole environment for a child is not a read."""
    offenders = {}
    for path in sorted((REPO / "b2cal_assets").rglob("*.py")):
        if path.name == "config.py" and path.parent.name == "b2cal_assets":
            continue
        reads = _environment_reads(ast.parse(path.read_text(), str(path)))
        if reads:
            offenders[str(path.relative_to(REPO))] = reads
    assert not offenders, f"read these settings through b2cal_assets.config instead: {offenders}"


def test_every_variable_named_in_the_code_is_a_declared_setting():
    names = set()
    for path in (REPO / "b2cal_assets").rglob("*.py"):
        names |= set(re.findall(r"""["'`]((?:B2CAL|DIRACX)_[A-Z0-9_]+)["'`]""", path.read_text()))
    undeclared = sorted(n for n in names if n not in config.BY_NAME and not n.endswith("_"))
    assert not undeclared, f"declare these in config.SETTINGS: {undeclared}"


def test_unset_blank_and_empty_values():
    assert config.BUCKET_MAX_RUNS.get({}) == 20
    assert config.BUCKET_MAX_RUNS.get({"B2CAL_BUCKET_MAX_RUNS": ""}) is None  # empty disables
    assert config.BUCKET_MAX_RUNS.get({"B2CAL_BUCKET_MAX_RUNS": " 7 "}) == 7
    assert config.RUNNING_TAG.get({"B2CAL_RUNNING_TAG": ""}) == "prompt_running"  # blank: the default
    assert config.APPROVER_ROLES.get({"B2CAL_APPROVER_ROLES": "reviewer, admin,"}) == ["reviewer", "admin"]
    assert config.DEMO_MODE.get({"B2CAL_DEMO_MODE": "yes"}) is False  # only "1" lowers the guard


def test_a_malformed_value_names_the_variable():
    with pytest.raises(config.SettingError, match=r"B2CAL_BUCKET_MAX_RUNS='twenty' is not a valid integer"):
        config.BUCKET_MAX_RUNS.get({"B2CAL_BUCKET_MAX_RUNS": "twenty"})


def test_the_platform_database_default_is_derived_in_one_place(tmp_path, monkeypatch):
    monkeypatch.delenv("B2CAL_DATABASE_URL", raising=False)
    monkeypatch.setenv("B2CAL_HOME", str(tmp_path / "state"))
    assert config.database_url(create_state_dir=False) == f"sqlite:///{tmp_path / 'state' / 'b2cal.sqlite'}"
    assert not (tmp_path / "state").exists()
    assert config.payload_dir(create_state_dir=False) == tmp_path / "state" / "payloads"
    monkeypatch.setenv("B2CAL_PAYLOAD_DIR", str(tmp_path / "p"))
    assert config.payload_dir() == tmp_path / "p"


def test_config_show_masks_passwords_and_warns_about_unknown_names(monkeypatch):
    monkeypatch.setenv("B2CAL_CELERY_BROKER", "pyamqp://b2cal:s3cret@mq:5672/b2cal")
    monkeypatch.setenv("B2CAL_DATABSE_URL", "sqlite:///x")  # misspelt
    result = CliRunner().invoke(main, ["config", "show"])
    assert result.exit_code == 0
    assert "s3cret" not in result.output and "pyamqp://b2cal:***@mq:5672/b2cal" in result.output
    assert "B2CAL_DATABSE_URL is set but is no setting" in result.stderr


def test_the_documented_accounts_max_age_is_the_one_applied():
    from b2cal_assets.accounts.freshness import DEFAULT_MAX_AGE, FreshnessPolicy, parse_duration

    assert parse_duration(config.ACCOUNTS_MAX_AGE.fallback) == DEFAULT_MAX_AGE == FreshnessPolicy.from_env({}).max_age


def test_b2cal_conditions_honours_b2cal_payload_dir(tmp_path, monkeypatch):
    from b2cal_assets.database import platform_database

    url = f"sqlite:///{tmp_path / 'b2cal.sqlite'}"
    platform_database(url).runs()  # an existing platform database
    monkeypatch.setenv("B2CAL_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("B2CAL_PAYLOAD_DIR", str(tmp_path / "site-payloads"))
    result = CliRunner().invoke(main, ["conditions", "tags", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "site-payloads").is_dir() and not (tmp_path / "state" / "payloads").exists()
