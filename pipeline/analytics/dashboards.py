"""Grafana dashboards (ClickHouse datasource plugin) built from the named queries.

``wrp dashboards`` writes ``dashboards/<name>.json`` and ``dashboards/sql/<query>.sql``; a test
fails when the committed files drift from :data:`DASHBOARDS` and
:data:`pipeline.analytics.queries.QUERIES`, so the SQL is written once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.analytics.queries import QUERIES
from pipeline.settings import PROJECT_ROOT

DASHBOARDS_DIR = PROJECT_ROOT / "dashboards"
PLUGIN = "grafana-clickhouse-datasource"
DATASOURCE = {"type": PLUGIN, "uid": "${datasource}"}
#: The plugin's query formats.
FORMAT = {"timeseries": 0, "table": 1}


@dataclass(frozen=True)
class Panel:
    title: str
    query: str
    kind: str = "table"  # table | timeseries | stat | barchart
    width: int = 24


DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "overview": (
        "WRP overview",
        [
            Panel("Summary", "summary", "stat"),
            Panel("Requests by decision and model", "traffic", "timeseries"),
            Panel("Decisions", "decisions", width=12),
            Panel("Models", "models", width=12),
            Panel("Dead letters", "dlq"),
        ],
    ),
    "cost": (
        "WRP cost",
        [
            Panel("Cost over time: routed, always strongest, GPU", "spend", "timeseries"),
            Panel("Cost and savings by tenant, decision and model", "cost"),
            Panel("Semantic cache", "cache", width=12),
            Panel("Models", "models", width=12),
            Panel("Budgets: requests rejected, downgraded or flagged", "budgets"),
            Panel("Sticky sessions: model switches per session", "session_switches"),
            Panel("Tool selection: tools and tool tokens saved", "tool_savings"),
        ],
    ),
    "latency": (
        "WRP latency",
        [
            Panel("TTFT and end-to-end percentiles by pool and model", "latency", "barchart"),
            Panel("Endpoints: attempts, errors, percentiles", "pools"),
        ],
    ),
    "safety": (
        "WRP safety",
        [
            Panel("Safety actions, PII entities and categories", "safety"),
            Panel("Screening the answer per tenant and day", "answer_screening"),
            Panel("Dead letters", "dlq"),
        ],
    ),
    "learning": (
        "WRP learning",
        [
            Panel("Learner success rate per arm", "learning_trend", "timeseries"),
            Panel("Mean feedback score", "feedback_trend", "timeseries"),
            Panel("Router state", "learning", width=12),
            Panel("Feedback by decision and model", "feedback", width=12),
            Panel("Implicit feedback from next turns", "implicit_feedback"),
        ],
    ),
}

TEMPLATING = [
    {
        "name": "datasource",
        "label": "ClickHouse",
        "type": "datasource",
        "query": PLUGIN,
        "current": {},
        "hide": 0,
    },
    {
        "name": "tenant",
        "label": "Tenant",
        "type": "query",
        "datasource": DATASOURCE,
        "definition": "SELECT DISTINCT tenant FROM requests_minutely ORDER BY tenant",
        "query": "SELECT DISTINCT tenant FROM requests_minutely ORDER BY tenant",
        "includeAll": True,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "hide": 0,
    },
]


def _panel(panel: Panel, index: int, x: int, y: int) -> dict:
    sql = QUERIES[panel.query].sql.strip()
    fmt = "timeseries" if panel.kind == "timeseries" else "table"
    height = 5 if panel.kind == "stat" else 9
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": QUERIES[panel.query].description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": height},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "editorType": "sql",
                "queryType": fmt,
                "format": FORMAT[fmt],
                "rawSql": sql,
            }
        ],
        "options": {},
        "fieldConfig": {"defaults": {}, "overrides": []},
    }


def dashboard(name: str) -> dict:
    title, panels = DASHBOARDS[name]
    rendered, x, y, row_height = [], 0, 0, 0
    for index, panel in enumerate(panels):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        item = _panel(panel, index, x, y)
        rendered.append(item)
        row_height = max(row_height, item["gridPos"]["h"])
        x += panel.width
    return {
        "uid": f"wrp-{name}",
        "title": title,
        "tags": ["wrp"],
        "editable": True,
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {"list": TEMPLATING},
        "panels": rendered,
    }


def rendered_files() -> dict[Path, str]:
    """Every file under ``dashboards/`` and its content."""
    files = {
        DASHBOARDS_DIR / f"{name}.json": json.dumps(dashboard(name), indent=2) + "\n"
        for name in DASHBOARDS
    }
    used = sorted({p.query for _, panels in DASHBOARDS.values() for p in panels})
    for query in used:
        header = f"-- {query}: {QUERIES[query].description}\n"
        files[DASHBOARDS_DIR / "sql" / f"{query}.sql"] = header + QUERIES[query].sql.strip() + "\n"
    return files


def write_dashboards() -> list[Path]:
    written = []
    for path, text in rendered_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
