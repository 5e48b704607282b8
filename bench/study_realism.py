"""Pulls of every calibration against the generator's truth, per realism model.

One command: ``python bench/study_realism.py [--runs 6] [--events 20000] [--seeds 1]
[--realism realistic simple] [--only BeamSpot ...]``. For each realism model and seed, a bucket
is generated, every calibration runs in dependency order (CAF strategies, as production), and
the pull mean and width of each calibration's constants against the truth are printed, with
the payload IoVs. The figures quoted in the README and in the commit messages come from here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from b2cal_assets.calibration.framework import run_calibration, topological_order
from b2cal_assets.calibration.framework.contract import pull_summary
from b2cal_assets.calibration.plugins import discover_calibrations
from b2cal_assets.conditions.iov import ExpRun, IoV
from b2cal_assets.runs.generator import generate

# Thresholds for small study buckets (a real bucket has hundreds of Bhabha hits per crystal).
SMALL_BUCKET_CONFIG = {
    "ECLCrystalEnergy": {"min_hits_per_crystal": 5, "max_fraction_low_crystals": 0.06},
    "CDCTimeZero": {"min_hits_per_wire": 100},
}


def files_by_run(root: Path) -> dict[ExpRun, dict[str, list[Path]]]:
    files: dict[ExpRun, dict[str, list[Path]]] = {}
    for record in sorted(root.rglob("runinfo.*.json")):
        data = json.loads(record.read_text())
        streams: dict[str, list[Path]] = defaultdict(list)
        for entry in data["files"]:
            streams[entry["stream"]].append(root / entry["path"])
        files[ExpRun(data["exp"], data["run"])] = dict(streams)
    return files


def calibrate_bucket(root: Path, only: set[str] | None = None, config: dict | None = None):  # type: ignore[no-untyped-def]
    """Run the calibrations (dependency order) over the runs under ``root``; name -> outcome."""
    config = SMALL_BUCKET_CONFIG if config is None else config
    files = files_by_run(root)
    calibrations = discover_calibrations()
    needed = set(only or calibrations)
    while True:  # the calibrations asked for and everything they depend on
        more = {dep for name in needed for dep in calibrations[name].settings.depends_on_names} - needed
        if not more:
            break
        needed |= more
    outcomes = {}
    for settings in topological_order([c.settings for c in calibrations.values()]):
        if settings.name not in needed:
            continue
        calibration = calibrations[settings.name]
        expert = {**settings.expert_config, **config.get(settings.name, {})}
        outputs = {}
        for run, streams in files.items():
            upstream = {}
            for dep in settings.depends_on_names:
                for payload in outcomes[dep].payloads():
                    if payload.iov.contains(run):
                        upstream[payload.name] = payload.constants
            outputs[run] = calibration.collect(run, streams, upstream, expert)
        algorithm = calibration.make_algorithm(outputs, {}, expert)
        outcomes[settings.name] = run_calibration(settings, algorithm, calibration.strategy(), list(outputs), IoV(26, 0, -1, -1), config.get(settings.name, {}))
    return outcomes


def pulls_of(outcomes, root: Path) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    calibrations = discover_calibrations()
    result = {}
    for name, outcome in outcomes.items():
        if not outcome.succeeded:
            result[name] = np.array([])
            continue
        result[name] = np.concatenate([calibrations[name].truth_pulls(p.constants, root, p.runs) for p in outcome.payloads()])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--realism", nargs="+", default=["realistic"])
    parser.add_argument("--faults", nargs="*", default=[])
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    for realism in args.realism:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                start = time.perf_counter()
                generate(root, runs=args.runs, events_per_run=args.events, seed=seed, faults=args.faults, realism=realism)
                generated = time.perf_counter() - start
                outcomes = calibrate_bucket(root, set(args.only) if args.only else None)
                print(f"{realism} seed {seed}: generated in {generated:.1f} s, calibrated in {time.perf_counter() - start - generated:.1f} s")
                for name, pulls in pulls_of(outcomes, root).items():
                    outcome = outcomes[name]
                    iovs = [f"{p.runs[0].run}-{p.runs[-1].run}" for p in outcome.payloads()] if outcome.succeeded else outcome.message
                    s = pull_summary(pulls)
                    print(f"  {name:18s} n={s['n']:6d} mean {s['mean']:+.3f} +- {s['mean_error']:.3f} width {s['width']:.3f} +- {s['width_error']:.3f} payload runs {iovs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
