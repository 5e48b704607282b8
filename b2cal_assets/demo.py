"""`b2cal demo`: the platform end to end on the embedded SQLite instance.

Stages run in order on one ``DemoContext``; later capabilities add stages to ``STAGES``
(calibration, validation, promotion). Each stage returns rows for the final summary.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from b2cal_assets import config

DEMO_MARKER = ".b2cal-demo"
# The demo's data set is small (seconds to generate); the ECL gain calibration's default of 20
# Bhabha hits per crystal would need about ten times more. The demo lowers it through the same
# run-time expert_config an expert would use (B2CAL_EXPERT_CONFIG), and says so in its summary.
DEMO_EXPERT_CONFIG = {
    "ECLCrystalEnergy": {"min_hits_per_crystal": 8, "max_fraction_low_crystals": 0.03},
}


@dataclass
class DemoContext:
    workdir: Path
    runs: int
    events_per_run: int
    seed: int
    faults: tuple[str, ...]
    summary: list[tuple[str, str]] = field(default_factory=list)
    # Runs per bucket (None: one bucket for every run); `b2cal serve --demo` splits the runs in two.
    bucket_max_runs: int | None = None

    @property
    def incoming(self) -> Path:
        return self.workdir / "incoming"

    @property
    def dagster_home(self) -> Path:
        return self.workdir / "dagster_home"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.workdir / 'b2cal.sqlite'}"


def prepare_workdir(workdir: Path) -> None:
    """Start from an empty work directory; only ever delete one the demo made."""
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / DEMO_MARKER).exists():
            raise click.UsageError(f"{workdir} is not empty and was not made by `b2cal demo`; choose another --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / DEMO_MARKER).write_text("made by b2cal demo; deleted by the next demo run\n")
    home = workdir / "dagster_home"
    home.mkdir()
    # The embedded instance: SQLite storages under this directory, no telemetry.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


@contextlib.contextmanager
def _bar(total: int, label: str, unit: str) -> Iterator[Any]:
    """A tqdm bar counting real units of work, with log lines printed above it, not glued onto it.

    Registered loggers are redirected with tqdm's logging_redirect_tqdm; Dagster's run and tick
    loggers are made per run (unregistered, writing to whatever sys.stderr is when they emit),
    so stderr itself goes through tqdm.write while the bar draws on the real stream.
    """
    from tqdm import tqdm
    from tqdm.contrib import DummyTqdmFile
    from tqdm.contrib.logging import logging_redirect_tqdm

    terminal = sys.stderr
    loggers = [logging.getLogger(), logging.getLogger("dagster")]
    with logging_redirect_tqdm(loggers=loggers), contextlib.redirect_stderr(DummyTqdmFile(terminal)), tqdm(
        total=total, desc=f"{label:<9}", unit=unit, disable=None, file=terminal
    ) as bar:
        yield bar


def describe_pulls(pulls: dict[str, float]) -> str:
    """The pull summary; a mean error and a width need two pulls or more, so n=1 says so instead of nan."""
    n = int(pulls["n"])
    if n == 0:
        return "none (n=0)"
    if n == 1:
        return f"{pulls['fraction_within_3'] * 100:5.1f}% |pull|<3, pull {pulls['mean']:+.2f} (n=1: no width)"
    return (
        f"{pulls['fraction_within_3'] * 100:5.1f}% |pull|<3, mean {pulls['mean']:+.2f}+-{pulls['mean_error']:.2f}, "
        f"width {pulls['width']:.2f}+-{pulls['width_error']:.2f} (n={n})"
    )


def stage_generate(ctx: DemoContext) -> None:
    from b2cal_assets.runs.generator import generate

    started = time.perf_counter()
    with _bar(ctx.runs, "generate", "run") as bar:
        summary = generate(
            ctx.incoming, runs=ctx.runs, events_per_run=ctx.events_per_run, seed=ctx.seed, faults=ctx.faults,
            progress=lambda _events: bar.update(1),
        )
    ctx.summary.append(("generated", f"{len(summary.runs)} runs, {summary.files} files, {summary.events} events in {time.perf_counter() - started:.1f} s"))


def _definitions(ctx: DemoContext):  # type: ignore[no-untyped-def]
    from b2cal_assets.definitions import build_definitions
    from b2cal_assets.resources import BucketPolicyResource

    # The demo closes its bucket itself once every run is in: no policy limit applies.
    policy = BucketPolicyResource(max_runs=ctx.bucket_max_runs, max_luminosity_pb=None, max_age_hours=24 * 365)
    return build_definitions(
        expert_config=DEMO_EXPERT_CONFIG,
        incoming_root=str(ctx.incoming),
        database_url=ctx.database_url,
        work_dir=str(ctx.workdir / "work"),
        payload_dir=str(ctx.workdir / "payloads"),
        bucket_policy=policy,
    )


def _instance(ctx: DemoContext):  # type: ignore[no-untyped-def]
    from dagster import DagsterInstance

    return DagsterInstance.from_config(str(ctx.dagster_home))


def stage_ingest(ctx: DemoContext) -> None:
    from b2cal_assets.database import platform_database
    from b2cal_assets.orchestration import CursorFile, run_sensor_tick
    from b2cal_assets.runs.sensors import NEW_RUN_SENSOR_NAME

    defs = _definitions(ctx)
    instance = _instance(ctx)
    cursors = CursorFile(ctx.workdir / "sensor_cursors.json")
    ticks = launched = duplicates = 0
    with _bar(ctx.runs, "ingest", "run") as bar:
        while True:
            outcome = run_sensor_tick(
                defs, instance, NEW_RUN_SENSOR_NAME, cursors, on_run_done=lambda *_: bar.update(1), log_level="CRITICAL"
            )
            ticks += 1
            launched += len(outcome.launched)
            duplicates += outcome.duplicates
            if not outcome.requested:
                break
    registry = platform_database(ctx.database_url).runs()
    runs = registry.query()
    quarantined = [run for run in runs if run.quarantined]
    ctx.summary.append(("sensor", f"{ticks} ticks, {launched} ingest runs launched, {duplicates} duplicate requests skipped"))
    ctx.summary.append(("runs seen", str(len(runs))))
    ctx.summary.append(("ingested", str(len(runs) - len(quarantined))))
    ctx.summary.append(("quarantined", str(len(quarantined))))
    for run in quarantined:
        ctx.summary.append((f"  {run.key}", run.reason))


def stage_calibrate(ctx: DemoContext) -> None:
    """Assign runs to a bucket, close it, and let the scheduler run every calibration in order."""
    from b2cal_assets.calibration.sensors import BUCKET_SENSOR_NAME
    from b2cal_assets.database import platform_database
    from b2cal_assets.orchestration import CursorFile, run_sensor_tick

    defs = _definitions(ctx)
    instance = _instance(ctx)
    cursors = CursorFile(ctx.workdir / "sensor_cursors.json")
    store = platform_database(ctx.database_url).buckets()
    launched: list = []
    failed: list = []
    ticks = 0
    # The amount of work depends on outcomes (a failed calibration's dependants never run), so the
    # bar's total is what the scheduler has requested so far: each tick adds its runs before they run.
    with _bar(0, "calibrate", "run") as bar:

        def requested(count: int) -> None:
            bar.total += count
            bar.refresh()

        def tick() -> Any:
            return run_sensor_tick(defs, instance, BUCKET_SENSOR_NAME, cursors, on_run_done=lambda *_: bar.update(1),
                                   log_level="CRITICAL", on_requested=requested)

        first = tick()
        launched += first.launched
        failed += first.failed
        ticks = 1
        for bucket in store.buckets():
            if not bucket.closed:
                store.close(bucket.key, "closed by b2cal demo: every demo run is in")
        while ticks < 50:
            outcome = tick()
            ticks += 1
            launched += outcome.launched
            failed += outcome.failed
            if not outcome.launched:
                break
    ctx.summary.append(("expert_config", f"run-time overrides {json.dumps(DEMO_EXPERT_CONFIG)} (small demo data set)"))
    ctx.summary.append(("scheduler", f"{ticks} ticks, {len(launched)} collector/calibration runs, {len(failed)} failed"))
    for bucket in store.buckets():
        ctx.summary.append((f"bucket {bucket.key}", f"runs {bucket.first_run}-{bucket.last_run} ({bucket.n_runs} runs, {bucket.luminosity_pb:.0f} pb^-1), {bucket.close_reason}"))


def stage_export_and_pulls(ctx: DemoContext) -> None:
    """Export each staging tag as a basf2 local database; print payloads, IoVs and truth pulls."""
    from b2cal_assets.calibration.plugins import discover_calibrations
    from b2cal_assets.conditions.export import export_local_database
    from b2cal_assets.conditions.iov import ExpRun
    from b2cal_assets.conditions.staging import staging_tag_name
    from b2cal_assets.database import platform_database

    store = platform_database(ctx.database_url).buckets()
    conditions = platform_database(ctx.database_url).conditions(ctx.workdir / "payloads")
    calibrations = discover_calibrations()
    for bucket in store.buckets():
        tag = staging_tag_name(bucket.key)
        if tag not in {t.name for t in conditions.tags()}:
            ctx.summary.append((f"  {bucket.key}", "no payloads (every calibration failed)"))
            continue
        out = ctx.workdir / "localdb" / bucket.key
        export_local_database(conditions, tag, out)
        ctx.summary.append(("local database", f"{out} (tag {tag})"))
        for name, calibration in calibrations.items():
            result = store.latest_calibration(bucket.key, name)
            if result is None:
                ctx.summary.append((f"  {name}", "FAILED: no payload (see the run in the Dagster UI)"))
                continue
            for payload in result["payloads"]:
                constants = conditions.read_payload(payload["name"], payload["revision"])
                runs = [ExpRun.parse(r) for r in payload["runs"]]
                pulls = calibration.summarise_against_truth(constants, ctx.incoming, runs)
                ctx.summary.append(
                    (
                        f"  {payload['name']} rev {payload['revision']}",
                        f"IoV {payload['iov']:<14} {len(constants.value):>5} constants; pulls: {describe_pulls(pulls)}",
                    )
                )


def _validation_env(ctx: DemoContext) -> None:
    """The demo's validation resource: reports in the work directory, demo sign-off allowed."""
    import os

    os.environ["B2CAL_REPORTS_DIR"] = str(ctx.workdir / "reports")
    os.environ["B2CAL_DEMO_MODE"] = "1"  # the demo has no authenticating proxy: its sign-off is marked DEMO


def stage_validate(ctx: DemoContext) -> None:
    """Run the report sensor (reports, staging tag frozen) and list every check per calibration."""
    from b2cal_assets.calibration.plugins import discover_calibrations
    from b2cal_assets.database import platform_database
    from b2cal_assets.orchestration import CursorFile, run_sensor_tick
    from b2cal_assets.validation.inputs import evaluate_bucket
    from b2cal_assets.validation.resources import ValidationResource
    from b2cal_assets.validation.sensors import REPORT_SENSOR_NAME

    _validation_env(ctx)
    defs = _definitions(ctx)
    cursors = CursorFile(ctx.workdir / "sensor_cursors.json")
    outcome = run_sensor_tick(defs, _instance(ctx), REPORT_SENSOR_NAME, cursors, log_level="CRITICAL")
    ctx.summary.append(("validation reports", f"{len(outcome.launched)} report runs, {len(outcome.failed)} failed"))
    validation = ValidationResource()
    conditions = platform_database(ctx.database_url).conditions(ctx.workdir / "payloads")
    store = platform_database(ctx.database_url).buckets()
    for bucket in store.buckets():
        for name, outcomes in evaluate_bucket(conditions, store, bucket.key, discover_calibrations(), validation.running_tag).items():
            failed = [o for o in outcomes if o.blocking and not o.passed]
            verdict = f"{sum(o.passed for o in outcomes if o.blocking)}/{sum(o.blocking for o in outcomes)} blocking checks passed"
            ctx.summary.append((f"  {bucket.key} {name}", verdict + (f"; FAILED: {', '.join(o.check for o in failed)}" if failed else "")))
            for o in failed:
                ctx.summary.append(("      ", o.summary[:160]))
            pdf = validation.report_dir(bucket.key, name) / f"{name}_{bucket.key}_validation.pdf"
            if pdf.exists():
                ctx.summary.append(("      report", str(pdf)))


def stage_promote(ctx: DemoContext) -> None:
    """A DEMO sign-off of every bucket (no authenticated user), the RUNNING tag and its export."""
    from b2cal_assets.conditions.errors import UnknownTagError
    from b2cal_assets.conditions.export import export_local_database
    from b2cal_assets.database import platform_database
    from b2cal_assets.validation.assets import PROMOTION_KEY
    from b2cal_assets.validation.resources import ValidationResource

    _validation_env(ctx)
    defs = _definitions(ctx)
    job = defs.resolve_implicit_global_asset_job_def()
    running = ValidationResource().running_tag
    for bucket in platform_database(ctx.database_url).buckets().buckets():
        result = job.execute_in_process(
            instance=_instance(ctx), partition_key=bucket.key, asset_selection=[PROMOTION_KEY], raise_on_error=False,
            tags={"b2cal/demo": "true"}, run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
        if result.success:
            ctx.summary.append((f"sign-off {bucket.key}", "PROMOTED by a DEMO sign-off (demo mode: no authenticated reviewer)"))
        else:
            failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
            ctx.summary.append((f"sign-off {bucket.key}", "NOT PROMOTED: the bucket failed validation"))
            for line in failure.step_failure_data.error.message.splitlines()[1:]:
                if line.strip().startswith("- "):
                    ctx.summary.append(("      ", line.strip()[:160]))
    conditions = platform_database(ctx.database_url).conditions(ctx.workdir / "payloads")
    try:
        entries = conditions.tag_entries(running)
    except UnknownTagError:
        ctx.summary.append((f"running tag {running}", "not created: no bucket was promoted"))
        return
    ctx.summary.append((f"running tag {running}", f"{len(entries)} payload IoVs"))
    for entry in entries:
        ctx.summary.append((f"  {entry.name} rev {entry.revision}", str(entry.iov)))
    out = ctx.workdir / "localdb" / running
    export_local_database(conditions, running, out)
    ctx.summary.append(("running tag export", str(out)))


STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("generate", stage_generate),
    ("ingest", stage_ingest),
    ("calibrate", stage_calibrate),
    ("export", stage_export_and_pulls),
    ("validate", stage_validate),
    ("promote", stage_promote),
]


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Demo directory (default: <state dir>/demo); recreated on each run.")
@click.option("--runs", type=click.IntRange(1, 1000), default=6, show_default=True)
@click.option("--events-per-run", type=click.IntRange(10), default=50_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--fault", "faults", multiple=True, default=("corrupt-file",), show_default=True, help="Generator fault(s) to inject; see `b2cal generate --help`.")
@click.option("--no-faults", is_flag=True, help="Inject no fault.")
def demo(workdir: Path | None, runs: int, events_per_run: int, seed: int, faults: tuple[str, ...], no_faults: bool) -> None:
    """Generate a small data set and run the platform on it, on an embedded SQLite instance."""
    from b2cal_assets.runs.generator import GeneratorError, parse_fault

    faults = () if no_faults else faults
    try:  # refuse a bad fault before the work directory is touched
        for fault in faults:
            parse_fault(fault, 1, runs)
    except GeneratorError as error:
        raise click.BadParameter(str(error), param_hint="--fault") from None
    workdir = (workdir or config.state_dir() / "demo").resolve()
    prepare_workdir(workdir)
    ctx = DemoContext(workdir, runs, events_per_run, seed, faults)
    click.echo(f"b2cal demo in {workdir}")
    for _name, stage in STAGES:
        stage(ctx)
    width = max(len(label) for label, _ in ctx.summary)
    click.echo("\nsummary")
    for label, value in ctx.summary:
        click.echo(f"  {label:<{width}}  {value}")
    click.echo("\n" + closing_lines(ctx))


def _script(name: str) -> str:
    """How to call a console script of this installation from here (e.g. `.venv/bin/b2cal`)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def closing_lines(ctx: DemoContext) -> str:
    """How to point every other command, and the Dagster UI, at this demo.

    The demo's work directory has the layout of a state directory (b2cal.sqlite, incoming/,
    work/, payloads/, reports/), so B2CAL_HOME alone points every b2cal command at it.
    """
    exports = (
        f"export B2CAL_HOME={shlex.quote(str(ctx.workdir))} DAGSTER_HOME={shlex.quote(str(ctx.dagster_home))} "
        f"B2CAL_EXPERT_CONFIG={shlex.quote(json.dumps(getattr(ctx, 'expert_config', DEMO_EXPERT_CONFIG), separators=(',', ':')))}"
    )
    b2cal = _script("b2cal")
    return (
        "Point every other command at this demo (in this shell):\n"
        f"  {exports}\n"
        f"  {b2cal} runs list; {b2cal} conditions tags\n"
        "Browse it in the Dagster UI:\n"
        f"  {_script('dagster-webserver')} -h 127.0.0.1 -p 3000 -m b2cal_assets.definitions"
    )
