"""Boundaries a machine checks: import layering, lint, and the private APIs we depend on.

Every private API of a dependency used by the platform is listed here with why; a test fails
when it moves, so an upgrade breaks here first instead of in production.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_import_layering_contracts_are_kept() -> None:
    """pyproject [tool.importlinter]: pure layers import neither dagster, aiohttp nor sqlalchemy;
    only the demo, the generate command, benchmarks and tests import the synthetic generator."""
    result = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_finds_nothing() -> None:
    result = subprocess.run([_tool("ruff"), "check", "--no-cache", "b2cal_assets", "b2cal_assets_tests", "bench", "scripts"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# (module, attribute, why we use it)
PRIVATE_DAGSTER_APIS = [
    ("dagster._core.event_api", "PartitionKeyFilter",
     "validation reads the latest check evaluation of one bucket partition (no public filter)"),
    ("dagster._core.storage.asset_check_execution_record", "AssetCheckExecutionRecordStatus",
     "the status filter of get_asset_check_execution_history"),
    ("dagster._core.execution.retries", "RetryMode", "the Celery executor is built with dagster-celery's own constructor"),
    ("dagster._core.code_pointer", "CustomPointer", "operations/celery_jobs.py makes the asset job reconstructable for Celery workers"),
    ("dagster._core.code_pointer", "ModuleCodePointer", "as above"),
    ("dagster._core.definitions.assets.job.asset_job", "IMPLICIT_ASSET_JOB_NAME", "the name of the implicit asset job"),
    ("dagster._core.definitions.reconstruct", "ReconstructableJob", "as CustomPointer"),
    ("dagster._core.definitions.reconstruct", "ReconstructableRepository", "as CustomPointer"),
    ("dagster._core.storage.tags", "ASSET_PARTITION_RANGE_START_TAG",
     "the bucket scheduler (calibration/sensors.py) and orchestration.py launch one run over a partition range"),
    ("dagster._core.storage.tags", "ASSET_PARTITION_RANGE_END_TAG", "as ASSET_PARTITION_RANGE_START_TAG"),
]


@pytest.mark.parametrize(("module", "attribute", "why"), PRIVATE_DAGSTER_APIS, ids=[f"{m}.{a}" for m, a, _ in PRIVATE_DAGSTER_APIS])
def test_private_dagster_apis_we_use_still_exist(module: str, attribute: str, why: str) -> None:
    assert hasattr(importlib.import_module(module), attribute), f"{module}.{attribute} moved; used because {why}"


def test_every_private_dagster_import_of_the_package_is_listed_with_why() -> None:
    """A new ``dagster._core`` import must join PRIVATE_DAGSTER_APIS (and so the test above)."""
    import ast

    listed = {(module, attribute) for module, attribute, _ in PRIVATE_DAGSTER_APIS}
    unlisted = []
    for path in sorted((ROOT / "b2cal_assets").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("dagster._"):
                unlisted += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names if (node.module, a.name) not in listed]
            elif isinstance(node, ast.Import):
                unlisted += [f"{path.relative_to(ROOT)}: import {a.name}" for a in node.names if a.name.startswith("dagster._")]
    assert unlisted == []


def test_ssl_object_still_wraps_a_private_sslobj() -> None:
    """The proxy reads the verified client chain from ``SSLObject._sslobj`` on Python < 3.13
    (``get_verified_chain`` is public only from 3.13)."""
    context = ssl.create_default_context()
    wrapped = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=False, server_hostname="b2cal.test")
    if sys.version_info >= (3, 13):
        assert hasattr(wrapped, "get_verified_chain")
    else:
        assert hasattr(wrapped._sslobj, "get_verified_chain")


def test_ssl_private_extension_module_still_has_what_the_proxy_uses() -> None:
    """``proxy/tls_verify.py`` loads the interpreter's own libssl through ``ssl._ssl.__file__``
    (the verify callback must call the same OpenSSL); ``proxy/server.py`` encodes verified chains
    with ``ssl._ssl.ENCODING_DER`` (not exported by ``ssl``)."""
    assert Path(ssl._ssl.__file__).is_file()
    assert hasattr(ssl._ssl, "ENCODING_DER")


def test_aiohttp_site_still_keeps_its_server_in_private_server() -> None:
    """The proxy learns the port it bound (port 0 in tests) from ``TCPSite._server.sockets``."""
    from aiohttp import web

    async def bound_port() -> int:
        runner = web.AppRunner(web.Application())
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return site._server.sockets[0].getsockname()[1]
        finally:
            await runner.cleanup()

    assert asyncio.run(bound_port()) > 0


def test_no_module_filters_warnings_or_picks_a_matplotlib_backend_at_import() -> None:
    """Import-time side effects change every importer's behaviour: none at module level."""
    offenders = []
    for path in sorted((ROOT / "b2cal_assets").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith(("warnings.filterwarnings(", "warnings.simplefilter(", "matplotlib.use(")):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_every_third_party_import_of_the_package_is_a_declared_dependency() -> None:
    import ast
    import tomllib
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name.lower().replace("_", "-") for r in project["dependencies"]}
    declared |= {Requirement(r).name.lower().replace("_", "-") for extra in project["optional-dependencies"].values() for r in extra}
    distributions = packages_distributions()
    undeclared = set()
    for path in (ROOT / "b2cal_assets").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "b2cal_assets":
                    continue
                owners = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                if not owners & declared:
                    undeclared.add(f"{top} ({', '.join(sorted(owners))}) in {path.relative_to(ROOT)}")
    assert sorted(undeclared) == []
