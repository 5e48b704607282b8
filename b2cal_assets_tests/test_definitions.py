"""The whole code location loads, under every deployment configuration."""

import pytest
from dagster import Definitions


@pytest.mark.parametrize("database", ["default", "postgres"])
def test_whole_definitions_load(monkeypatch, tmp_path, database):
    monkeypatch.setenv("B2CAL_HOME", str(tmp_path))
    if database == "postgres":
        monkeypatch.setenv("B2CAL_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    import importlib

    import b2cal_assets.definitions as module

    module = importlib.reload(module)
    Definitions.validate_loadable(module.defs)
    repository = module.defs.get_repository_def()
    assert "raw_run" in {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert "new_run_files" in {sensor.name for sensor in repository.sensor_defs}
    resources = module.defs.resources
    assert resources["incoming"].root == str(tmp_path / "incoming")
    expected = "postgresql://" if database == "postgres" else f"sqlite:///{tmp_path}"
    assert resources["platform_db"].url.startswith(expected)


def test_production_instance_and_workspace_files_load(monkeypatch, postgres_url, tmp_path):
    """dagster.yaml (PostgreSQL from the environment) and workspace.yaml are valid as shipped."""
    import shutil
    from pathlib import Path

    import yaml
    from dagster import DagsterInstance

    top = Path(__file__).resolve().parents[1]
    shutil.copy(top / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("B2CAL_DAGSTER_POSTGRES_URL", postgres_url)
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    finally:
        instance.dispose()
    config = yaml.safe_load((top / "dagster.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "B2CAL_DAGSTER_POSTGRES_URL"}  # no literal secret
    workspace = yaml.safe_load((top / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == "b2cal_assets.definitions"
