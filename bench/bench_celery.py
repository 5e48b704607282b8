"""Scale-out benchmark: one bucket's collectors on one Celery worker against two, in the same run.

    .venv/bin/python bench/bench_celery.py [--runs 6] [--events-per-run 6000]

Needs RabbitMQ at 127.0.0.1:5672 (guest/guest) and `rabbitmqctl` (a private virtual host is
made and deleted). The bucket's collector run requests (what the scheduler asks for) are
submitted together, each a Dagster run whose steps are Celery tasks; workers are
`celery worker --pool solo` processes (one step at a time each). The figure is the ratio
wall(1 worker) / wall(2 workers): 2 is perfect scaling, and a 2-core machine that also runs
the orchestrating runs and RabbitMQ sits below it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from b2cal_assets_tests.operations.conftest import CeleryWorkers, _rabbitmqctl  # noqa: E402
from b2cal_assets_tests.operations.scaleout import prepare_bucket, run_collectors_on_celery  # noqa: E402


def _timed_pass(prepared, broker: str, logs: Path, n_workers: int) -> float:
    workers = CeleryWorkers(broker, logs, dict(os.environ))
    try:
        names = [f"bench{n_workers}w{i}" for i in range(n_workers)]
        for name in names:
            workers.start(name)
        workers.wait_ready(*names)
        started = time.perf_counter()
        results = run_collectors_on_celery(prepared, broker)
        elapsed = time.perf_counter() - started
        if not all(ok for _, ok in results):
            raise RuntimeError(f"a collector run failed with {n_workers} worker(s): {results}; see {logs}")
        return elapsed
    finally:
        workers.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--events-per-run", type=int, default=6_000)
    args = parser.parse_args()
    vhost = f"b2cal_bench_{os.getpid()}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        broker = f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}"
        with tempfile.TemporaryDirectory(prefix="b2cal-bench-celery-") as tmp:
            root = Path(tmp)
            started = time.perf_counter()
            prepared = prepare_bucket(root / "site", runs=args.runs, events_per_run=args.events_per_run)
            steps = sum(len(r.asset_selection) for r in prepared.requests)
            print(f"bucket: {args.runs} runs x {args.events_per_run} events, {len(prepared.requests)} collector runs, "
                  f"{steps} collector steps (prepared in {time.perf_counter() - started:.1f} s)")
            (root / "logs").mkdir()
            # Same bucket both times: the second pass recomputes the same collector outputs.
            one = _timed_pass(prepared, broker, root / "logs", 1)
            two = _timed_pass(prepared, broker, root / "logs", 2)
            print(f"1 worker : {one:7.1f} s")
            print(f"2 workers: {two:7.1f} s")
            print(f"ratio 1/2: {one / two:7.2f}  (cores: {os.cpu_count()})")
    finally:
        _rabbitmqctl("delete_vhost", vhost)


if __name__ == "__main__":
    main()
