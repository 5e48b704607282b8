"""A review world: two calibrated buckets (all four calibrations) on a real Dagster instance,
their reports written, a real dagster-webserver over that instance (runs start at once), the
accounts of a viewer, a reviewer and an admin in the platform database, and the proxy in front
serving the review pages under ``/b2cal/`` with real TLS and client certificates.

Data as the validation tests' ``full`` set: 6 runs of experiment 26 with 55k events, buckets of
3 runs; b0001 clean (awaits sign-off), b0002 with dead crystals (ECL checks fail). Both staging
tags are frozen (TESTING) as the validation sensor does. Nobody signs off here: the browser tests do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dagster import instance_for_test

from b2cal_assets.accounts.sync import import_registry_yaml
from b2cal_assets.auth.pki import TestPKI, build_test_pki
from b2cal_assets.calibration.sensors import BUCKET_SENSOR_NAME
from b2cal_assets.conditions.staging import staging_tag_name
from b2cal_assets.database import dispose_engine
from b2cal_assets.orchestration import CursorFile, run_sensor_tick
from b2cal_assets.proxy.config import ProxyConfig
from b2cal_assets.runs.generator import generate
from b2cal_assets.runs.sensors import NEW_RUN_SENSOR_NAME
from b2cal_assets.validation.assets import report_key
from b2cal_assets.validation.resources import ValidationResource
from b2cal_assets.validation.signoff import freeze_staging_tag
from b2cal_assets_tests.proxy.harness import RUNS_START_AT_ONCE, RunningProxy, Webserver, start_webserver
from b2cal_assets_tests.validation.conftest import Deployment, test_calibrations

PERSONAS = ("viewer", "reviewer", "admin")
CALIBRATIONS = ("BeamSpot", "CollisionEnergy", "ECLCrystalEnergy", "CDCTimeZero")
CLEAN, FAULTY = "e0026.b0001", "e0026.b0002"


def registry(pki: TestPKI) -> dict:
    """Browsers present the plain user certificate: roles come from these DIRAC groups."""
    users = {f"sub-{n}": {"PreferedUsername": n, "DNs": [pki.users[n].subject], "Email": f"{n}@belle2.org"} for n in PERSONAS}
    groups = {
        "belle": {"Users": list(users), "Properties": ["NormalUser"], "VOMSRole": "/belle"},
        "belle_calib_reviewer": {"Users": ["sub-reviewer"], "Properties": ["NormalUser"], "VOMSRole": "/belle/calibration/Role=reviewer"},
        "belle_admin": {"Users": ["sub-admin"], "Properties": ["NormalUser"], "VOMSRole": "/belle/Role=lcgadmin"},
    }
    return {"belle": {"IdP": {"URL": "https://idp.belle2.org", "ClientID": "b2cal"}, "DefaultGroup": "belle", "Users": users, "Groups": groups}}


@dataclass
class ReviewWorld:
    deployment: Deployment
    pki: TestPKI
    webserver: Webserver
    proxy: RunningProxy
    root: Path

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.proxy.port}"

    def cert(self, persona: str) -> tuple[Path, Path]:
        user = self.pki.users[persona]
        return user.cert_path, user.key_path


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """The proxy runs in this process: the review pages read B2CAL_REPORTS_DIR etc. from here."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def environment_of(root: Path) -> dict[str, str]:
    """The deployment's settings (platform database, files, reports) for the webserver, its runs and the proxy."""
    return {
        "B2CAL_DATABASE_URL": f"sqlite:///{root / 'b2cal.sqlite'}", "B2CAL_INCOMING": str(root / "incoming"),
        "B2CAL_WORK_DIR": str(root / "work"), "B2CAL_PAYLOAD_DIR": str(root / "payloads"), "B2CAL_REPORTS_DIR": str(root / "reports"),
        "B2CAL_RUNNING_TAG": "prompt_running", "B2CAL_HOME": str(root / "state"),
    }


def build_review_data(root: Path) -> None:
    """Runs, calibrations of both buckets and their reports, under ``root`` (Dagster home: root/dagster_home).

    The instance's dagster.yaml (written by instance_for_test) has the run coordinator that
    starts launched runs at once: the webserver over it needs no daemon."""
    generate(root / "incoming", runs=6, events_per_run=55_000, events_per_file=25_000, seed=3, faults=["dead-crystals:4-6"])
    home = root / "dagster_home"
    home.mkdir()
    url = environment_of(root)["B2CAL_DATABASE_URL"]
    validation = ValidationResource(reports_dir=str(root / "reports"), running_tag="prompt_running", webhook_url="", demo_mode=False,
                                    approver_roles=[])
    with instance_for_test(overrides=RUNS_START_AT_ONCE, temp_dir=str(home)) as instance:
        deployment = Deployment(root, url, instance, test_calibrations(CALIBRATIONS), validation, max_runs=3)
        defs = deployment.defs()
        cursors = CursorFile(root / "cursors.json")
        for _ in range(3):
            if not run_sensor_tick(defs, instance, NEW_RUN_SENSOR_NAME, cursors, log_level="ERROR").requested:
                break
        for _ in range(40):
            if not run_sensor_tick(defs, instance, BUCKET_SENSOR_NAME, cursors, log_level="ERROR").launched:
                break
        for bucket in (CLEAN, FAULTY):
            # As the validation_reports sensor would; a calibration without a result has no report
            # (its report step fails by design), which the tests then show.
            deployment.materialise([report_key(c) for c in deployment.calibrations.values()], bucket)
        # As the validation_reports sensor then does: a closed bucket with a result of every
        # calibration for its final version is frozen, TESTING, awaiting the reviewer. The clean
        # bucket must get there, or no sign-off test can run: fail here, naming what is missing.
        buckets, conditions = deployment.buckets, deployment.conditions
        for bucket in (CLEAN, FAULTY):
            facts = buckets.bucket(bucket)
            results = {name: buckets.latest_calibration(bucket, name) for name in deployment.calibrations}
            missing = sorted(n for n, r in results.items() if r is None or r["bucket_version"] != str(facts.version))
            frozen = facts.closed and not missing and freeze_staging_tag(
                conditions, staging_tag_name(bucket), reason=f"bucket {bucket} closed and every calibration done (version {facts.version}): frozen for validation")
            assert frozen or bucket != CLEAN, f"clean bucket {bucket} not frozen for sign-off: closed={facts.closed}, no final result of {missing}"


@contextlib.contextmanager
def serve_review_world(root: Path) -> Iterator[ReviewWorld]:
    """A test PKI with the personas' accounts, dagster-webserver and the proxy over the data of
    :func:`build_review_data`; stopped on exit."""
    env = environment_of(root)
    url = env["B2CAL_DATABASE_URL"]
    home = root / "dagster_home"
    with contextlib.ExitStack() as stack:
        stack.callback(dispose_engine, url)
        instance = stack.enter_context(instance_for_test(overrides=RUNS_START_AT_ONCE, temp_dir=str(home)))
        deployment = Deployment(root, url, instance, test_calibrations(CALIBRATIONS), ValidationResource(
            reports_dir=env["B2CAL_REPORTS_DIR"], running_tag="prompt_running", webhook_url="", demo_mode=False, approver_roles=[]), max_runs=3)
        pki = build_test_pki(root / f"pki-{id(stack)}", users=PERSONAS)
        (root / "registry.yaml").write_text(yaml.safe_dump(registry(pki)))
        import_registry_yaml(root / "registry.yaml", "belle", accounts_db=url, force=True)
        webserver = stack.enter_context(start_webserver(root / f"web-{os.getpid()}-{id(stack)}", env={**env, "DAGSTER_HOME": str(home)}))
        config = ProxyConfig(listen="127.0.0.1:0", upstream=f"http://127.0.0.1:{webserver.port}", cert=pki.host.cert_path,
                             key=pki.host.key_path, ca_dir=pki.ca_dir, vomsdir=pki.vomsdir, accounts_db=url)
        config.validate()
        with _environment(env):  # as the proxy starts; each test then sets it again (world_environment)
            proxy = RunningProxy(config)
        stack.callback(proxy.stop)
        yield ReviewWorld(deployment, pki, webserver, proxy, root)


@contextlib.contextmanager
def world_environment(world: ReviewWorld) -> Iterator[ReviewWorld]:
    """The world's settings in this process for one test only: the proxy in this process reads
    them, and a session-long change would leak into every later test on the same worker."""
    with _environment(environment_of(world.root)):
        yield world


@contextlib.contextmanager
def new_review_world(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[ReviewWorld]:
    """A review world of its own, built and served under a new temporary directory ``name``."""
    if shutil.which("voms-proxy-fake") is None:  # pragma: no cover - CI installs voms-clients
        pytest.skip("voms-proxy-fake (voms-clients) is needed for the test PKI")
    root = tmp_path_factory.mktemp(name)
    build_review_data(root)
    with serve_review_world(root) as world:
        yield world


@pytest.fixture(scope="session")
def review_world_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewWorld]:
    with new_review_world(tmp_path_factory, "review") as world:
        yield world


@pytest.fixture
def review_world(review_world_session: ReviewWorld) -> Iterator[ReviewWorld]:
    """The session's review world, its settings in the environment for this test."""
    with world_environment(review_world_session) as world:
        yield world


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[Path]:
    """Screenshots of a test: its tmp dir, copied to $B2CAL_ARTEFACTS_DIR (and $B2CAL_KEEP_SCREENSHOTS) when set."""
    directory = tmp_path / "screenshots"
    directory.mkdir()
    yield directory
    for variable in ("B2CAL_ARTEFACTS_DIR", "B2CAL_KEEP_SCREENSHOTS"):
        target = os.environ.get(variable)
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            for shot in directory.glob("*.png"):
                shutil.copy(shot, Path(target) / shot.name)
