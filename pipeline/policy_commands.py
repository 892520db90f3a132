"""``wrp policy check``: a policy file's errors and warnings, each with its line."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.subcommand import command


def cmd_policy(args: argparse.Namespace) -> int:
    """Print a policy file's errors, then its warnings, as ``path:line: severity: message``;
    2 when there is an error, else an ok line and 0."""
    from pipeline.policy import load_policy
    from pipeline.preflight import check_policy

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


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``policy`` to ``wrp``."""
    p = command(
        sub,
        "policy",
        cmd_policy,
        "check a policy file: validation errors and routing mistakes (unfit context "
        "lengths, shadowed or overlapping decisions), each with its line; exit 2 on an error",
        "wrp policy check policies/default.yaml",
    )
    p.add_argument("action", choices=["check"], help="check the file")
    p.add_argument("file", help="the policy YAML file")
