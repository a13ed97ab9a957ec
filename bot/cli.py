"""The `fusiondesk` command.

Sub-commands live in their own modules; each exposes `add_parser(subparsers)` that registers
itself with a `func(args) -> int`. Heavy imports (Rasa, torch) happen inside the functions so
`fusiondesk --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from bot.env import apply_process_env
from bot.errors import FusionDeskError

#: Modules that contribute sub-commands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "bot.runner",
    "bot.bench.cli",
    "actions.kb.cli",
    "bot.handoff.cli",
    "bot.channels.telegram_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusiondesk",
        description="FusionDesk: a self-hosted customer-service bot on Rasa Open Source 3.6.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    apply_process_env()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except FusionDeskError as e:
        print(f"fusiondesk: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
