"""``sweep.html`` in headless Chromium: every image loads, and a screenshot of the page is not blank."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.reports.test_browser import chromium, dump_dom
from tests.reports.test_html import assert_not_blank
from tests.sweep.conftest import STRATEGY, make_home


def test_sweep_page_in_headless_chromium(tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    home = make_home(tmp_path / "home")
    out = home.json("sweep", "--strategy", STRATEGY, "--param", "generator.lookback=10,20",
                    "--param", "rebalance.drift_threshold=0.01,0.05", "--walk-forward", "180D:90D",
                    "--workers", "2", "--keep", "2")
    page = Path(out["report"])
    dom = dump_dom(browser, page, tmp_path / "profile")
    # heatmap of the two keys, the best points' equity, in-sample vs out-of-sample
    assert dom.body.get("data-images-ok") == "true", dom.body
    assert dom.body["data-images-total"] == "3" and dom.body["data-images-loaded"] == "3"
    html = page.read_text()
    for pid in out["runs"]:
        assert pid in html
    shot = tmp_path / "sweep.png"
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,2400",
                           f"--screenshot={shot}", "--virtual-time-budget=5000", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert_not_blank(shot.read_bytes())
