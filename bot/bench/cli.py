"""`fusiondesk bench ...` sub-commands (each benchmark registers its own parser)."""

from __future__ import annotations

import argparse
import importlib

#: Modules exposing `add_parser(bench_subparsers)`.
BENCH_MODULES: tuple[str, ...] = ("bot.bench.nlu", "bot.bench.kb")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="run a benchmark and write report.json/report.md")
    bench_sub = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    bench_sub.required = True
    for module_name in BENCH_MODULES:
        importlib.import_module(module_name).add_parser(bench_sub)
