"""The ``wrp`` command: a dispatcher. Each wing registers its own subcommands (a ``register``
function in its ``commands`` module); the first error a command raises that people can act on is
printed as one line."""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline import client_commands, policy_commands
from pipeline.analytics import commands as analytics
from pipeline.bench import commands as bench
from pipeline.bus import commands as bus
from pipeline.demo import commands as demo
from pipeline.drills import commands as drills
from pipeline.evaluation import commands as evaluation
from pipeline.gateway import commands as gateway
from pipeline.pool.sim import commands as sim
from pipeline.settings import DataMissing, Settings
from pipeline.stages import commands as stages
from pipeline.subcommand import HelpFormatter, examples
from pipeline.tracing import LOG_FORMAT, log_request_ids

#: The wings, in the order their subcommands are listed.
WINGS = (
    bus,
    stages,
    sim,
    gateway,
    client_commands,
    analytics,
    policy_commands,  # beside the package: importing pipeline.policy loads every section
    demo,
    bench,
    drills,
    evaluation,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wrp",
        description="Kafka-native LLM request router",
        epilog=examples("wrp up", 'wrp publish "Write a haiku about Kafka"', "wrp up --help"),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for wing in WINGS:
        wing.register(sub)
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
