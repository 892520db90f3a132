"""``wrp analytics``, ``wrp dashboards`` and ``wrp report``: named queries, the Grafana
dashboards and the HTML report."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pipeline.analytics.queries import QUERIES
from pipeline.subcommand import command, settings_from


def cmd_analytics(args: argparse.Namespace) -> int:
    from pipeline.analytics.access import AnalyticsUnavailable, query_analytics
    from pipeline.analytics.queries import QueryError
    from pipeline.analytics.render import render

    settings = settings_from(args)
    if args.query == "restore":
        from pipeline.analytics.restore import restore_topics

        published = asyncio.run(restore_topics(settings))
        print(", ".join(f"{topic}: {n} restored" for topic, n in published.items()))
        return 0
    params = {"since": args.since, "tenant": args.tenant or ""}
    if args.query == "request" and not args.request_id:
        print(
            "error: wrp analytics request: give the request's id: wrp analytics request ID",
            file=sys.stderr,
        )
        return 2
    if args.request_id:
        params["request_id"] = args.request_id
    # the store migrates when it opens: here if no analytics stage holds it, else at the stage's
    # start; either way `migrate` then shows the versions in force
    name = "migrations" if args.query == "migrate" else args.query
    try:
        result = query_analytics(settings, name, params)
    except (QueryError, AnalyticsUnavailable) as exc:
        print(f"error: wrp analytics {args.query}: {exc}", file=sys.stderr)
        return 2
    if args.query == "request" and not result["rows"]:
        print(f"error: no request {args.request_id} in analytics", file=sys.stderr)
        return 1
    print(render(result, args.format))
    return 0


def cmd_dashboards(args: argparse.Namespace) -> int:
    from pipeline.analytics.dashboards import DASHBOARDS_DIR, write_dashboards

    written = write_dashboards()
    print(f"wrote {len(written)} files to {DASHBOARDS_DIR} (Grafana JSON and their SQL)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.analytics.access import AnalyticsUnavailable, query_analytics
    from pipeline.analytics.queries import QueryError
    from pipeline.analytics.report import build_report

    settings = settings_from(args)
    try:
        html = build_report(
            lambda name, params: query_analytics(settings, name, params),
            since=args.since,
            tenant=args.tenant or "",
        )
    except (QueryError, AnalyticsUnavailable) as exc:
        print(f"error: wrp report: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(html, encoding="utf-8")
    print(f"wrote {args.out} ({len(html) / 1024:.0f} KiB); open it in any browser, offline")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``analytics``, ``dashboards``, ``report`` to ``wrp``."""
    p = command(
        sub,
        "analytics",
        cmd_analytics,
        "run a named analytics query: "
        + "; ".join(f"{name}: {q.description}" for name, q in QUERIES.items())
        + "; migrate: apply schema migrations and list them; restore: re-seed wrp.router-state "
        "and wrp.cache from their snapshots when they came back empty (a restarted embedded "
        "broker)",
        "wrp analytics summary --since 1h",
        "wrp analytics request 3f2a9c0d1e4b4f6a8b7c6d5e4f3a2b1c",
        "wrp analytics cost --tenant acme --format csv",
    )
    p.add_argument(
        "query",
        nargs="?",
        default="summary",
        choices=[*QUERIES, "migrate", "restore"],
        metavar="QUERY",
        help="a named query, migrate or restore (%(default)s)",
    )
    p.add_argument("request_id", nargs="?", help="request: the request's id")
    p.add_argument("--since", default="24h", help="time range back from now: 15m, 1h, 7d")
    p.add_argument("--tenant", help="one tenant (default: all)")
    p.add_argument(
        "--format", choices=["table", "json", "csv"], default="table", help="output (table)"
    )
    command(
        sub,
        "dashboards",
        cmd_dashboards,
        "write the Grafana dashboards and their SQL to dashboards/ from the named queries",
        "wrp dashboards",
    )
    p = command(
        sub,
        "report",
        cmd_report,
        "write a self-contained HTML report of the analytics",
        "wrp report --out report.html --since 7d",
    )
    p.add_argument(
        "--out", type=Path, default=Path("report.html"), help="HTML file to write (%(default)s)"
    )
    p.add_argument("--since", default="24h", help="time range back from now: 15m, 1h, 7d")
    p.add_argument("--tenant", help="one tenant (default: all)")
