"""The shape of the code (docs/ARCHITECTURE.md): layers, no import cycles between them, no
reaching into another module's private names, no test support inside the library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("asr", "server")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "generated" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path):
    """``(target module, imported names)`` for every import statement in a module."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_layers_contract_holds():
    """import-linter's layers contract from pyproject.toml (every import, lazy ones too)."""
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command;"
         " sys.exit(lint_imports_command())"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_no_module_imports_another_modules_private_names():
    modules = _modules()
    offenders = []
    for name, path in modules.items():
        for target, names in _imports(name, path):
            if target.split(".")[0] not in PACKAGES or target == name:
                continue
            for imported in names:
                if imported.startswith("_") and not imported.startswith("__"):
                    offenders.append(f"{name} imports {target}.{imported}")
    assert not offenders, "\n".join(offenders)


def test_library_does_not_import_apps_or_tests():
    offenders = []
    for name, path in _modules().items():
        if not name.startswith("asr.") or name.startswith("asr.cli"):
            continue
        for target, _ in _imports(name, path):
            if target.split(".")[0] in ("server", "tests", "benchmarks"):
                offenders.append(f"{name} imports {target}")
    assert not offenders, "\n".join(offenders)


def test_tests_do_not_import_other_test_modules():
    """Shared fixtures live in conftest.py and tests/support/, not in test modules."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                leaf = node.module.rpartition(".")[2]
                if leaf.startswith("test_") or node.module.startswith("tests.test_"):
                    offenders.append(f"{path.name} imports {node.module}")
    assert not offenders, "\n".join(offenders)
