"""Benchmarks of the four calibrations (run from the repository root with the venv python):

    .venv/bin/python bench/bench_calibrations.py [--events-per-run N] [--runs R] [--bucket-events 10000000]
        [--only collectors|algorithms|memory ...] [--calibrations NAME ...] [--data DIR]

1. Collector throughput (events/s) against a plain uproot read of the same branches of the
   same files, measured alternately in the same process (best of ``--repeats``); goal >= 0.7.
2. Peak memory of collecting a bucket of ``--bucket-events`` events (the generated files
   reused as often as needed), merging run by run and running the algorithm: each
   calibration in a fresh subprocess, peak RSS from getrusage; goal < 2 GB.
3. Algorithm time for 8736 crystals and 14336 wires (and the two beam calibrations).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import uproot

from b2cal_assets.calibration.framework import run_calibration, topological_order
from b2cal_assets.calibration.framework.contract import CollectorOutput
from b2cal_assets.calibration.plugins import discover_calibrations
from b2cal_assets.conditions.iov import ExpRun, IoV
from b2cal_assets.runs.generator import generate

# The ECL bench bucket is far smaller than a real one: lower the hit thresholds so it calibrates.
CONFIG = {"ECLCrystalEnergy": {"min_hits_per_crystal": 5, "max_fraction_low_crystals": 0.05}}
PARTS = ("collectors", "algorithms", "memory")
STREAMS_OF = {"BeamSpot": ["hlt_mumu_2trk"], "CollisionEnergy": ["hlt_mumu_2trk"], "ECLCrystalEnergy": ["hlt_bhabha"], "CDCTimeZero": ["hlt_mumu_2trk", "hlt_hadron"]}
BRANCHES_OF = {
    "BeamSpot": ["event", "vtx_x", "vtx_y", "vtx_z", "vtx_ex", "vtx_ey", "vtx_ez", "trk_charge"],
    "CollisionEnergy": ["trk_charge", "trk_p", "trk_phi0", "trk_tanlambda", "trk_d0", "trk_z0", "trk_d0_err", "trk_z0_err"],
    "ECLCrystalEnergy": ["ecl_cell", "ecl_energy", "ecl_theta"],
    "CDCTimeZero": ["cdc_wire", "cdc_time"],
}


def files_by_run(root: Path) -> dict[ExpRun, dict[str, list[Path]]]:
    result = {}
    for record in sorted(root.rglob("runinfo.*.json")):
        data = json.loads(record.read_text())
        streams: dict[str, list[Path]] = defaultdict(list)
        for entry in data["files"]:
            streams[entry["stream"]].append(root / entry["path"])
        result[ExpRun(data["exp"], data["run"])] = dict(streams)
    return result


def events_in(paths: list[Path]) -> int:
    return sum(uproot.open(path)["tree"].num_entries for path in paths)


def needed_upstream(names: list[str]) -> set[str]:
    """``names`` and every calibration they depend on, directly or not."""
    settings = {name: cal.settings for name, cal in discover_calibrations().items()}
    needed, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(settings[name].depends_on_names)
    return needed


def calibrate_chain(files: dict[ExpRun, dict[str, list[Path]]], names: set[str] | None = None) -> tuple[dict, dict]:
    """Collect every run and calibrate ``names`` (default all four) in dependency order:
    upstream payloads per run, collector outputs."""
    calibrations = discover_calibrations()
    payloads: dict[str, dict[ExpRun, dict]] = {}
    collected_all = {}
    for settings in topological_order([c.settings for c in calibrations.values()]):
        if names is not None and settings.name not in names:
            continue
        cal = calibrations[settings.name]
        config = {**settings.expert_config, **CONFIG.get(settings.name, {})}
        collected = {}
        for run, streams in files.items():
            upstream = {k: v for dep in settings.depends_on_names for k, v in payloads[dep][run].items()}
            collected[run] = cal.collect(run, streams, upstream, config)
        outcome = run_calibration(settings, cal.make_algorithm(collected, {}, config), cal.strategy(), list(collected), IoV(26, 1, -1, -1), CONFIG.get(settings.name, {}))
        outcome.raise_for_failure()
        payloads[settings.name] = {run: {p.name: p.constants for p in outcome.payloads() if p.iov.contains(run)} for run in files}
        collected_all[settings.name] = collected
    return payloads, collected_all


def throughput(files: dict, payloads: dict, repeats: int, names: list[str]) -> None:
    calibrations = {name: cal for name, cal in discover_calibrations().items() if name in names}
    print(f"\n== Collector throughput vs plain uproot read (same files, same branches, best of {repeats}) ==")
    print(f"{'calibration':18s} {'events':>8s} {'read ev/s':>12s} {'collect ev/s':>13s} {'ratio':>6s}")
    for name, cal in calibrations.items():
        paths = [p for streams in files.values() for s in STREAMS_OF[name] for p in streams.get(s, [])]
        n_events = events_in(paths)
        best_read = best_collect = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for path in paths:
                with uproot.open(path) as root_file:
                    root_file["tree"].arrays(BRANCHES_OF[name], library="ak")
            best_read = min(best_read, time.perf_counter() - start)
            start = time.perf_counter()
            for run, streams in files.items():
                upstream = {k: v for dep in cal.settings.depends_on_names for k, v in payloads[dep][run].items()}
                cal.collect(run, streams, upstream, {**cal.settings.expert_config, **CONFIG.get(name, {})})
            best_collect = min(best_collect, time.perf_counter() - start)
        read_rate, collect_rate = n_events / best_read, n_events / best_collect
        print(f"{name:18s} {n_events:8d} {read_rate:12.0f} {collect_rate:13.0f} {collect_rate / read_rate:6.2f}")


def algorithm_times(collected: dict, names: list[str]) -> None:
    calibrations = {name: cal for name, cal in discover_calibrations().items() if name in names}
    print("\n== Algorithm time (all runs merged, one execution) ==")
    for name, cal in calibrations.items():
        config = {**cal.settings.expert_config, **CONFIG.get(name, {})}
        runs = sorted(collected[name])
        algorithm = cal.make_algorithm(collected[name], {}, config)
        start = time.perf_counter()
        outcome = algorithm.execute(runs, 0, None)
        elapsed = time.perf_counter() - start
        channels = sum(len(c) for c in outcome.payloads.values())
        print(f"{name:18s} {channels:6d} constants  {elapsed:7.2f} s  ({outcome.result.value})")


def memory_child(root: Path, name: str, bucket_events: int, payloads_file: Path) -> None:
    """In a fresh process: collect ``bucket_events`` events (files reused), merge run by run, run the algorithm."""
    from b2cal_assets.conditions.payloads import PayloadConstants

    cal = discover_calibrations()[name]
    files = files_by_run(root)
    stored = json.loads(payloads_file.read_text())
    config = {**cal.settings.expert_config, **CONFIG.get(name, {})}
    per_pass = sum(events_in(streams.get(s, [])) for streams in files.values() for s in STREAMS_OF[name])
    all_events = sum(events_in([p for ps in streams.values() for p in ps]) for streams in files.values())
    passes = max(1, -(-bucket_events // all_events))  # the bucket holds all streams; this collector reads its own
    merged: CollectorOutput | None = None
    start = time.perf_counter()
    fake_run = 0
    for _ in range(passes):
        for run, streams in files.items():
            fake_run += 1  # each reuse of a run's files is a distinct run of the bucket
            upstream = {k: PayloadConstants(**{f: v for f, v in c.items()}) for k, c in stored.get(str(run.run), {}).items()}
            output = cal.collect(ExpRun(26, fake_run), streams, upstream, config)
            merged = output if merged is None else CollectorOutput.merge([merged, output])
    collect_time = time.perf_counter() - start
    algorithm = cal.make_algorithm({ExpRun(26, 1): merged}, {}, config)
    outcome = algorithm.execute([ExpRun(26, 1)], 0, None)
    # VmHWM: this process's own peak RSS (ru_maxrss can carry the parent's peak over fork/exec).
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    hwm = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    peak_mb = int(hwm[0]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"name": name, "bucket_events": passes * all_events, "events_read": passes * per_pass, "collect_s": collect_time, "peak_rss_mb": peak_mb, "result": outcome.result.value}))


def memory(root: Path, payloads: dict, bucket_events: int, names: list[str]) -> None:
    print(f"\n== Peak memory, bucket of {bucket_events / 1e6:.0f} M events (files reused), one subprocess per calibration ==")
    stored: dict[str, dict] = {}  # run -> payload name -> constants, for the children's upstream
    for _name, by_run in payloads.items():
        for run, consts in by_run.items():
            for k, c in consts.items():
                stored.setdefault(str(run.run), {})[k] = {"value": c.value.tolist(), "error": c.error.tolist(), "status": c.status.tolist()}
    payloads_file = root / "bench_payloads.json"
    payloads_file.write_text(json.dumps(stored))
    for name in names:
        child = subprocess.run(
            [sys.executable, __file__, "--memory-child", name, "--data", str(root), "--bucket-events", str(bucket_events), "--payloads", str(payloads_file)],
            capture_output=True, text=True, check=True,
        )
        row = json.loads(child.stdout.strip().splitlines()[-1])
        verdict = "OK" if row["peak_rss_mb"] < 2048 else "OVER 2 GB"
        print(
            f"{name:18s} bucket {row['bucket_events'] / 1e6:5.1f} M events ({row['events_read'] / 1e6:4.1f} M read by this collector) "
            f"in {row['collect_s']:6.1f} s ({row['events_read'] / row['collect_s']:8.0f} ev/s), peak RSS {row['peak_rss_mb']:7.1f} MB {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--events-per-run", type=int, default=20_000)
    parser.add_argument("--bucket-events", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, help="reuse generated data in this directory")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts (default all)")
    parser.add_argument("--calibrations", nargs="+", help="measure only these calibrations (their upstream is still calibrated)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--payloads", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.data, args.memory_child, args.bucket_events, args.payloads)
        return
    names = args.calibrations or list(discover_calibrations())
    unknown = sorted(set(names) - set(discover_calibrations()))
    if unknown:
        parser.error(f"unknown calibrations {unknown}; choose from {sorted(discover_calibrations())}")
    with tempfile.TemporaryDirectory(prefix="bench_calibrations_") as scratch:
        root = args.data or Path(scratch)
        if not any(root.rglob("runinfo.*.json")):
            start = time.perf_counter()
            generate(root, runs=args.runs, events_per_run=args.events_per_run, seed=3, faults=["dead-crystals", "hot-wires"])
            print(f"generated {args.runs} runs x {args.events_per_run} events in {time.perf_counter() - start:.1f} s into {root}")
        files = files_by_run(root)
        payloads, collected = calibrate_chain(files, needed_upstream(names))
        if "collectors" in args.only:
            throughput(files, payloads, args.repeats, names)
        if "algorithms" in args.only:
            algorithm_times(collected, names)
        if "memory" in args.only:
            memory(root, payloads, args.bucket_events, names)


if __name__ == "__main__":
    main()
