"""`b2cal demo`: the platform end to end on the embedded SQLite instance.

Stages run in order on one ``DemoContext``; later capabilities add stages to ``STAGES``
(calibration, validation, promotion). Each stage returns rows for the final summary.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from b2cal_assets import config

DEMO_MARKER = ".b2cal-demo"


@dataclass
class DemoContext:
    workdir: Path
    runs: int
    events_per_run: int
    seed: int
    faults: tuple[str, ...]
    summary: list[tuple[str, str]] = field(default_factory=list)

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


def stage_generate(ctx: DemoContext) -> None:
    from tqdm import tqdm

    from b2cal_assets.runs.generator import generate

    started = time.perf_counter()
    with tqdm(total=ctx.runs * ctx.events_per_run, unit="ev", unit_scale=True, desc="generate", disable=None) as bar:
        summary = generate(
            ctx.incoming, runs=ctx.runs, events_per_run=ctx.events_per_run, seed=ctx.seed, faults=ctx.faults, progress=bar.update
        )
    ctx.summary.append(("generated", f"{len(summary.runs)} runs, {summary.files} files, {summary.events} events in {time.perf_counter() - started:.1f} s"))


def stage_ingest(ctx: DemoContext) -> None:
    from dagster import DagsterInstance

    from b2cal_assets.definitions import build_definitions
    from b2cal_assets.orchestration import CursorFile, run_sensor_tick
    from b2cal_assets.runs.registry import RunRegistry
    from b2cal_assets.runs.sensors import NEW_RUN_SENSOR_NAME

    defs = build_definitions(incoming_root=str(ctx.incoming), database_url=ctx.database_url)
    instance = DagsterInstance.from_config(str(ctx.dagster_home))
    cursors = CursorFile(ctx.workdir / "sensor_cursors.json")
    ticks = launched = duplicates = 0
    with click.progressbar(length=ctx.runs, label="ingest  ", show_pos=True) as bar:
        while True:
            outcome = run_sensor_tick(
                defs, instance, NEW_RUN_SENSOR_NAME, cursors, on_run_done=lambda *_: bar.update(1), log_level="CRITICAL"
            )
            ticks += 1
            launched += len(outcome.launched)
            duplicates += outcome.duplicates
            if not outcome.requested:
                break
    registry = RunRegistry(ctx.database_url)
    runs = registry.query()
    quarantined = [run for run in runs if run.quarantined]
    ctx.summary.append(("sensor", f"{ticks} ticks, {launched} ingest runs launched, {duplicates} duplicate requests skipped"))
    ctx.summary.append(("runs seen", str(len(runs))))
    ctx.summary.append(("ingested", str(len(runs) - len(quarantined))))
    ctx.summary.append(("quarantined", str(len(quarantined))))
    for run in quarantined:
        ctx.summary.append((f"  {run.key}", run.reason))


STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("generate", stage_generate),
    ("ingest", stage_ingest),
]


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Demo directory (default: <state dir>/demo); recreated on each run.")
@click.option("--runs", type=click.IntRange(1, 1000), default=6, show_default=True)
@click.option("--events-per-run", type=click.IntRange(10), default=6_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--fault", "faults", multiple=True, default=("corrupt-file",), show_default=True, help="Generator fault(s) to inject; see `b2cal generate --help`.")
@click.option("--no-faults", is_flag=True, help="Inject no fault.")
def demo(workdir: Path | None, runs: int, events_per_run: int, seed: int, faults: tuple[str, ...], no_faults: bool) -> None:
    """Generate a small data set and run the platform on it, on an embedded SQLite instance."""
    workdir = (workdir or config.state_dir() / "demo").resolve()
    prepare_workdir(workdir)
    ctx = DemoContext(workdir, runs, events_per_run, seed, () if no_faults else faults)
    click.echo(f"b2cal demo in {workdir}")
    for name, stage in STAGES:
        stage(ctx)
    width = max(len(label) for label, _ in ctx.summary)
    click.echo("\nsummary")
    for label, value in ctx.summary:
        click.echo(f"  {label:<{width}}  {value}")
    click.echo(
        "\nBrowse it in the Dagster UI:\n"
        f"  DAGSTER_HOME={ctx.dagster_home} B2CAL_INCOMING={ctx.incoming} B2CAL_DATABASE_URL={ctx.database_url} \\\n"
        "  dagster-webserver -h 127.0.0.1 -p 3000 -m b2cal_assets.definitions"
    )
