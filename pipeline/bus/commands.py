"""``wrp broker`` and ``wrp topics``: the embedded broker and the catalog's topics."""

from __future__ import annotations

import argparse
import asyncio
import sys

from pipeline.settings import SCHEMAS_DIR
from pipeline.subcommand import command, settings_from


def cmd_broker(args: argparse.Namespace) -> int:
    from pipeline.bus.broker import start_broker

    proc = start_broker(args.port)
    print(f"broker ready on 127.0.0.1:{args.port} (pid {proc.pid}); Ctrl-C stops it", flush=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


def cmd_topics(args: argparse.Namespace) -> int:
    from pipeline.bus.admin import create_topics, describe_topics
    from pipeline.bus.catalog import load_catalog, payload_schemas

    catalog = load_catalog()
    if args.action == "render":
        from pipeline.bus.strimzi import STRIMZI_TOPICS, kafka_topics

        if not args.strimzi:
            print("error: wrp topics render: say what to render: --strimzi", file=sys.stderr)
            return 2
        STRIMZI_TOPICS.parent.mkdir(parents=True, exist_ok=True)
        STRIMZI_TOPICS.write_text(kafka_topics(catalog))
        print(f"wrote {len(catalog.topics)} KafkaTopic resources to {STRIMZI_TOPICS}")
        return 0
    if args.action == "schemas":
        SCHEMAS_DIR.mkdir(parents=True, exist_ok=True)
        for name, text in payload_schemas().items():
            (SCHEMAS_DIR / f"{name}.json").write_text(text)
        print(f"wrote {len(payload_schemas())} schemas to {SCHEMAS_DIR}")
        return 0
    settings = settings_from(args)
    if args.action == "create":
        created = asyncio.run(create_topics(settings.broker, catalog))
        print(f"created {len(created)} topic(s): {', '.join(created) or 'all existed'}")
        return 0
    existing = asyncio.run(describe_topics(settings.broker))
    print(f"{'topic':<22} {'partitions':>10}  {'cleanup':<8} {'retention_ms':>12}  payload")
    for spec in catalog.topics:
        parts = existing.get(spec.name)
        shown = str(parts) if parts is not None else "MISSING"
        print(
            f"{spec.name:<22} {shown:>10}  {spec.cleanup_policy:<8} {spec.retention_ms:>12}  "
            f"{spec.payload}"
        )
    extra = sorted(set(existing) - {t.name for t in catalog.topics})
    if extra:
        print(f"not in the catalog: {', '.join(extra)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``broker``, ``topics`` to ``wrp``."""
    p = command(
        sub,
        "broker",
        cmd_broker,
        "run the embedded Tansu broker on 127.0.0.1",
        "wrp broker --port 9092",
    )
    p.add_argument("--port", type=int, default=9092, help="port to listen on (%(default)s)")
    p = command(
        sub,
        "topics",
        cmd_topics,
        "create or list the catalog's topics, write their JSON Schemas, or render them as "
        "Strimzi KafkaTopic resources (render --strimzi)",
        "wrp topics list",
        "wrp topics render --strimzi",
    )
    p.add_argument(
        "action", choices=["create", "list", "schemas", "render"], help="what to do with the topics"
    )
    p.add_argument("--strimzi", action="store_true", help="render: Strimzi KafkaTopic YAML")
