"""The report in a real browser: headless Chromium loads every image and shows summary.json's values.

The page's own inline script sets ``data-images-ok`` on <body> once every <img> is complete with a
natural width; ``--dump-dom`` after a virtual-time budget returns the DOM with that attribute.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from framework.reports.html import render_report
from tests.reports.synthetic import build_run, empty_run

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium() -> str | None:
    for path in CANDIDATES:
        if Path(path).exists():
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


class DomParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.cells: dict[str, dict[str, str]] = {}
        self._cell: str | None = None
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = attr
        if attr.get("id", "").startswith("metric-"):
            self._cell = attr["id"].removeprefix("metric-")
            self.cells[self._cell] = attr
            self.text[self._cell] = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.text[self._cell] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None


def dump_dom(browser: str, page: Path, profile: Path) -> DomParser:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    parser = DomParser()
    parser.feed(done.stdout)
    return parser


@pytest.mark.parametrize("make_run", [build_run, empty_run], ids=["backtest", "empty-live"])
def test_report_in_headless_chromium(make_run, tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    run = make_run()
    out = tmp_path / "reports" / run.run_id
    page = render_report(run, out)
    (out / "summary.json").write_text(json.dumps(run.summary, allow_nan=False), encoding="utf-8")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))

    dom = dump_dom(browser, page, tmp_path / "profile")

    assert dom.body.get("data-images-ok") == "true", dom.body
    assert int(dom.body["data-images-total"]) == 6
    assert dom.body["data-images-loaded"] == dom.body["data-images-total"]
    for key, value in summary.items():
        if key in dom.cells:
            assert json.loads(dom.cells[key]["data-value"]) == value, key
            assert dom.text[key].strip() not in ("", "—") or value is None, key
    for key in ("total_return", "sharpe", "max_drawdown", "final_equity", "fees_paid"):
        assert key in dom.cells, key
