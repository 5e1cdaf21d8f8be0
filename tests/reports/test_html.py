"""render_report: a self-contained page, non-blank figures, the summary's values, mode-blind."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework.reports.html import render_report
from framework.reports.sections import MAX_ROWS
from tests.reports.synthetic import build_run, empty_run

FIGURES = ("equity", "drawdown", "exposure", "costs", "attribution", "decisions")


class PageParser(HTMLParser):
    """Collect image sources, external references and the metric cells of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.metrics: dict[str, dict[str, str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(attr.get("src", ""))
        for key in ("src", "href"):
            value = attr.get(key, "")
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag == "link":
            self.external.append(attr.get("href", "link"))
        if attr.get("id", "").startswith("metric-"):
            self.metrics[attr["id"].removeprefix("metric-")] = attr


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def assert_not_blank(png: bytes) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    rgb = pixels[..., :3].reshape(-1, 3)
    background = np.all(np.isclose(rgb, 1.0), axis=1)
    assert (~background).mean() > 0.002, "figure is (almost) blank"


@pytest.fixture(scope="module")
def run():
    return build_run()


@pytest.fixture(scope="module")
def report(run, tmp_path_factory) -> Path:
    return render_report(run, tmp_path_factory.mktemp("report"))


def test_writes_html_and_pngs(report: Path) -> None:
    assert report.name == "report.html"
    for name in FIGURES:
        assert_not_blank((report.parent / f"{name}.png").read_bytes())


def test_images_are_embedded_and_nothing_is_fetched(report: Path) -> None:
    page = parse(report)
    assert page.external == []
    assert len(page.images) == len(FIGURES)
    written = {(report.parent / f"{n}.png").read_bytes() for n in FIGURES}
    embedded = set()
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        embedded.add(base64.b64decode(src.split(",", 1)[1]))
    assert embedded == written


def test_metrics_table_shows_the_summary(run, report: Path) -> None:
    cells = parse(report).metrics
    for key in ("initial_equity", "final_equity", "total_return", "cagr", "volatility", "sharpe", "sortino",
                "max_drawdown", "calmar", "turnover", "n_cycles", "n_orders", "n_fills", "n_rejected",
                "fees_paid", "slippage_cost"):
        assert json.loads(cells[key]["data-value"]) == run.summary[key], key


def test_sections_are_present(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    for anchor in ("metrics", "equity", "drawdown", "exposure", "monthly", "attribution", "costs", "risk",
                   "trades", "monthly-table", "attribution-table", "decision-counts", "trades-table"):
        assert f'id="{anchor}"' in html, anchor
    assert "bt-demo-001" in html and "sha256:0f1e2d3c4b5a" in html
    assert "Inconsistent summary" not in html
    assert "max_position_size_pct" in html and "min_confidence" in html


def test_empty_live_run_renders_placeholders(tmp_path: Path) -> None:
    path = render_report(empty_run(), tmp_path)
    for name in FIGURES:
        assert_not_blank((tmp_path / f"{name}.png").read_bytes())
    html = path.read_text(encoding="utf-8")
    assert "No risk decisions were recorded" in html and "No fills." in html
    assert "No benchmark: the run has no prices." in html


def test_report_does_not_depend_on_the_mode(tmp_path: Path) -> None:
    backtest = render_report(build_run(mode="backtest", n_bars=60), tmp_path / "a")
    live = render_report(build_run(mode="live", n_bars=60), tmp_path / "b")
    html_b = live.read_text(encoding="utf-8")
    html_a = backtest.read_text(encoding="utf-8")
    assert html_a.replace("backtest", "live").replace(">sim<", ">alpaca<") == html_b
    for name in FIGURES:
        assert (tmp_path / "a" / f"{name}.png").read_bytes() == (tmp_path / "b" / f"{name}.png").read_bytes()


def test_rendering_twice_gives_identical_files(run, tmp_path: Path) -> None:
    first = render_report(run, tmp_path / "1").read_bytes()
    assert render_report(run, tmp_path / "2").read_bytes() == first


def test_long_trade_lists_are_capped(tmp_path: Path) -> None:
    run = build_run(n_bars=1600, every=2, with_decisions=False)
    assert len(run.fills) > MAX_ROWS
    html = render_report(run, tmp_path).read_text(encoding="utf-8")
    assert f"first {MAX_ROWS} of {len(run.fills)}" in html
    trades_table = html.split('id="trades-table"', 1)[1].split("</table>", 1)[0]
    assert trades_table.count("<tr>") == MAX_ROWS + 1  # header row + capped rows


def test_summary_inconsistent_with_the_equity_curve_is_flagged(run, tmp_path: Path) -> None:
    bad = type(run)(**{**run.__dict__, "summary": {**run.summary, "sharpe": 9.99}})
    html = render_report(bad, tmp_path).read_text(encoding="utf-8")
    assert "Inconsistent summary" in html and "sharpe" in html


def test_explicit_benchmark_is_used(run, tmp_path: Path) -> None:
    spy = pd.Series(np.linspace(400.0, 440.0, len(run.prices)), index=run.prices.index)
    with_benchmark = type(run)(**{**run.__dict__, "benchmark": spy})
    html = render_report(with_benchmark, tmp_path).read_text(encoding="utf-8")
    assert "Dashed: benchmark" in html


def test_importing_the_reports_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, framework.reports, framework.reports.html, framework.reports.compare; "
            "heavy = [m for m in ('matplotlib', 'vectorbt', 'jinja2') if m in sys.modules]; "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
