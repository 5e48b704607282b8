"""The generator is a data source, not a dependency: only demo, bench, tests, the generator's
own package and its command line may import it (AST scan of every module)."""

from __future__ import annotations

import ast
from pathlib import Path

import b2cal_assets

GENERATOR = "b2cal_assets.runs.generator"
# Modules allowed to import the generator: the demo, the generator itself and `b2cal generate`.
ALLOWED = ("b2cal_assets.demo", GENERATOR, "b2cal_assets.runs.cli")
PACKAGE_ROOT = Path(b2cal_assets.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, module: str, is_package: bool = False) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the importing module's package
                parts = module.split(".") + ([""] if is_package else [])
                prefix = ".".join(parts[: -node.level])
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def _importers_of_generator() -> list[str]:
    offenders = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        module = _module_name(path)
        if any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED):
            continue
        names = _imported(ast.parse(path.read_text(encoding="utf-8"), str(path)), module, path.name == "__init__.py")
        if any(name == GENERATOR or name.startswith(GENERATOR + ".") for name in names):
            offenders.append(module)
    return offenders


def test_only_demo_bench_tests_and_the_generator_import_the_generator() -> None:
    assert _importers_of_generator() == [], "calibrations, verification and the platform must not import the generator"


def test_the_scan_finds_an_import_of_the_generator(tmp_path: Path) -> None:
    tree = ast.parse("from b2cal_assets.runs import generator\nimport b2cal_assets.runs.generator.realism as r\n")
    names = _imported(tree, "b2cal_assets.calibration.plugins.x")
    assert GENERATOR in names and f"{GENERATOR}.realism" in names
    relative = _imported(ast.parse("from .generator import generate\nfrom . import generator\n"), "b2cal_assets.runs", is_package=True)
    assert GENERATOR in relative and f"{GENERATOR}.generate" in relative
