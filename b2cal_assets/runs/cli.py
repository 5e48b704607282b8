"""`b2cal generate` and `b2cal runs ...`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from b2cal_assets import config
from b2cal_assets.command_line import database_url_option, resolve_database_url


@click.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Incoming-data root to write into.")
@click.option("--exp", type=click.IntRange(0, 9999), default=26, show_default=True, help="Experiment number.")
@click.option("--first-run", type=click.IntRange(0, 99999), default=1, show_default=True, help="First run number (runs end at 99999).")
@click.option("--runs", "n_runs", type=click.IntRange(1, 99999), default=5, show_default=True, help="Number of consecutive runs.")
@click.option("--events-per-run", type=click.IntRange(3), default=20_000, show_default=True, help="Events per run, all streams (at least one per HLT skim).")
@click.option("--events-per-file", type=click.IntRange(1), default=4_000, show_default=True, help="At most this many events per file.")
@click.option("--seed", type=click.IntRange(0), default=1, show_default=True, help="Seed of the truth constants and the events.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="NAME[:RUN[-RUN]]",
    help="Inject a defect: corrupt-file, truncated-file, missing-file, low-statistics, dead-crystals, "
    "beam-spot-jump, hot-wires. Repeatable.",
)
def generate(out: Path, exp: int, first_run: int, n_runs: int, events_per_run: int, events_per_file: int, seed: int, faults: tuple[str, ...]) -> None:
    """Write synthetic Belle II runs: cDST ROOT files per stream, completion records, truth."""
    from tqdm import tqdm

    from b2cal_assets.runs.generator import GeneratorError, check_arguments, parse_fault
    from b2cal_assets.runs.generator import generate as run_generator

    # Every argument is checked before the first file is written: a refusal leaves nothing behind.
    try:
        check_arguments(exp=exp, first_run=first_run, runs=n_runs, events_per_run=events_per_run, events_per_file=events_per_file, seed=seed)
        for fault in faults:
            parse_fault(fault, first_run, n_runs)
    except GeneratorError as error:
        raise click.UsageError(str(error)) from None
    started = time.perf_counter()
    # One unit per run: the exact amount of work (faults such as low-statistics change the events).
    with tqdm(total=n_runs, unit="run", desc="generating", disable=None) as bar:
        summary = run_generator(
            out, exp=exp, first_run=first_run, runs=n_runs, events_per_run=events_per_run,
            events_per_file=events_per_file, seed=seed, faults=faults, progress=lambda _events: bar.update(1),
        )
    elapsed = time.perf_counter() - started
    click.echo(
        f"wrote {len(summary.runs)} runs ({summary.runs[0]} .. {summary.runs[-1]}), {summary.files} files, "
        f"{summary.events} events, {summary.bytes / 1e6:.1f} MB in {elapsed:.1f} s "
        f"({summary.events / elapsed * 60 / 1e6:.2f} M events/min); truth in {out / 'truth'}"
    )


@click.group()
def runs() -> None:
    """Query the run registry."""


@runs.command("list")
@database_url_option
@click.option("--exp", type=int, default=None)
@click.option("--first-run", type=int, default=None)
@click.option("--last-run", type=int, default=None)
@click.option("--data-tag", default=None)
@click.option("--quality", "qualities", multiple=True, help="Data quality tag(s) to keep.")
@click.option("--status", type=click.Choice(["ingested", "quarantined"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_runs(database_url, exp, first_run, last_run, data_tag, qualities, status, as_json) -> None:  # type: ignore[no-untyped-def]
    """List registered runs, with quarantine reasons."""
    from b2cal_assets.database import platform_database

    found = platform_database(resolve_database_url(database_url, must_exist=True)).runs().query(
        exp=exp, first_run=first_run, last_run=last_run, data_tag=data_tag, data_quality=qualities or None, status=status
    )
    if as_json:
        click.echo(json.dumps([{"run": str(r.key), "status": r.status, "reason": r.reason, "lumi_pb": r.integrated_luminosity_pb, "events": r.events_per_stream, "quality": r.data_quality, "tags": list(r.data_tags)} for r in found], indent=1))
        return
    click.echo(f"{'run':<14} {'status':<12} {'lumi/pb':>8} {'events':>9} {'quality':<12} reason")
    for r in found:
        click.echo(f"{r.key!s:<14} {r.status:<12} {r.integrated_luminosity_pb:>8.2f} {sum(r.events_per_stream.values()):>9} {r.data_quality:<12} {r.reason}")
    click.echo(f"{len(found)} run(s)")


@runs.command("reindex")
@click.option("--incoming", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Incoming-data root [default: B2CAL_INCOMING, else <state>/incoming].")
def reindex(incoming: Path | None) -> None:
    """Journal every completion record in the tree that the journal lacks (full scan, on demand)."""
    from b2cal_assets.runs.journal import reindex_tree

    root = incoming or config.incoming_root(create_state_dir=False)
    if not root.is_dir():
        raise click.UsageError(f"no incoming-data root at {root}; pass --incoming DIR or set B2CAL_INCOMING")
    added = reindex_tree(root)
    click.echo(f"journalled {len(added)} record(s) missing from the arrival journal of {root}")
