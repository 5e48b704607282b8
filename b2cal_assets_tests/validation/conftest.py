"""Session-scoped calibrated buckets with and without generator faults, on a real Dagster
instance, driven through the real sensors as the daemon would.

Three data sets keep the event counts small (the first two on SQLite, the third on PostgreSQL):

* ``full``: all four calibrations, buckets of 3 runs: b0001 clean, b0002 ``dead-crystals``.
  ECLCrystalEnergy needs ~40 Bhabha hits per crystal with its production thresholds (over 600k
  events per bucket); the test lowers ``min_hits_per_crystal`` to 5 and allows 3% low crystals,
  and CDCTimeZero's ``min_hits_per_wire`` to 100 (test-only expert_config overrides): ~165k
  events per bucket.
* ``beam``: BeamSpot and CDCTimeZero, buckets of 3 runs: b0001 clean, b0002 ``low-statistics``
  (run 5), b0003 ``hot-wires`` (runs 7-9), b0004 ``beam-spot-jump`` (run 11, inside the bucket).
  25k events per run: the low-statistics run keeps 3% (225 dimuon pairs), below BeamSpot's
  min_events (1500, set by the 0.5 um precision limit), so CAF merges it with the next run.
* ``postgres``: as production runs, the Dagster storage (dagster-postgres) and the platform
  tables (run registry, buckets, conditions database) in one fresh PostgreSQL database, dropped
  at teardown. BeamSpot and CDCTimeZero, 6 runs of 25k events (``beam``'s seed), buckets of 3
  runs: b0001 clean, b0002 ``beam-spot-jump`` (run 5, inside the bucket). Half of ``beam``'s runs.

Tests that hold for several data sets take the fixture's name as a parameter
(:func:`deployments`), the PostgreSQL one marked ``postgres``.

Each data set's buckets are promoted in order by a reviewer (tags ``b2cal/user``) once, and the
outcomes recorded, before any test reads them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, Definitions, instance_for_test

from b2cal_assets.calibration.assets import build_calibration_assets
from b2cal_assets.calibration.bucket_store import BucketStore
from b2cal_assets.calibration.plugins import Calibration, discover_calibrations
from b2cal_assets.calibration.sensors import BUCKET_SENSOR_NAME, build_bucket_scheduler_sensor
from b2cal_assets.conditions.store import ConditionsStore
from b2cal_assets.database import dispose_engine, platform_database
from b2cal_assets.orchestration import CursorFile, run_sensor_tick
from b2cal_assets.resources import BucketPolicyResource, CalibrationStorageResource, IncomingDataResource, PlatformDatabaseResource
from b2cal_assets.runs.definitions import runs_defs
from b2cal_assets.runs.generator import generate
from b2cal_assets.runs.sensors import NEW_RUN_SENSOR_NAME
from b2cal_assets.validation.assets import PROMOTION_KEY
from b2cal_assets.validation.definitions import build_validation_definitions
from b2cal_assets.validation.resources import ValidationResource
from b2cal_assets.validation.signoff import ROLES_TAG, USER_TAG
from b2cal_assets_tests.conftest import new_postgres_database

REVIEWER_TAGS = {USER_TAG: "/DC=org/DC=belle2/CN=Alice Reviewer", ROLES_TAG: "calibration_reviewer,belle"}


def test_calibrations(names: tuple[str, ...]) -> dict[str, Calibration]:
    calibrations = {name: c for name, c in discover_calibrations().items() if name in names}
    # Test-only thresholds: enough for the flags and fits the faults need, with a fraction of the events.
    # CDCTimeZero allows 3% low wires (the low-statistics bucket has ~1%).
    overrides = {
        "ECLCrystalEnergy": {"min_hits_per_crystal": 5, "max_fraction_low_crystals": 0.03},
        "CDCTimeZero": {"min_hits_per_wire": 100, "max_fraction_low_wires": 0.03},
    }
    for name, override in overrides.items():
        if name in calibrations:
            c = calibrations[name]
            config = {**c.settings.expert_config, **override}
            calibrations[name] = dataclasses.replace(c, settings=dataclasses.replace(c.settings, expert_config=config))
    return calibrations


def _optional_resources() -> dict:
    """Resources the calibration assets gained meanwhile (run-time expert_config), when present."""
    try:
        from b2cal_assets.resources import ExpertConfigOverridesResource
    except ImportError:
        return {}
    return {"expert_config_overrides": ExpertConfigOverridesResource(expert_config_json="{}")}


def build_test_definitions(root: Path, url: str, calibrations: dict[str, Calibration], validation: ValidationResource, max_runs: int) -> Definitions:
    return Definitions.merge(
        runs_defs,
        Definitions(assets=build_calibration_assets(calibrations), sensors=[build_bucket_scheduler_sensor(calibrations)]),
        build_validation_definitions(calibrations),
        Definitions(
            resources={
                "incoming": IncomingDataResource(root=str(root / "incoming")),
                "platform_db": PlatformDatabaseResource(url=url),
                "calibration_storage": CalibrationStorageResource(work_dir=str(root / "work"), payload_dir=str(root / "payloads")),
                "bucket_policy": BucketPolicyResource(max_runs=max_runs, max_luminosity_pb=None, max_age_hours=None),
                "validation": validation,
                **_optional_resources(),
            }
        ),
    )


@dataclass
class Deployment:
    root: Path
    url: str
    instance: DagsterInstance
    calibrations: dict[str, Calibration]
    validation: ValidationResource
    max_runs: int
    promotions: dict[str, object] = field(default_factory=dict)  # bucket -> ExecuteInProcessResult

    def defs(self, validation: ValidationResource | None = None) -> Definitions:
        return build_test_definitions(self.root, self.url, self.calibrations, validation or self.validation, self.max_runs)

    @property
    def conditions(self) -> ConditionsStore:
        return platform_database(self.url).conditions(self.root / "payloads")

    @property
    def buckets(self) -> BucketStore:
        return platform_database(self.url).buckets()

    def materialise(self, keys: list[AssetKey], bucket: str, tags: dict[str, str] | None = None, validation: ValidationResource | None = None):  # type: ignore[no-untyped-def]
        job = self.defs(validation).resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            instance=self.instance, partition_key=bucket, asset_selection=keys, tags=tags or {}, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )

    def promote(self, bucket: str, tags: dict[str, str] | None = None, validation: ValidationResource | None = None):  # type: ignore[no-untyped-def]
        return self.materialise([PROMOTION_KEY], bucket, tags, validation)


def _deploy(  # type: ignore[no-untyped-def]
    tmp_path_factory, name: str, calibrations: tuple[str, ...], runs: int, events: int, faults: list[str], seed: int, database: str = "sqlite"
) -> Iterator[Deployment]:
    """``database`` "sqlite": SQLite instance and platform database; "postgres": both in one fresh
    PostgreSQL database (dagster-postgres), dropped at teardown."""
    root = tmp_path_factory.mktemp(name)
    generate(root / "incoming", runs=runs, events_per_run=events, events_per_file=25_000, seed=seed, faults=faults)
    home = root / "dagster_home"
    home.mkdir()
    validation = ValidationResource(reports_dir=str(root / "reports"), running_tag="prompt_running", webhook_url="", demo_mode=False, approver_roles=["calibration_reviewer"])
    with contextlib.ExitStack() as stack:
        if database == "postgres":
            url = stack.enter_context(new_postgres_database())
            overrides = {"storage": {"postgres": {"postgres_url": url}}}
        else:
            url = f"sqlite:///{root / 'b2cal.sqlite'}"
            overrides = {}
        # Exits in reverse: the instance closes, then the engine is disposed (and the database dropped).
        stack.callback(dispose_engine, url)
        instance = stack.enter_context(instance_for_test(overrides=overrides, temp_dir=str(home)))
        deployment = Deployment(root, url, instance, test_calibrations(calibrations), validation, max_runs=3)
        defs = deployment.defs()
        cursors = CursorFile(root / "cursors.json")
        for _ in range(3):
            if not run_sensor_tick(defs, instance, NEW_RUN_SENSOR_NAME, cursors, log_level="ERROR").requested:
                break
        for _ in range(40):
            if not run_sensor_tick(defs, instance, BUCKET_SENSOR_NAME, cursors, log_level="ERROR").launched:
                break
        # The reviewer signs off every bucket in order: only those whose checks all passed go in.
        for bucket in sorted(b.key for b in deployment.buckets.buckets()):
            deployment.promotions[bucket] = deployment.promote(bucket, REVIEWER_TAGS)
        yield deployment


@pytest.fixture(scope="session")
def full_deployment(tmp_path_factory) -> Iterator[Deployment]:  # type: ignore[no-untyped-def]
    yield from _deploy(
        tmp_path_factory, "full", ("BeamSpot", "CollisionEnergy", "ECLCrystalEnergy", "CDCTimeZero"), runs=6, events=55_000, faults=["dead-crystals:4-6"], seed=3
    )


@pytest.fixture(scope="session")
def beam_deployment(tmp_path_factory) -> Iterator[Deployment]:  # type: ignore[no-untyped-def]
    yield from _deploy(
        tmp_path_factory, "beam", ("BeamSpot", "CDCTimeZero"), runs=12, events=25_000,
        faults=["low-statistics:5", "hot-wires:7-9", "beam-spot-jump:11"], seed=5,
    )


@pytest.fixture(scope="session")
def postgres_deployment(tmp_path_factory) -> Iterator[Deployment]:  # type: ignore[no-untyped-def]
    yield from _deploy(
        tmp_path_factory, "postgres", ("BeamSpot", "CDCTimeZero"), runs=6, events=25_000, faults=["beam-spot-jump:5"], seed=5, database="postgres"
    )


def deployments(*names: str) -> list:
    """Parameters naming deployment fixtures (``beam`` for ``beam_deployment``); the PostgreSQL one is
    marked ``postgres``. The test takes ``request`` and calls ``request.getfixturevalue(name)``."""
    return [pytest.param(f"{name}_deployment", id=name, marks=[pytest.mark.postgres] if name == "postgres" else []) for name in names]
