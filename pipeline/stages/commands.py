"""``wrp stage``, ``wrp up`` and ``wrp deploy``: run one stage (or fused stages), the whole
embedded stack, or render the manifests that deploy the stages."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

from pipeline.subcommand import command, settings_from


def cmd_stage(args: argparse.Namespace) -> int:
    from pipeline.bus.broker import port_in_use

    settings = settings_from(args)
    try:
        port = args.port or settings.stage_port(args.name)
    except KeyError:
        port = None  # an unknown stage: build_stage says which exist
    if port is not None and port_in_use(port):
        print(
            f"error: port {port} for the {args.name} stage's /healthz and /metrics is in use "
            "(another `wrp stage` or `wrp up`?): pass --port or set WRP_METRICS_PORT_BASE",
            file=sys.stderr,
        )
        return 2
    if args.name == "learner":
        from pipeline.stages.learner import run_learner

        run_learner(settings, args.port)
        return 0
    from pipeline.bus.runner import StageRunner
    from pipeline.stages.registry import build_stage

    try:
        stage = build_stage(args.name, settings)
    except ValueError as exc:
        print(f"error: wrp stage: {exc}", file=sys.stderr)
        return 2
    runner = StageRunner(stage, settings, args.port)
    asyncio.run(runner.run())
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from pipeline.stack import Stack
    from pipeline.supervisor import BrokerExited, Supervisor

    settings = settings_from(args)
    stack = Stack(settings, broker_port=int(settings.broker.rsplit(":", 1)[1]))
    print("starting the embedded stack ...", flush=True)
    code = 0
    try:
        stack.start()
        print(stack.describe())
        print("\nready: try `wrp publish 'hello'`; Ctrl-C stops everything", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        supervisor = Supervisor(stack)
        while True:
            for event in supervisor.check():
                print(f"{time.strftime('%H:%M:%S')} {event}", flush=True)
            time.sleep(1)
    except KeyboardInterrupt:
        print(
            "\nstopping: the stages finish what is on their topics (up to a minute), commit and "
            "exit ...",
            flush=True,
        )
    except BrokerExited as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the drain
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()
    print("stopped")
    return code


def cmd_deploy(args: argparse.Namespace) -> int:
    from pipeline.bus.catalog import load_catalog
    from pipeline.manifests import rendered_manifests

    files = rendered_manifests(load_catalog())
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {', '.join(path.name for path in files)} to deploy/base")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``stage``, ``up``, ``deploy`` to ``wrp``."""
    p = command(
        sub,
        "stage",
        cmd_stage,
        "run one stage: signals, safety, router, dispatch, learner or analytics; or consecutive "
        "batch stages fused in one process without the Kafka hops between them, e.g. "
        "signals+safety+router (run it instead of those stages)",
        "wrp stage router --port 9201",
        "wrp stage signals+safety+router+dispatch",
    )
    p.add_argument("name", metavar="NAME", help="a stage, or stages joined by +")
    p.add_argument("--port", type=int, help="health/metrics port (default from settings)")
    command(
        sub,
        "up",
        cmd_up,
        "start broker, topics, simulators, every stage and the gateway",
        "wrp up",
        "wrp up --policy my-policy.yaml --state-dir /tmp/wrp",
    )
    p = command(
        sub,
        "deploy",
        cmd_deploy,
        "render the generated Kubernetes manifests under deploy/base (stage Deployments, KEDA "
        "ScaledObjects, gateway, Strimzi topics, the policy ConfigMap's file)",
        "wrp deploy render",
    )
    p.add_argument("action", choices=["render"], help="write the manifests")
