"""Fixtures of the operations tests: a private RabbitMQ virtual host, Celery workers, a bucket of runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from b2cal_assets_tests.operations.processes import port_open, start, stop, wait_for

REPO = Path(__file__).resolve().parents[2]
RABBITMQ_PORT = 5672


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A broker URL on a fresh RabbitMQ virtual host of this test, deleted afterwards.

    A vhost per test keeps its queues apart from every other user of the machine's RabbitMQ.
    """
    if not port_open(RABBITMQ_PORT) or shutil.which("rabbitmqctl") is None:
        pytest.fail("RabbitMQ is not running at 127.0.0.1:5672; start it with `rabbitmq-server -detached`")
    vhost = f"b2cal_test_{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"pyamqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@dataclass
class CeleryWorkers:
    """Celery worker processes of one test, each a `celery worker --pool solo` in its own session."""

    broker: str
    logs: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str) -> subprocess.Popen:
        env = {**self.env, "B2CAL_CELERY_BROKER": self.broker, "PYTHONPATH": str(REPO)}
        args = [
            sys.executable, "-m", "celery", "-A", "b2cal_assets.operations.celery_app", "worker",
            "--pool", "solo", "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO",
        ]
        process = start(args, self.logs / f"{name}.log", env=env, cwd=REPO)
        self.processes[name] = process
        return process

    def wait_ready(self, *names: str) -> None:
        from celery import Celery

        client = Celery(broker=self.broker)
        try:
            def ready() -> bool:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise AssertionError(f"worker {name} exited with {process.returncode}: {self.log(name)[-2000:]}")
                replies = client.control.ping(timeout=1.0)
                answered = {next(iter(reply)).split("@")[0] for reply in replies}
                return set(names) <= answered

            wait_for(ready, f"celery workers {names} to answer a ping")
        finally:
            client.close()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.processes.values():
            stop(process)


@pytest.fixture
def celery_workers(broker_url, tmp_path) -> Iterator[CeleryWorkers]:
    logs = tmp_path / "worker_logs"
    logs.mkdir()
    workers = CeleryWorkers(broker_url, logs, dict(os.environ))
    try:
        yield workers
    finally:
        workers.stop_all()
