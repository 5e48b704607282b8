"""The whole code location loads, under every deployment configuration."""

import pytest
from dagster import Definitions


@pytest.mark.parametrize("database", ["default", "postgres"])
def test_whole_definitions_load(monkeypatch, tmp_path, database):
    import os

    for variable in [name for name in os.environ if name.startswith("B2CAL_")]:
        monkeypatch.delenv(variable)  # the deployment is this test's alone: defaults below B2CAL_HOME
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
    # The hand-off sensors run on every loop of the daemon (see operations/pacing.py).
    intervals = {sensor.name: sensor.minimum_interval_seconds for sensor in repository.sensor_defs}
    assert {name: intervals[name] for name in ("new_run_files", "calibration_buckets", "validation_reports")} == dict.fromkeys(
        ("new_run_files", "calibration_buckets", "validation_reports"), 1
    )
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
    # Dequeued runs are launched side by side: a launch waits for its run worker to start.
    coordinator = config["run_coordinator"]["config"]
    assert coordinator["dequeue_use_threads"] is True and coordinator["dequeue_num_workers"] >= 2
    workspace = yaml.safe_load((top / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == "b2cal_assets.definitions"


def test_production_instance_limits_runs_per_subsystem_and_pools_conditions_writers(monkeypatch, postgres_url, tmp_path):
    """dagster.yaml's run queue limits match the tags the scheduler sets, and the pool is the assets'."""
    import shutil
    from pathlib import Path

    from dagster import DagsterInstance

    from b2cal_assets.calibration.definitions import build_calibration_definitions

    top = Path(__file__).resolve().parents[1]
    shutil.copy(top / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("B2CAL_DAGSTER_POSTGRES_URL", postgres_url)
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        config = instance.get_concurrency_config()
        limits = config.run_queue_config.tag_concurrency_limits
        # No per-subsystem limit: a bucket's wave is one subsystem's collectors (issue 18).
        assert not [limit for limit in limits if limit["key"] == "b2cal/subsystem"]
        assert instance.run_coordinator.dequeue_interval_seconds == 1  # each dependency wave waits for one dequeue
        assert instance.get_settings("sensors") == {"use_threads": True, "num_workers": 4}
        assert {limit["value"] for limit in limits if limit["key"] == "b2cal/step"} == {"collect", "calibrate", "validation_report"}
        assert config.pool_config.default_pool_limit == 2
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    finally:
        instance.dispose()
    assets = build_calibration_definitions().assets
    pools = {a.key.to_user_string(): a.op.pool for a in assets}
    calibration_pools = {key: pool for key, pool in pools.items() if not key.endswith("_collector")}
    assert calibration_pools and set(calibration_pools.values()) == {"conditions_db"}


def test_module_exposes_exactly_one_definitions_object():
    """`dagster-webserver -m b2cal_assets.definitions` needs a single Definitions at top level."""
    import b2cal_assets.definitions as module

    found = [name for name, value in vars(module).items() if isinstance(value, Definitions)]
    assert found == ["defs"]
