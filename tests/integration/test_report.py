"""`wrp report` on the embedded stack, opened in headless Chromium (Debian's chromium package):
the page loads offline and its charts are drawn."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from PIL import Image

from pipeline.analytics.charts import PALETTE
from pipeline.cli import main
from tests.integration.helpers import eventually, request, totals
from tests.integration.test_pool_faults import serve


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is missing: `make test` installs Debian's chromium package"
    return path


def headless(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_the_report_is_self_contained_and_its_charts_render_in_chromium(
    stack, tmp_path, monkeypatch
):
    before = totals(stack)["requests"]
    serve(stack, *[request(f"write a python function number {i}") for i in range(6)])
    eventually(lambda: totals(stack)["requests"] >= before + 6, what="requests in analytics")

    out = tmp_path / "report.html"
    monkeypatch.setenv("WRP_METRICS_PORT_BASE", str(stack.settings.metrics_port_base))
    monkeypatch.setenv("WRP_STATE_DIR", str(stack.settings.state_dir))
    assert main(["report", "--out", str(out), "--since", "1h"]) == 0
    html = out.read_text()
    # nothing to fetch: no scripts, stylesheets, images, fonts or links
    for reference in ("<script", "<link", "src=", "href=", "url(", "@import"):
        assert reference not in html, reference

    dom = headless("--dump-dom", out.as_uri()).stdout
    assert dom.count('<svg class="chart"') >= 5
    assert dom.count("<polyline") >= 2 and dom.count('<rect class="bar"') >= 3

    shot = tmp_path / "report.png"
    headless("--window-size=1400,2600", f"--screenshot={shot}", out.as_uri())
    drawn = chart_pixels(shot)
    # the first series colours of the line and bar charts are on screen
    assert drawn[PALETTE[0]] > 500 and drawn[PALETTE[1]] > 200, drawn


def chart_pixels(png: Path) -> dict[str, int]:
    """Pixels of each palette colour in a screenshot."""
    wanted = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)): c for c in PALETTE[:3]}
    counts = dict.fromkeys(wanted.values(), 0)
    for count, rgb in Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20):
        if rgb in wanted:
            counts[wanted[rgb]] += count
    return counts
