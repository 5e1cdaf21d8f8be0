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


# benchmark output, git-ignored: ``make bench`` writes the first release's code there (benchmarks/baseline.py)
OUTPUT = REPO / "benchmarks" / "out"


def python_files(*roots: str) -> list[Path]:
    out = []
    for r in roots:
        out += sorted(p for p in (REPO / r).rglob("*.py") if "__pycache__" not in p.parts
                      and not p.is_relative_to(OUTPUT))
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


def test_nothing_outside_the_composition_root_imports_it():
    """``framework.cli`` wires brokers into the pipeline; a module that imported it would reach the
    brokers through it (the sweep is handed ``build_backtest`` and ``run_backtest`` instead)."""
    outside = [p for p in python_files("framework")          # the package's entry point runs the CLI
               if p.relative_to(REPO / "framework").parts[0] not in ("cli", "__main__.py")]
    bad = {rel(p): sorted(n for n in imports_of(p) if n == "framework.cli" or n.startswith("framework.cli."))
           for p in outside + python_files("strategies")}
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


SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+"
                 r"(TABLE|INDEX|UNIQUE)|DROP\s+(TABLE|INDEX)|ALTER\s+TABLE)\b", re.IGNORECASE | re.DOTALL)


def sql_outside_the_ledger(paths: list[Path]) -> list[str]:
    """String constants that hold SQL, or calls of a connection's execute, outside framework/ledger/."""
    found = []
    for p in paths:
        if rel(p).startswith("framework/ledger/"):
            continue
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                found.append(f"{rel(p)}:{node.lineno}: SQL text {node.value[:40]!r}")
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
                if SQL.search(text):
                    found.append(f"{rel(p)}:{node.lineno}: SQL f-string")
            if isinstance(node, ast.Attribute) and node.attr == "db" and isinstance(node.ctx, ast.Load):
                found.append(f"{rel(p)}:{node.lineno}: reaches into the ledger's connection (.db)")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("read_sql_query", "read_sql"):
                found.append(f"{rel(p)}:{node.lineno}: pandas SQL read")
    return found


def test_the_sql_detector_sees_sql_in_every_form(tmp_path):
    src = ('q = "SELECT a FROM t"\nled.db.execute("x")\nf"UPDATE orders SET x={1}"\n'
           'pd.read_sql_query(q, c)\nok = "select the best option"\n')
    p = REPO / "framework" / "ops" / "_probe_.py"
    p.write_text(src)
    try:
        found = sql_outside_the_ledger([p])
    finally:
        p.unlink()
    assert {f.split(":")[1] for f in found} == {"1", "2", "3", "4"}, found


def test_no_sql_outside_the_ledger_module():
    """All SQL lives in framework/ledger/ behind named queries (issue 11): no SQL text, no reaching
    into the connection, no pandas SQL reads anywhere else in the product."""
    assert sql_outside_the_ledger(python_files(*PRODUCT)) == []


def broker_attributes(paths: list[Path]) -> set[str]:
    """Names of the attributes Broker classes hold: class-level names and ``self.x`` set in any of
    their methods (classes whose bases lead to ``Broker``)."""
    classes: dict[str, tuple[list[str], set[str]]] = {}
    for p in paths:
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names: set[str] = set()
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store) \
                            and isinstance(sub.value, ast.Name) and sub.value.id == "self":
                        names.add(sub.attr)
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign):
                        names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
                    elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                        names.add(stmt.target.id)
                bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                classes[node.name] = (bases, names)

    def is_broker(name: str, seen=()) -> bool:
        if name == "Broker":
            return True
        return name in classes and name not in seen and any(is_broker(b, (*seen, name)) for b in classes[name][0])

    return {a for n, (_, attrs) in classes.items() if is_broker(n) for a in attrs}


def attribute_assignments_from_outside(paths: list[Path], names: set[str]) -> list[str]:
    """Assignments ``obj.x = ...`` (obj not ``self``) to an attribute named in ``names``, and
    ``setattr`` calls: brokers are built complete by their constructor (STYLE 15), never finished
    from outside."""
    found = []
    for p in paths:
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr":
                found.append(f"{rel(p)}:{node.lineno}: setattr")
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store) and sub.attr in names:
                        base = sub.value
                        if isinstance(base, ast.Name) and base.id not in ("self", "cls"):
                            found.append(f"{rel(p)}:{node.lineno}: {ast.unparse(sub)} assigned from outside")
    return found


def test_the_assignment_detector_sees_attributes_set_from_outside():
    src = "broker.order_timeout_s = f\nself.order_timeout_s = 1\nb.observer = 2\nx = 3\nres.seconds = 1\n"
    p = REPO / "framework" / "ops" / "_probe2_.py"
    p.write_text(src)
    try:
        found = attribute_assignments_from_outside([p], {"order_timeout_s", "observer"})
    finally:
        p.unlink()
    assert [f.split(":")[1] for f in found] == ["1", "3"], found


def test_no_broker_attribute_is_assigned_from_outside_its_constructor():
    """Brokers are built complete by the registry from typed options: nothing sets a broker's
    attribute afterwards (the first release set timeouts, observers and ledger lookups on them)."""
    names = broker_attributes(python_files("framework", "brokers"))
    assert {"fees", "options", "limiter", "brokers"} <= names
    assert attribute_assignments_from_outside(python_files("framework", "brokers"), names) == []
