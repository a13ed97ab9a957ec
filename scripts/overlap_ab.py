"""Developer tool: parse latency with the encoder/parser overlap in a child process, in a
worker thread and off, alternately.

python scripts/overlap_ab.py models/<model>.tar.gz [N]

Each message is parsed once per setting in one process, the order rotating by round, so this
VM's drifting speed hits every setting alike; the results must be identical.
"""

import asyncio
import json
import sys
import time

import numpy as np

from bot.env import apply_process_env

apply_process_env()
from rasa.core.agent import Agent  # noqa: E402
from rasa.utils.log_utils import configure_structlog  # noqa: E402

from nlu_components import encoder as encoder_module  # noqa: E402

configure_structlog(None)
agent = Agent.load(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
texts = [json.loads(line)["text"] for line in open("../shared/data/banking77/dev.jsonl")][:n]
encoders = list(encoder_module._PREFETCHING)
saved = [e._prefetch for e in encoders]
processes = [e._process for e in encoders]
print("prefetching encoders:", len(encoders), "ready:", [p and p.wait_ready(60) for p in processes])
MODES = ("process", "thread", "off")


async def timed(text: str, mode: str) -> tuple[float, dict]:
    for encoder, setting, process in zip(encoders, saved, processes):
        encoder._prefetch = None if mode == "off" else setting
        encoder._process = process if mode == "process" else None
    start = time.perf_counter()
    result = await agent.parse_message(text)
    return (time.perf_counter() - start) * 1000, result


async def main() -> None:
    for text in texts[:10]:
        await agent.parse_message(text)
    ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    same = 0
    for round_number in range(3):
        for text in texts:
            results = {}
            for mode in MODES[round_number:] + MODES[:round_number]:
                took, results[mode] = await timed(text, mode)
                ms[mode].append(took)
            first = results["off"]
            same += all(
                r["intent"] == first["intent"]
                and r["entities"] == first["entities"]
                and r.get("explanation") == first.get("explanation")
                for r in results.values()
            )
    for mode, values in ms.items():
        p50, p95, mean = np.percentile(values, 50), np.percentile(values, 95), np.mean(values)
        print(f"{mode}: p50 {p50:.2f} p95 {p95:.2f} mean {mean:.2f} ms")
    print(f"identical results {same} of {3 * len(texts)}")
    print("uncollected prefetches", [len(e._pending) for e in encoders])


asyncio.run(main())
