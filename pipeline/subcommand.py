"""What every wing's ``commands`` module registers its ``wrp`` subcommands with: the
:func:`command` helper (the common flags, the help and its examples) and :func:`settings_from`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from pipeline.settings import Settings


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings, with the common flags (``--broker``, ``--policy``, ``--state-dir``) over
    the environment."""
    overrides = {
        "broker": getattr(args, "broker", None),
        "policy": getattr(args, "policy", None),
        "state_dir": getattr(args, "state_dir", None),
    }
    return Settings.from_env(**overrides)


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each line of prose on its own and keeps indented lines (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n".join(
            indent + line if not line or line.startswith(" ") else fill(line, width, indent)
            for line in text.splitlines()
        )


def examples(*commands: str) -> str:
    """An epilog: the commands, one an indented line."""
    return "example:\n" + "\n".join(f"  {c}" for c in commands)


def command(
    sub: argparse._SubParsersAction,
    name: str,
    fn: Callable[[argparse.Namespace], int],
    help_text: str,
    *example_lines: str,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` running ``fn``, with the common flags and its examples."""
    p = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=examples(*example_lines),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--broker", help="bootstrap servers (WRP_BROKER)")
    p.add_argument("--policy", type=Path, help="policy file (WRP_POLICY)")
    p.add_argument("--state-dir", type=Path, help="local state directory (WRP_STATE_DIR)")
    p.set_defaults(fn=fn)
    return p
