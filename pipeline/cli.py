"""The ``wrp`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.analytics.queries import QUERIES
from pipeline.settings import DEMO_WORKLOAD, SCHEMAS_DIR, Settings
from pipeline.tracing import LOG_FORMAT, log_request_ids

if TYPE_CHECKING:
    from pipeline.router.labelled import Labelled


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "broker": getattr(args, "broker", None),
        "policy": getattr(args, "policy", None),
        "state_dir": getattr(args, "state_dir", None),
    }
    return Settings.from_env(**overrides)


# --- broker and topics -----------------------------------------------------------------------


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
    settings = _settings(args)
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


# --- stages, simulators, the stack -----------------------------------------------------------


def cmd_stage(args: argparse.Namespace) -> int:
    from pipeline.bus.broker import port_in_use

    settings = _settings(args)
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


def cmd_sim_fleet(args: argparse.Namespace) -> int:
    from pipeline.policy import Endpoint, PolicyError, Pool, SelectionConfig, load_policy
    from pipeline.pool import fleet, traces
    from pipeline.pool.gpu import MODELS

    if not args.trace:
        print(
            "error: wrp sim fleet needs --trace (azure-conv, azure-code or mooncake)",
            file=sys.stderr,
        )
        return 2
    try:
        requests = traces.load_trace(args.trace, args.limit)
        if args.pool:
            pool = load_policy(_settings(args).policy).pool(args.pool)
            model = pool.simulator.model if pool.simulator else args.engine_model
        else:
            selection = SelectionConfig(policy=args.selection, boundary_tokens=args.boundary_tokens)
            pool = Pool(
                name="fleet",
                gpus_per_endpoint=MODELS[args.engine_model].tp,
                gpu=args.gpu,
                endpoints=[Endpoint(url="http://sim-fleet")],
                selection=selection,
            )
            model = args.engine_model
    except (traces.UnknownTrace, PolicyError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.rate:
        requests = traces.rescale(requests, rate_per_s=args.rate)
    if args.endpoints:
        pool = fleet.endpoint_urls(pool, args.endpoints)
    print(f"trace {args.trace}: {traces.summarise(requests).render()}", flush=True)
    print(
        f"pool: {len(pool.endpoints)} x {pool.gpu} ({pool.gpus_per_endpoint} GPU each) serving "
        f"{model}, selection {pool.selection.policy}, SLO p99 TTFT <= {args.slo_ttft}s",
        flush=True,
    )
    if args.smallest:
        report = fleet.smallest_fleet(
            requests,
            pool,
            model,
            args.slo_ttft,
            args.max_endpoints,
            progress=lambda r: print(
                f"  {r.endpoints:>3} endpoints: p99 TTFT {r.ttft_p99_s:.3f}s", flush=True
            ),
        )
        if report is None:
            print(f"no fleet of up to {args.max_endpoints} endpoints meets the SLO")
            return 1
    else:
        report = fleet.simulate(requests, pool, model, args.slo_ttft)
    print(json.dumps(report.row(), indent=2) if args.json else report.render())
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from pipeline.pool.sim_server import serve_policy_pools, serve_single

    if args.mode == "fleet":
        return cmd_sim_fleet(args)
    if args.policy:
        asyncio.run(serve_policy_pools(_settings(args).policy, no_latency=args.no_latency))
    else:
        asyncio.run(serve_single(args))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from pipeline.stack import Stack
    from pipeline.supervisor import BrokerExited, Supervisor

    settings = _settings(args)
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


# --- clients ---------------------------------------------------------------------------------


def cmd_publish(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.bus.admission import describe_validation_error
    from pipeline.client import replay, response_text
    from pipeline.envelope import ChatRequest, RequestSection

    settings = _settings(args)
    section = {"session_id": args.session} | ({"tenant": args.tenant} if args.tenant else {})
    try:
        if args.text:
            body = ChatRequest(model=args.model, messages=[{"role": "user", "content": args.text}])
            request = RequestSection(body=body, **section)
        else:
            data = json.loads(sys.stdin.read())
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            request = (
                RequestSection.model_validate(data | {k: v for k, v in section.items() if v})
                if "body" in data
                else RequestSection(body=ChatRequest.model_validate(data), **section)
            )
    except ValidationError as exc:
        print(f"error: wrp publish: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:  # JSONDecodeError is one
        print(f"error: wrp publish: stdin is not an OpenAI request body: {exc}", file=sys.stderr)
        return 2
    if args.stream:
        from pipeline.client import stream_one

        def show(text: str) -> None:
            print(text, end="", flush=True)

        env = asyncio.run(stream_one(settings.broker, request, args.timeout, show))
        print()
    else:
        answers = asyncio.run(replay(settings.broker, [request], 0, args.timeout, label="publish"))
        env = answers.get(request.request_id)
    if env is None:
        print(f"no response for {request.request_id} within {args.timeout}s", file=sys.stderr)
        return 1
    if args.json:
        print(env.model_dump_json(indent=2, exclude={"signals": {"embedding"}}))
    else:
        decision = env.decision
        route = f"{decision.decision} -> {decision.model} @ {decision.pool}" if decision else "-"
        print(
            f"request  {request.request_id}\nstatus   {env.result.status if env.result else '-'}"
            f"\nroute    {route}\nanswer   {response_text(env)}"
        )
    return 0 if env.result and env.result.status != "error" else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.client import load_workload, replay
    from pipeline.pool import traces

    settings = _settings(args)
    schedule = None
    if args.trace:
        try:
            traced = traces.load_trace(args.trace, args.limit)
        except traces.UnknownTrace as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        traced = traces.rescale(traced, speed=args.speed)
        print(f"trace {args.trace} at speed {args.speed:g}\n{traces.summarise(traced).render()}")
        run = f"{time.time_ns():x}"  # a fresh id prefix: not a retry of an earlier replay
        requests = [traces.trace_request_section(r, run=run) for r in traced]
        schedule = [r.arrival_s for r in traced]
    else:
        requests = load_workload(Path(args.file))[: args.limit]
    answers = asyncio.run(
        replay(settings.broker, requests, args.rate, args.timeout, schedule=schedule)
    )
    statuses: dict[str, int] = {}
    for env in answers.values():
        status = env.result.status if env.result else "unknown"
        statuses[status] = statuses.get(status, 0) + 1
    print(
        f"{len(answers)}/{len(requests)} answered: "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    )
    return 0 if len(answers) == len(requests) else 1


def cmd_feedback(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.bus.admission import describe_validation_error
    from pipeline.client import send_feedback, start_producer
    from pipeline.envelope import VERDICT_REWARD, Feedback

    settings = _settings(args)
    judgement: dict[str, object] = {}
    if args.rating is not None:
        judgement["rating"] = args.rating
    if args.judgement in ("up", "down"):
        judgement["thumbs"] = args.judgement
    elif args.judgement in VERDICT_REWARD:
        judgement["verdict"] = args.judgement
    elif args.judgement is not None:
        try:
            judgement["score"] = float(args.judgement)
        except ValueError:
            print(
                f"error: wrp feedback: {args.judgement!r} is not a judgement; give a score "
                f"0..1, up, down, one of {', '.join(VERDICT_REWARD)}, or --rating 1..5",
                file=sys.stderr,
            )
            return 2
    try:
        feedback = Feedback(
            request_id=args.request_id, source=args.source, comment=args.comment, **judgement
        )
    except ValidationError as exc:
        print(f"error: wrp feedback: {describe_validation_error(exc)}", file=sys.stderr)
        return 2

    async def send() -> None:
        producer = await start_producer(settings.broker)
        try:
            await send_feedback(producer, feedback)
        finally:
            await producer.stop()

    asyncio.run(send())
    print(f"feedback (reward {feedback.reward:g}) for {args.request_id} sent")
    return 0


def cmd_analytics(args: argparse.Namespace) -> int:
    from pipeline.analytics.access import AnalyticsUnavailable, query_analytics
    from pipeline.analytics.queries import QueryError
    from pipeline.analytics.render import render

    settings = _settings(args)
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


def cmd_deploy(args: argparse.Namespace) -> int:
    from pipeline.bus.catalog import load_catalog
    from pipeline.manifests import rendered_manifests

    files = rendered_manifests(load_catalog())
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {', '.join(path.name for path in files)} to deploy/base")
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

    settings = _settings(args)
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


def cmd_policy(args: argparse.Namespace) -> int:
    """Print a policy file's errors, then its warnings, as ``path:line: severity: message``;
    2 when there is an error, else an ok line and 0."""
    from pipeline.policy import load_policy
    from pipeline.policy_check import check_policy

    findings = check_policy(args.file)
    for finding in findings:  # errors come first
        print(finding.format(args.file))
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if errors:
        print(f"{args.file}: {errors} error(s), {warnings} warning(s)")
        return 2
    policy = load_policy(Path(args.file))
    print(
        f"{args.file}: ok ({len(policy.models)} models, {len(policy.pools)} pools, "
        f"{len(policy.router.decisions) + 1} decisions"
        + (f"; {warnings} warning(s))" if warnings else ")")
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    return run_demo(_settings(args), Path(args.workload), args.rate)


def cmd_gateway(args: argparse.Namespace) -> int:
    from pipeline.gateway.keys import ApiKeys, KeysError, new_key

    settings = _settings(args)
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


def cmd_bench(args: argparse.Namespace) -> int:
    if args.target == "classify":
        from pipeline.bench_classify import run_classify_bench

        report = run_classify_bench(_settings(args), args.n, args.threads)
    elif args.target == "gateway":
        from pipeline.bench_gateway import run_gateway_bench

        report = run_gateway_bench(_settings(args), args.n)
    elif args.target == "envelope":
        from pipeline.bench_envelope import run_envelope_bench

        report = run_envelope_bench(_settings(args), args.saturate, args.duration)
    elif args.target == "analytics":
        from pipeline.bench_analytics import run_analytics_bench

        report = run_analytics_bench(_settings(args), args.rows, args.total, repeat=5)
    elif args.target == "budgets":
        from pipeline.bench_budgets import run_budgets_bench

        report = run_budgets_bench(_settings(args), args.n)
    elif args.target == "answers":
        from pipeline.bench_answers import run_answers_bench

        report = run_answers_bench(_settings(args), args.chunks_per_read)
    elif args.target == "pools":
        from pipeline.bench_pools import run_pools_bench

        run_pools_bench(_settings(args).state_dir / "bench", args.limit)
        return 0
    else:
        from pipeline.bench import run_pipeline_bench

        report = run_pipeline_bench(_settings(args), args.rate, args.duration)
    print(json.dumps(report, indent=2))
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    from pipeline.drills.run import DRILLS, run_drills

    names = list(DRILLS) if args.name == "all" else [args.name]
    report = run_drills(
        _settings(args), names, args.count, args.restarts, args.per_round, args.seed
    )
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


def cmd_router(args: argparse.Namespace) -> int:
    from pipeline.router.labelled import LabelsError, read_labelled

    settings = _settings(args)
    try:
        if args.action == "train" and args.from_analytics:
            data = _analytics_labels(settings, args)
        elif args.labels is None:
            raise LabelsError("give a labels file (JSON lines), or --from-analytics to train")
        else:
            data = read_labelled(args.labels)
    except (OSError, LabelsError) as exc:
        print(f"error: wrp router {args.action}: {exc}", file=sys.stderr)
        return 2
    if args.action == "train":
        return _router_train(settings, data, args)
    from pipeline.models.encoder import load_encoder
    from pipeline.router.labelled import build_index

    encoder = load_encoder(
        settings.model_dir, settings.encoder_threads, settings.encoder_max_tokens
    )
    print(f"embedding {len(data.texts)} labelled requests with {encoder.name} ...", file=sys.stderr)
    index = build_index(data, encoder)
    out = args.out or Path("knn-index.npz")
    index.save(out)
    print(
        f"wrote {out}: {len(data.texts)} requests x {len(index.models)} models "
        f"({', '.join(index.models)}); set router.knn.index to it"
    )
    return 0


def _analytics_labels(settings: Settings, args: argparse.Namespace) -> Labelled:
    from pipeline.analytics.access import AnalyticsUnavailable, query_analytics
    from pipeline.analytics.queries import QueryError
    from pipeline.router.labelled import LabelsError, from_analytics

    params = {"since": args.since, "tenant": args.tenant or ""}
    try:
        result = query_analytics(settings, "labelled", params)
    except (QueryError, AnalyticsUnavailable) as exc:
        raise LabelsError(str(exc)) from None
    data, skipped = from_analytics(result["columns"], result["rows"])
    print(
        f"{len(data.texts)} distinct requests with feedback or a failed outcome in the last "
        f"{args.since}"
        + (f" ({skipped} stored rows could not be read: skipped)" if skipped else ""),
        file=sys.stderr,
    )
    return data


def _router_train(settings: Settings, data: Labelled, args: argparse.Namespace) -> int:
    from pipeline.evaluation.predictor_training import render_training
    from pipeline.evaluation.routing_crossfit import load_prices, train_labelled
    from pipeline.evaluation.routing_replay import Signaller
    from pipeline.evaluation.run import _cache
    from pipeline.policy import load_policy

    try:
        prices = load_prices(args.prices) if args.prices else None
        if prices is not None and (missing := set(data.models) - set(prices)):
            raise ValueError(f"{args.prices}: no price for {', '.join(sorted(missing))}")
        signaller = Signaller(load_policy(settings.policy), _cache(settings))
        predictor, report = train_labelled(data, "router-train", signaller, prices)
    except (OSError, ValueError) as exc:
        print(f"error: wrp router train: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("predictor.npz")
    predictor.save(out)
    print(json.dumps(report, indent=2) if args.json else render_training(report))
    print(f"wrote {out}; set router.predictor.path to it and a decision's strategy to predicted")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from pipeline.evaluation.run import SAFETY_HEADS, SIGNAL_HEADS, train_heads

    names = [*SIGNAL_HEADS, *SAFETY_HEADS] if args.name == "all" else [args.name]
    train_heads(_settings(args), names)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.target == "tools":
        return _eval_tools(args)
    if args.target == "implicit":
        from pipeline.evaluation import implicit_eval
        from pipeline.evaluation.run import _cache
        from pipeline.policy import load_policy

        settings = _settings(args)
        config = load_policy(settings.policy).router.learning.implicit
        report = implicit_eval.eval_implicit(_cache(settings), config)
        print(json.dumps(report, indent=2) if args.json else implicit_eval.render(report))
        return 0
    if args.target == "routing" and args.data:
        return _eval_routing_data(args)
    if args.target == "sticky":
        from pipeline.evaluation import sticky_replay
        from pipeline.evaluation.run import _cache
        from pipeline.policy import load_policy

        settings = _settings(args)
        report = sticky_replay.eval_sticky(
            load_policy(settings.policy), _cache(settings), args.out or settings.state_dir / "eval"
        )
        print(json.dumps(report, indent=2) if args.json else sticky_replay.render(report))
        return 0
    if args.target == "routing":
        from pipeline.evaluation import routing

        settings = _settings(args)
        report = routing.eval_routing(settings, args.out or settings.state_dir / "eval")
        print(json.dumps(report, indent=2) if args.json else routing.render(report))
        return 0
    if args.target == "answers":
        from pipeline.evaluation import answers_eval, datasets

        settings = _settings(args)
        report = answers_eval.eval_answers(settings.policy, datasets.data_dir())
        print(json.dumps(report, indent=2) if args.json else answers_eval.render(report))
        return 0
    from pipeline.evaluation.run import eval_safety, eval_signals, render

    report = (eval_signals if args.target == "signals" else eval_safety)(_settings(args))
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def _eval_tools(args: argparse.Namespace) -> int:
    from pipeline.evaluation import tool_selection
    from pipeline.evaluation.datasets import data_dir
    from pipeline.models.encoder import load_encoder
    from pipeline.policy import load_policy

    settings = _settings(args)
    policy = load_policy(settings.policy)
    encoder = load_encoder(
        settings.model_dir,
        settings.encoder_threads,
        settings.encoder_max_tokens,
        settings.encoder_batch,
    )
    report = tool_selection.eval_tools(data_dir(), encoder, policy, tune=args.tune)
    written = tool_selection.write(report, args.out or settings.state_dir / "eval")
    print(json.dumps(report, indent=2) if args.json else tool_selection.render(report))
    print(f"wrote {written}")
    return 0


def _eval_routing_data(args: argparse.Namespace) -> int:
    import tempfile

    from pipeline.evaluation import routing_crossfit
    from pipeline.evaluation.routing_replay import Signaller
    from pipeline.evaluation.run import _cache
    from pipeline.policy import load_policy
    from pipeline.router.labelled import LabelsError, read_labelled

    settings = _settings(args)
    try:
        if args.folds < 2:
            raise LabelsError(f"--folds {args.folds}: cross-fitting needs at least 2 folds")
        data = read_labelled(args.data)
        prices = routing_crossfit.load_prices(args.prices) if args.prices else None
        if prices is not None and (missing := set(data.models) - set(prices)):
            raise LabelsError(f"{args.prices}: no price for {', '.join(sorted(missing))}")
        policy = load_policy(settings.policy)
        with tempfile.TemporaryDirectory() as tmp:
            report = routing_crossfit.eval_labelled(
                data,
                args.data.stem,
                Signaller(policy, _cache(settings)),
                policy.signals,
                Path(tmp),
                prices,
                args.folds,
            )
    except (OSError, ValueError) as exc:
        print(f"error: wrp eval routing: {exc}", file=sys.stderr)
        return 2
    out = args.out or settings.state_dir / "eval"
    report["written"] = routing_crossfit.write(report, out, f"routing-{args.data.stem}")
    print(json.dumps(report, indent=2) if args.json else routing_crossfit.render(report))
    print(f"wrote {', '.join(report['written'])}")
    return 0


# --- argument parsing ------------------------------------------------------------------------


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps each line of prose on its own and keeps indented lines (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n".join(
            indent + line if not line or line.startswith(" ") else fill(line, width, indent)
            for line in text.splitlines()
        )


def _examples(*commands: str) -> str:
    """An epilog: the commands, one an indented line."""
    return "example:\n" + "\n".join(f"  {c}" for c in commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wrp",
        description="Kafka-native LLM request router",
        epilog=_examples("wrp up", 'wrp publish "Write a haiku about Kafka"', "wrp up --help"),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn, help_text: str, *examples: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_examples(*examples),
            formatter_class=_HelpFormatter,
        )
        p.add_argument("--broker", help="bootstrap servers (WRP_BROKER)")
        p.add_argument("--policy", type=Path, help="policy file (WRP_POLICY)")
        p.add_argument("--state-dir", type=Path, help="local state directory (WRP_STATE_DIR)")
        p.set_defaults(fn=fn)
        return p

    p = command(
        "broker", cmd_broker, "run the embedded Tansu broker on 127.0.0.1", "wrp broker --port 9092"
    )
    p.add_argument("--port", type=int, default=9092, help="port to listen on (%(default)s)")
    p = command(
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
    p = command(
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
    p = command(
        "sim",
        cmd_sim,
        "serve simulated OpenAI-compatible pools: with --policy every "
        "simulated endpoint of the policy (what `wrp up` does), else one endpoint; "
        "`wrp sim fleet --trace T`: what-if a pool serves a trace (no sockets, virtual time)",
        "wrp sim --policy policies/default.yaml",
        "wrp sim fleet --trace azure-conv --endpoints 8 --selection context_length",
    )
    p.add_argument(
        "mode",
        nargs="?",
        choices=["serve", "fleet"],
        default="serve",
        help="serve pools over HTTP, or simulate a fleet on a trace (%(default)s)",
    )
    p.add_argument("--trace", help="fleet: azure-conv, azure-code or mooncake")
    p.add_argument("--limit", type=int, default=2000, help="fleet: first N requests of the trace")
    p.add_argument("--rate", type=float, help="fleet: scale arrivals to this mean req/s")
    p.add_argument(
        "--pool", help="fleet: take the pool (GPU, endpoints, selection) from the policy"
    )
    p.add_argument("--endpoints", type=int, help="fleet: number of endpoints")
    p.add_argument(
        "--selection",
        default="least_outstanding",
        choices=[
            "round_robin",
            "least_outstanding",
            "power_of_two",
            "prefix_affinity",
            "kv_aware",
            "context_length",
        ],
        help="fleet: endpoint selection policy (without --pool)",
    )
    p.add_argument("--boundary-tokens", type=int, help="fleet: context_length split")
    p.add_argument("--slo-ttft", type=float, default=1.0, help="fleet: p99 TTFT SLO, seconds")
    p.add_argument("--smallest", action="store_true", help="fleet: search the fewest endpoints")
    p.add_argument(
        "--max-endpoints", type=int, default=64, help="fleet --smallest: search up to this many"
    )
    p.add_argument("--json", action="store_true", help="fleet: the report as JSON")
    p.add_argument("--no-latency", action="store_true", help="answer at once (benchmarks)")
    p.add_argument("--port", type=int, default=8101, help="serve: port (%(default)s)")
    p.add_argument("--model", action="append", help="served model name (repeatable)")
    p.add_argument(
        "--max-model-len", type=int, default=32768, help="context length in tokens (%(default)s)"
    )
    p.add_argument(
        "--gpu", default="A100", choices=["A10G", "A100", "H100"], help="simulated GPU (A100)"
    )
    p.add_argument(
        "--engine-model",
        default="llama-3.1-8b",
        choices=["llama-3.1-8b", "llama-3.1-70b"],
        help="size and KV shape of the simulated model",
    )
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    p.add_argument(
        "--max-num-seqs", type=int, default=256, help="concurrent sequences per endpoint (256)"
    )
    p.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="answer 401 unless called with the key in env var NAME (as vLLM's --api-key)",
    )
    command(
        "up",
        cmd_up,
        "start broker, topics, simulators, every stage and the gateway",
        "wrp up",
        "wrp up --policy my-policy.yaml --state-dir /tmp/wrp",
    )
    p = command(
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
    p = command(
        "publish",
        cmd_publish,
        "send one request and print its response",
        'wrp publish "Write a Python function that reverses a list" --tenant acme',
        """echo '{"messages":[{"role":"user","content":"hi"}]}' | wrp publish --stream""",
    )
    p.add_argument("text", nargs="?", help="user message (else an OpenAI body as JSON on stdin)")
    p.add_argument("--model", default="auto", help="a model of the policy, or auto (%(default)s)")
    p.add_argument("--tenant", help="the tenant the request is for (default)")
    p.add_argument("--session", help="session id: the turns of one conversation share it")
    p.add_argument(
        "--timeout", type=float, default=60, help="seconds to wait for the answer (%(default)s)"
    )
    p.add_argument("--json", action="store_true", help="print the whole envelope")
    p.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    p = command(
        "replay",
        cmd_replay,
        "publish a workload file (JSON lines) or a serving trace's requests and await answers",
        "wrp replay workloads/demo.jsonl --rate 20",
        "wrp replay --trace mooncake --speed 10 --limit 500",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="JSON lines, one request (or OpenAI body) each")
    source.add_argument(
        "--trace", metavar="NAME", help="azure-conv, azure-code or mooncake, at trace times"
    )
    p.add_argument("--rate", type=float, default=20, help="file requests per second (0 = max)")
    p.add_argument("--speed", type=float, default=1.0, help="trace time compression (2 = 2x)")
    p.add_argument("--limit", type=int, help="only the first N requests")
    p.add_argument(
        "--timeout", type=float, default=120, help="seconds to wait for the answers (%(default)s)"
    )
    p = command(
        "feedback",
        cmd_feedback,
        "send feedback for a request",
        "wrp feedback 3f2a9c0d1e4b4f6a8b7c6d5e4f3a2b1c up",
        "wrp feedback 3f2a9c0d1e4b4f6a8b7c6d5e4f3a2b1c --rating 4 --comment 'good answer'",
    )
    p.add_argument("request_id", help="the request's id, as `wrp publish` prints it")
    p.add_argument(
        "judgement",
        nargs="?",
        help="a score 0 (bad) .. 1 (good), up, down, or a verdict: good_fit, underpowered, "
        "overprovisioned, failed",
    )
    p.add_argument("--rating", type=int, help="1-5 stars instead of a judgement")
    p.add_argument("--source", default="user", help="who judges: user, judge, ... (user)")
    p.add_argument("--comment", help="free text kept with the feedback")
    p = command(
        "router",
        cmd_router,
        "index: build the kNN index of labelled requests; train: fit the success predictor "
        "(strategy predicted) on labelled requests or on the feedback and outcomes in analytics",
        "wrp router index labels.jsonl --out index.npz",
        "wrp router train --from-analytics --since 30d",
    )
    p.add_argument("action", choices=["index", "train"], help="build the index or train")
    p.add_argument(
        "labels",
        type=Path,
        nargs="?",
        help="JSON lines: {text, labels: {model: score 0..1}, optional cost, tokens per model}",
    )
    p.add_argument("--out", type=Path, help="knn-index.npz / predictor.npz")
    p.add_argument(
        "--from-analytics",
        action="store_true",
        help="train: label requests with their feedback (a failed call scores 0) from ClickHouse",
    )
    p.add_argument("--since", default="30d", help="--from-analytics: how far back (30d)")
    p.add_argument("--tenant", help="--from-analytics: one tenant's traffic (default: all)")
    p.add_argument("--prices", type=Path, help="train: YAML {model: {input_per_mtok, ...}}")
    p.add_argument("--json", action="store_true", help="train: the report as JSON")
    p = command(
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
    p = command(
        "deploy",
        cmd_deploy,
        "render the generated Kubernetes manifests under deploy/base (stage Deployments, KEDA "
        "ScaledObjects, gateway, Strimzi topics, the policy ConfigMap's file)",
        "wrp deploy render",
    )
    p.add_argument("action", choices=["render"], help="write the manifests")
    command(
        "dashboards",
        cmd_dashboards,
        "write the Grafana dashboards and their SQL to dashboards/ from the named queries",
        "wrp dashboards",
    )
    p = command(
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
    p = command(
        "policy",
        cmd_policy,
        "check a policy file: validation errors and routing mistakes (unfit context "
        "lengths, shadowed or overlapping decisions), each with its line; exit 2 on an error",
        "wrp policy check policies/default.yaml",
    )
    p.add_argument("action", choices=["check"], help="check the file")
    p.add_argument("file", help="the policy YAML file")
    p = command(
        "demo",
        cmd_demo,
        "run the whole pipeline on a sample workload and report",
        "wrp demo --rate 25",
    )
    p.add_argument("--workload", default=str(DEMO_WORKLOAD), help="JSON lines of requests")
    p.add_argument("--rate", type=float, default=25, help="requests per second (%(default)s)")
    p = command(
        "bench",
        cmd_bench,
        "pipeline: the whole pipeline at steady offered rates; classify: signals + safety logic "
        "in one process against a bare onnxruntime loop on the same texts",
        "wrp bench pipeline --rate 25",
        "wrp bench classify -n 2000",
    )
    p.add_argument(
        "target",
        help="what to measure",
        choices=[
            "envelope",
            "pipeline",
            "classify",
            "pools",
            "gateway",
            "analytics",
            "budgets",
            "answers",
        ],
    )
    p.add_argument(
        "--chunks-per-read",
        type=int,
        default=1,
        help="answers: chunk events the relay gets at once (1: a read per token)",
    )
    p.add_argument(
        "--saturate", type=int, default=1500, help="envelope: requests published at once"
    )
    p.add_argument("--limit", type=int, default=2000, help="pools: requests per trace")
    p.add_argument(
        "--rows", type=int, default=100_000, help="analytics: envelopes through the sink"
    )
    p.add_argument("--total", type=int, default=1_000_000, help="analytics: table rows to query")
    p.add_argument("--rate", type=float, default=20, help="pipeline: offered requests/s")
    p.add_argument(
        "--duration", type=float, default=20, help="pipeline, envelope: seconds per rate"
    )
    p.add_argument(
        "-n",
        type=int,
        default=2000,
        help="classify: prompts; gateway: requests per path; budgets: sequential requests "
        "(use ~100)",
    )
    p.add_argument("--threads", type=int, default=2, help="classify: ONNX intra-op threads")
    p = command(
        "drill",
        cmd_drill,
        "trust drills on an embedded stack of their own: fuzz (generated and mutated records "
        "straight onto wrp.requests, each accounted for), restart (stop and start the stack "
        "with traffic in between, every request counted once, learning and cache restored), pii "
        "(PII down every path, then ClickHouse, logs and the report searched for it), or all",
        "wrp drill fuzz --count 1000",
        "wrp drill all",
    )
    p.add_argument("name", choices=["fuzz", "restart", "pii", "all"], help="which drill")
    p.add_argument("--count", type=int, default=10_000, help="fuzz: records")
    p.add_argument("--seed", type=int, default=0, help="fuzz: generator seed")
    p.add_argument("--restarts", type=int, default=3, help="restart: stops and starts")
    p.add_argument("--per-round", type=int, default=40, help="restart: requests per round")
    p = command(
        "models",
        cmd_models,
        "train a head from ../shared/data and write its model card",
        "wrp models train all",
    )
    p.add_argument("action", choices=["train"], help="train a head")
    p.add_argument(
        "name", choices=["domain", "complexity", "safety", "moderation", "all"], help="which head"
    )
    p = command(
        "eval",
        cmd_eval,
        "held-out metrics of the signal or safety models, routing, sticky sessions, tool "
        "selection, the implicit-feedback detector or answer screening",
        "wrp eval signals",
        "wrp eval routing --data my-labels.jsonl --folds 5",
    )
    p.add_argument(
        "target",
        choices=["signals", "safety", "routing", "sticky", "tools", "implicit", "answers"],
        help="what to evaluate",
    )
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument(
        "--out", type=Path, help="routing, sticky, tools: output directory (<state-dir>/eval)"
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="tools: the tuning grid on the tune rows instead of the report on the test rows",
    )
    p.add_argument(
        "--data",
        type=Path,
        help="routing: evaluate on this labelled set instead (JSON lines as for wrp router "
        "index: text, labels per model 0..1, optional cost or tokens), cross-fitted",
    )
    p.add_argument(
        "--prices",
        type=Path,
        help="routing --data: YAML {model: {input_per_mtok, "
        "output_per_mtok}} to cost the file's tokens",
    )
    p.add_argument("--folds", type=int, default=5, help="routing --data: cross-fitting folds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT)
    log_request_ids()
    for noisy in ("aiokafka", "httpx", "faust", "mode", "uvicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from pipeline.bus.broker import BrokerError
    from pipeline.bus.runner import MissingTopics
    from pipeline.evaluation.datasets import DataMissing
    from pipeline.models.encoder import ModelNotFound
    from pipeline.models.heads import HeadMissing
    from pipeline.policy import PolicyError
    from pipeline.stack import StackError

    if args.command in ("publish", "replay", "feedback"):
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # main names an unreachable broker
    try:
        return args.fn(args)
    except PolicyError as exc:
        problems = exc.problems
        print(
            f"error: {exc}"
            if len(problems) > 1
            else f"error: {exc.path}: invalid policy: {problems[0]}",
            file=sys.stderr,
        )
        return 2
    except (DataMissing, ModelNotFound, HeadMissing, BrokerError, StackError, MissingTopics) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KafkaConnectionError:  # its message lists the resolved addresses: not for people
        broker = getattr(args, "broker", None) or Settings.from_env().broker
        print(
            f"error: cannot reach the Kafka broker at {broker} (set WRP_BROKER or --broker; "
            "`wrp up` starts an embedded one)",
            file=sys.stderr,
        )
        return 2
    except KafkaError as exc:
        print(f"error: the Kafka broker refused: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file named on the command line: missing, unreadable, no directory
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
