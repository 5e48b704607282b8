"""A small generated data set shared by the runs tests (read-only; copy it to modify)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from b2cal_assets.runs.generator import generate

SMALL_RUNS = 3
SMALL_EVENTS = 1_500


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("incoming_clean")
    generate(root, runs=SMALL_RUNS, events_per_run=SMALL_EVENTS, events_per_file=300, seed=7)
    return root


@pytest.fixture
def incoming(generated_root, tmp_path) -> Path:
    """A private, writable copy of the generated data set."""
    copy = tmp_path / "incoming"
    shutil.copytree(generated_root, copy)
    return copy
