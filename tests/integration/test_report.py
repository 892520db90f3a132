"""`wrp report` on the embedded stack, opened in headless Chromium (Debian's chromium package):
the page loads offline and its charts are drawn."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from pipeline.analytics.access import query_analytics
from pipeline.analytics.charts import PALETTE
from pipeline.cli import main
from pipeline.client import send_feedback, start_producer
from pipeline.envelope import Feedback
from tests.integration.conftest import run
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
    answers = serve(stack, *[request(f"write a python function number {i}") for i in range(6)])
    run(feedback(stack, answers[0].request.request_id))  # for the feedback chart
    eventually(lambda: totals(stack)["requests"] >= before + 6, what="requests in analytics")
    eventually(lambda: rows(stack, "feedback_trend"), what="feedback in analytics")
    traffic_in_two_minutes(stack)

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


async def feedback(stack, request_id: str) -> None:
    producer = await start_producer(stack.settings.broker)
    try:
        await send_feedback(producer, Feedback(request_id=request_id, score=1.0))
    finally:
        await producer.stop()


def rows(stack, query: str) -> list[list]:
    return query_analytics(stack.settings, query, {"since": "1h"})["rows"]


def traffic_in_two_minutes(stack) -> None:
    """A line chart draws lines from two time buckets (minutes) on, bars below that. In the
    suite, earlier tests have left traffic in more than one minute; run alone, this test sends
    one more request in the next minute."""

    def minutes() -> int:
        return len({row[0] for row in rows(stack, "traffic")})

    if minutes() >= 2:
        return
    time.sleep(61 - datetime.now(UTC).second)
    serve(stack, request("write a python function, a minute later"))
    eventually(lambda: minutes() >= 2, what="traffic in a second minute")


def chart_pixels(png: Path) -> dict[str, int]:
    """Pixels of each palette colour in a screenshot."""
    wanted = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)): c for c in PALETTE[:3]}
    counts = dict.fromkeys(wanted.values(), 0)
    for count, rgb in Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20):
        if rgb in wanted:
            counts[wanted[rgb]] += count
    return counts
