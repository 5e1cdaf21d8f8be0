"""The dependency rules of SPEC §1, checked on the source with ``ast``:

* ``framework/`` never imports ``brokers/``, except the composition root ``framework/cli/``;
* ``strategies/`` imports only ``framework/``, the standard library, numpy and pandas;
* only ``brokers/alpaca*`` imports alpaca-py (``alpaca``), only ``brokers/coinbase*`` imports
  coinbase-advanced-py (``coinbase``) — in the product code and the notebooks; tests that drive the
  real SDKs against local venue servers are the one allowed exception;
* the pipeline (engine, risk, rebalance) has no branch on a mode: no ``mode ==``, no comparison with
  "backtest"/"paper"/"live"/"sim", no check of the broker's class.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PRODUCT = ("framework", "brokers", "strategies", "benchmarks")
PIPELINE = ("framework/engine.py", "framework/risk.py", "framework/rebalance.py")
MODE_WORDS = {"backtest", "paper", "live", "sim", "simulated", "simulation"}


def python_files(*roots: str) -> list[Path]:
    out = []
    for r in roots:
        out += sorted(p for p in (REPO / r).rglob("*.py") if "__pycache__" not in p.parts)
    return out


def imported_modules(source: str, path: Path) -> set[str]:
    """Absolute names of every module imported anywhere in ``source`` (inside functions too),
    plus string arguments of importlib.import_module / __import__."""
    tree = ast.parse(source, filename=str(path))
    pkg = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call):
            fn = node.func
            fname = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if fname in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def imports_of(path: Path) -> set[str]:
    return imported_modules(path.read_text(encoding="utf-8"), path)


def top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names if n}


def rel(p: Path) -> str:
    return p.relative_to(REPO).as_posix()


def test_the_import_parser_sees_every_form():
    src = ("import os, brokers.simulated\nfrom brokers import sim_book\nfrom . import x\nfrom ..cli import y\n"
           "def f():\n    import alpaca.trading\n    importlib.import_module('coinbase.rest')\n")
    names = imported_modules(src, REPO / "framework" / "reports" / "m.py")
    assert {"os", "brokers.simulated", "brokers", "framework.reports", "framework.cli", "alpaca.trading",
            "coinbase.rest"} <= names


def test_framework_imports_brokers_only_in_the_composition_root():
    bad = {rel(p): sorted(n for n in imports_of(p) if n.split(".")[0] == "brokers")
           for p in python_files("framework") if "cli" not in p.relative_to(REPO / "framework").parts[:1]}
    assert {k: v for k, v in bad.items() if v} == {}


def test_strategies_import_only_framework_the_standard_library_numpy_and_pandas():
    allowed = set(sys.stdlib_module_names) | {"framework", "numpy", "pandas", "strategies"}
    bad = {rel(p): sorted(top(imports_of(p)) - allowed) for p in python_files("strategies")}
    assert {k: v for k, v in bad.items() if v} == {}


def _notebook_sources() -> list[tuple[Path, str]]:
    out = []
    for nb in sorted((REPO / "notebooks").rglob("*.ipynb")) if (REPO / "notebooks").is_dir() else []:
        cells = json.loads(nb.read_text(encoding="utf-8")).get("cells", [])
        code = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
        code = "\n".join(ln for ln in code.splitlines() if not ln.lstrip().startswith(("%", "!")))
        out.append((nb, code))
    return out


@pytest.mark.parametrize("sdk,home", [("alpaca", "brokers/alpaca"), ("coinbase", "brokers/coinbase")])
def test_only_the_venue_adapter_imports_its_sdk(sdk, home):
    offenders = []
    for p in python_files(*PRODUCT):
        if sdk in top(imports_of(p)) and not rel(p).startswith(home):
            offenders.append(rel(p))
    for nb, code in _notebook_sources():
        if sdk in top(imported_modules(code, REPO / "notebooks" / "nb.py")):
            offenders.append(rel(nb))
    assert offenders == []


def test_the_pipeline_has_no_mode_branch():
    found = []
    for name in PIPELINE:
        path = REPO / name
        text = path.read_text(encoding="utf-8")
        if re.search(r"\bmode\s*[!=]=|[!=]=\s*\w*mode\b|\bdry_run\b|\bis_live\b|\bis_backtest\b", text):
            found.append((name, "mode comparison in the text"))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Compare):
                for operand in [node.left, *node.comparators]:
                    if isinstance(operand, ast.Constant) and isinstance(operand.value, str) \
                            and operand.value.lower() in MODE_WORDS:
                        found.append((name, f"line {node.lineno}: compares with {operand.value!r}"))
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                src = ast.unparse(node)
                if re.search(r"Simulated|Alpaca|Coinbase", src):
                    found.append((name, f"line {node.lineno}: {src}"))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in MODE_WORDS:
                found.append((name, f"line {getattr(node, 'lineno', '?')}: string {node.value!r}"))
        assert "brokers" not in top(imports_of(path)), name
    assert found == []
