"""``wrp publish`` and ``wrp feedback``: one request and its feedback, over Kafka."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pipeline.subcommand import command, settings_from


def cmd_publish(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.bus.admission import describe_validation_error
    from pipeline.client import replay, response_text
    from pipeline.envelope import ChatRequest, RequestSection

    settings = settings_from(args)
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


def cmd_feedback(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.bus.admission import describe_validation_error
    from pipeline.client import send_feedback, start_producer
    from pipeline.envelope import VERDICT_REWARD, Feedback

    settings = settings_from(args)
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``publish``, ``feedback`` to ``wrp``."""
    p = command(
        sub,
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
        sub,
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
