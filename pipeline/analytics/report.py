"""`wrp report`: one self-contained HTML file (inline CSS and SVG, no script, no network) with
charts and tables of the named queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from typing import Any

from pipeline.analytics import charts
from pipeline.analytics.render import cell_text

#: Runs a named query with parameters and returns ``{"columns": [...], "rows": [...]}``.
Fetch = Callable[[str, dict[str, str]], dict[str, Any]]

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;
background:#f6f7f9}
header{background:#10243e;color:#fff;padding:20px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.8}main{padding:16px 32px 48px;max-width:1400px}
section{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:16px 20px;
margin:16px 0}h2{font-size:17px;margin:0 0 12px}h3{font-size:14px;margin:12px 0 6px;color:#444}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px}
.card{background:#f6f7f9;border-radius:6px;padding:10px 12px}.card b{display:block;font-size:20px}
.card span{color:#555;font-size:12px}
svg.chart{width:100%;max-width:760px;height:auto;font-size:11px;fill:#555}
svg .unit{font-size:10px}.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;
margin-top:4px}.legend i{display:inline-block;width:10px;height:10px;margin-right:5px;
border-radius:2px}table{border-collapse:collapse;font-size:12px;width:100%;margin-top:6px}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}.empty{color:#888;font-style:italic}
.scroll{overflow-x:auto}
"""


def records(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


def table(result: dict[str, Any], limit: int = 25) -> str:
    if not result["rows"]:
        return '<p class="empty">No rows in this range.</p>'

    def cell(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"<td>{escape(cell_text(value))}</td>"
        return (
            f'<td class="n">{value:.6g}</td>'
            if isinstance(value, float)
            else (f'<td class="n">{value}</td>')
        )

    head = "".join(f"<th>{escape(c)}</th>" for c in result["columns"])
    body = "".join(
        "<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in result["rows"][:limit]
    )
    more = len(result["rows"]) - limit
    note = f'<p class="empty">and {more} more rows</p>' if more > 0 else ""
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>{note}'


def when(value: datetime | str) -> datetime:
    """A time column: a datetime from the store, ISO text through the analytics stage's JSON."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def series_by(
    rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], str], value: str
) -> dict[str, list[tuple[datetime, float]]]:
    series: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for row in rows:
        if row[value] is not None:
            series[key(row)].append((when(row["time"]), float(row[value])))
    return dict(series)


def _cards(summary: dict[str, Any]) -> str:
    def money(v: Any) -> str:
        return "-" if v is None else f"${v:,.4f}"

    def ms(v: Any) -> str:
        return "-" if v is None else f"{v:,.0f} ms"

    items = [
        ("requests", f"{summary.get('requests') or 0:,}"),
        ("answered", f"{summary.get('ok') or 0:,}"),
        ("blocked", f"{summary.get('blocked') or 0:,}"),
        ("errors", f"{summary.get('errors') or 0:,}"),
        ("cache hits", f"{summary.get('cache_hits') or 0:,}"),
        (
            "latency p50 / p99",
            f"{ms(summary.get('latency_p50_ms'))} / {ms(summary.get('latency_p99_ms'))}",
        ),
        ("TTFT p50 / p99", f"{ms(summary.get('ttft_p50_ms'))} / {ms(summary.get('ttft_p99_ms'))}"),
        ("token cost", money(summary.get("cost_usd"))),
        ("always strongest", money(summary.get("strongest_cost_usd"))),
        ("savings", "-" if summary.get("savings_pct") is None else f"{summary['savings_pct']}%"),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in items
        )
        + "</div>"
    )


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{''.join(parts)}</section>"


def _figure(title: str, chart: str) -> str:
    return f"<div><h3>{escape(title)}</h3>{chart}</div>"


def build_report(fetch: Fetch, since: str = "24h", tenant: str = "") -> str:
    """The report's HTML for the last ``since`` (``tenant``: one tenant, else all)."""
    scoped = {"since": since, "tenant": tenant}
    ranged = {"since": since}

    def run(name: str, per_tenant: bool = True) -> dict[str, Any]:
        return fetch(name, scoped if per_tenant else ranged)

    summary = (records(run("summary")) or [{}])[0]
    traffic = records(run("traffic"))
    latency = records(run("latency"))
    spend = records(run("spend"))
    safety = run("safety")
    learning_trend = records(run("learning_trend", per_tenant=False))
    feedback_trend = records(run("feedback_trend", per_tenant=False))

    pools = [f"{r['pool']} / {r['model']}" for r in latency]
    safety_by_action: dict[str, float] = defaultdict(float)
    for row in records(safety):
        safety_by_action[row["safety_action"]] += row["requests"]

    def percentiles(prefix: str) -> dict[str, list[float | None]]:
        return {f"p{p}": [r[f"{prefix}_p{p}_ms"] for r in latency] for p in (50, 95, 99)}

    scope = f"tenant {tenant}" if tenant else "all tenants"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        _section("Summary", _cards(summary)),
        _section(
            "Traffic",
            _figure(
                "Requests by decision and model",
                charts.line_chart(
                    series_by(
                        traffic, lambda r: f"{r['decision']} / {r['model'] or '-'}", "requests"
                    ),
                    "requests by decision and model",
                    "requests",
                ),
            ),
            "<h3>Decisions</h3>",
            table(run("decisions")),
        ),
        _section(
            "Latency by pool",
            '<div class="grid">',
            _figure(
                "Time to first token",
                charts.bar_chart(pools, percentiles("ttft"), "TTFT by pool", "ms"),
            ),
            _figure(
                "End to end",
                charts.bar_chart(pools, percentiles("latency"), "latency by pool", "ms"),
            ),
            "</div><h3>Endpoints</h3>",
            table(run("pools")),
        ),
        _section(
            "Cost and savings",
            _figure(
                "Token cost: routed, always the strongest candidate, and GPU",
                charts.line_chart(
                    {
                        label: [(when(r["time"]), r[column]) for r in spend]
                        for label, column in (
                            ("routed", "cost_usd"),
                            ("always strongest", "strongest_cost_usd"),
                            ("GPU", "gpu_cost_usd"),
                        )
                    }
                    if spend
                    else {},
                    "cost over time",
                    "USD",
                ),
            ),
            table(run("cost")),
            "<h3>Semantic cache</h3>",
            table(run("cache")),
            "<h3>Budgets: requests rejected, downgraded or flagged</h3>",
            table(run("budgets")),
            "<h3>Tool selection</h3>",
            table(run("tool_savings")),
        ),
        _section(
            "Safety",
            _figure(
                "Requests by safety action",
                charts.bar_chart(
                    list(safety_by_action),
                    {"requests": list(safety_by_action.values())},
                    "safety actions",
                    "requests",
                ),
            ),
            table(safety),
            "<h3>Screening the answer</h3>",
            table(run("answer_screening")),
        ),
        _section(
            "Feedback and learning",
            '<div class="grid">',
            _figure(
                "Mean feedback score (0-1)",
                charts.line_chart(
                    series_by(feedback_trend, lambda r: "mean score", "mean_score"),
                    "feedback over time",
                    "score",
                ),
            ),
            _figure(
                "Learner: success rate per decision / model",
                charts.line_chart(
                    series_by(learning_trend, lambda r: r["arm"], "success_rate"),
                    "learner weights over time",
                    "rate",
                ),
            ),
            "</div><h3>Feedback by decision and model</h3>",
            table(run("feedback")),
            "<h3>Implicit feedback read from the users' next turns</h3>",
            table(run("implicit_feedback")),
            "<h3>Router state</h3>",
            table(run("learning", per_tenant=False)),
        ),
        _section("Models", table(run("models"))),
        _section("Dead letters", table(run("dlq", per_tenant=False))),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>WRP routing report</title><style>{STYLE}</style></head><body>"
        f"<header><h1>WRP routing report</h1><p>last {escape(since)} · {escape(scope)} · "
        f"generated {generated}</p></header><main>{''.join(body)}</main></body></html>"
    )
