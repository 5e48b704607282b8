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
