"""Run-ingestion benchmarks: sensor tick cost vs runs already known, and generator rate.

    .venv/bin/python bench/bench_ingest.py [--known 1000 10000 50000] [--new 100]

Every figure is printed with a ratio to a baseline measured in the same run, because this
machine is shared and absolute times drift:

- sensor tick with K runs already known and 100 new ones, against the tick with 0 known and
  100 new (ratio ~1 means the cost follows the new entries, not the history); beside it, a
  full listing of the tree (what a scanning sensor would pay) against the same baseline;
- generator events per second, against a plain uproot write of the same events.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from b2cal_assets.runs.discovery import DiscoveryCursor, discover
from b2cal_assets.runs.generator import generate
from b2cal_assets.runs.journal import append_arrival, read_new_entries


def _best_of(function, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def _make_records(root: Path, template: dict, runs: range) -> None:
    for run in runs:
        folder = root / f"e0026/4S/r{run:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"runinfo.0026.{run:05d}.json").write_text(json.dumps(dict(template, run=run)))
        append_arrival(root, f"e0026/4S/r{run:05d}/runinfo.0026.{run:05d}.json")


def bench_sensor(known_counts: list[int], new: int) -> None:
    print(f"sensor tick: {new} new runs on top of K known runs (best of 5)")
    with tempfile.TemporaryDirectory() as tmp:
        seed_root = Path(tmp) / "seed"
        generate(seed_root, runs=1, events_per_run=60, events_per_file=20, seed=1)
        template = json.loads(next(seed_root.rglob("runinfo.*.json")).read_text())
        # Every record points at the same real files (absolute paths are not allowed: copy them in).
        results = []
        for known in [0, *known_counts]:
            root = Path(tmp) / f"k{known}"
            shutil.copytree(seed_root, root, ignore=shutil.ignore_patterns("_journal", "runinfo.*"))
            _make_records(root, template, range(10_000, 10_000 + known))
            _, _, offsets = read_new_entries(root, {}, max_entries=10**9)
            cursor = DiscoveryCursor(journal_offsets=offsets)
            _make_records(root, template, range(90_000, 90_000 + new))

            def tick() -> None:
                result = discover(root, cursor, max_runs=10_000)
                assert len(result.ready) == new

            tick_time = _best_of(tick)
            scan_time = _best_of(lambda: sum(1 for _ in root.glob("e0026/*/r*/runinfo.*.json")), repeats=3)
            results.append((known, tick_time, scan_time))
            shutil.rmtree(root)
    baseline = results[0][1]
    print(f"{'known':>8} {'tick ms':>9} {'tick ratio':>11} {'full scan ms':>13} {'scan ratio':>11}")
    for known, tick_time, scan_time in results:
        print(f"{known:>8} {tick_time * 1e3:>9.1f} {tick_time / baseline:>11.2f} {scan_time * 1e3:>13.1f} {scan_time / baseline:>11.2f}")


def bench_generator(events: int) -> None:
    print(f"\ngenerator: {events} events (best of 3)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        counter = iter(range(100))

        def run_generator() -> None:
            target = out / f"g{next(counter)}"
            generate(target, runs=1, events_per_run=events, events_per_file=events, seed=2)

        generator_time = _best_of(run_generator, repeats=3)
        files = sorted((out / "g0").rglob("*.root"))
        trees = [uproot.open(path)["tree"].arrays(library="ak") for path in files]

        def plain_write() -> None:
            target = out / f"w{next(counter)}"
            target.mkdir()
            for index, array in enumerate(trees):
                with uproot.recreate(target / f"{index}.root", compression=uproot.ZSTD(1)) as handle:
                    data = {name: array[name] for name in array.fields if not name.startswith(("trk_", "ecl_", "cdc_"))}
                    for prefix in ("trk", "ecl", "cdc"):
                        data[prefix] = ak.zip(
                            {f[len(prefix) + 1:]: array[f] for f in array.fields if f.startswith(prefix + "_")}
                        )
                    data.pop("ntrk"), data.pop("necl"), data.pop("ncdc")
                    handle.mktree("tree", data)

        write_time = _best_of(plain_write, repeats=3)
    rate = events / generator_time
    print(f"generator      {rate:>12,.0f} events/s  ({rate * 60 / 1e6:.2f} M events/min on one core)")
    print(f"uproot write   {events / write_time:>12,.0f} events/s  (same events, no simulation)")
    print(f"ratio generator/write time: {generator_time / write_time:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--known", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    np.seterr(all="ignore")
    bench_sensor(args.known, args.new)
    bench_generator(args.events)


if __name__ == "__main__":
    main()
