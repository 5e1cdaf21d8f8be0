"""The notebooks in notebooks/ run top to bottom on the demo data (no keys, no network).

Each is executed with nbclient on the ``python3`` kernel of this interpreter (ipykernel in the same
environment provides it; jupyter_client starts it with ``sys.executable``), from a temporary
working directory; any cell error fails the test. Committed notebooks carry no outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300     # seconds per cell; generous for a loaded CI machine (each notebook takes seconds)


def kernel_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "COINBASE_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TMPDIR"] = str(tmp)            # the notebooks' scratch directories land under pytest's tmp_path
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


def test_the_starting_notebooks_are_there_and_cleared():
    import nbformat

    names = [p.name for p in NOTEBOOKS]
    assert "01_backtest_a_signal_archive.ipynb" in names and "02_compare_two_runs.ipynb" in names
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), f"{p.name}: clear outputs"
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path: Path, tmp_path: Path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=kernel_env(tmp_path))          # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook draws a figure"
    assert list(tmp_path.glob("parity-notebook-*/reports/*/report.html")), "the run wrote its report"
