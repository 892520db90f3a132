"""``wrp gateway``: serve the OpenAI-compatible gateway, or make an API key."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pipeline.subcommand import command, settings_from


def cmd_gateway(args: argparse.Namespace) -> int:
    from pipeline.api_keys import ApiKeys, KeysError, new_key

    settings = settings_from(args)
    try:
        if args.action == "key":
            if not args.tenant:
                print("error: wrp gateway key TENANT", file=sys.stderr)
                return 2
            path = args.file or settings.api_keys_path
            key = new_key(args.tenant, path)
            print(f"{key}\n(shown once; only its SHA-256 is kept, in {path})")
            return 0
        keys = ApiKeys.from_settings(settings)
        keys.require()
    except KeysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pipeline.gateway.app import serve_gateway

    asyncio.run(serve_gateway(settings, keys, args.host or settings.http_host))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``gateway`` to ``wrp``."""
    p = command(
        sub,
        "gateway",
        cmd_gateway,
        "serve the OpenAI-compatible gateway (WRP_GATEWAY_PORT), or `key TENANT` to create an "
        "API key (its SHA-256 goes to WRP_API_KEYS_FILE)",
        "wrp gateway",
        "wrp gateway key acme",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["serve", "key"],
        default="serve",
        help="serve the gateway, or make an API key (%(default)s)",
    )
    p.add_argument("tenant", nargs="?", help="key: the tenant the new key belongs to")
    p.add_argument("--file", type=Path, help="key: where to append the digest")
    p.add_argument("--host", help="serve: address to bind (default WRP_HTTP_HOST, 127.0.0.1)")
