"""Developer tool: parse latency with the encoder/parser overlap on and off, alternately.

python scripts/overlap_ab.py models/<model>.tar.gz [N]

Each message is parsed twice in one process, once per setting, the order alternating by round,
so this VM's drifting speed hits both settings alike; the results must be identical.
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
print("prefetching encoders:", len(encoders))


async def timed(text: str, mode: str) -> tuple[float, dict]:
    for encoder, setting in zip(encoders, saved):
        encoder._prefetch = setting if mode == "on" else None
    start = time.perf_counter()
    result = await agent.parse_message(text)
    return (time.perf_counter() - start) * 1000, result


async def main() -> None:
    for text in texts[:10]:
        await agent.parse_message(text)
    ms: dict[str, list[float]] = {"on": [], "off": []}
    same = 0
    for round_number in range(2):
        for text in texts:
            results = {}
            for mode in ("on", "off") if round_number % 2 == 0 else ("off", "on"):
                took, results[mode] = await timed(text, mode)
                ms[mode].append(took)
            on, off = results["on"], results["off"]
            same += on["intent"] == off["intent"] and on["entities"] == off["entities"]
    for mode, values in ms.items():
        p50, p95, mean = np.percentile(values, 50), np.percentile(values, 95), np.mean(values)
        print(f"{mode}: p50 {p50:.2f} p95 {p95:.2f} mean {mean:.2f} ms")
    print(f"identical results {same} of {2 * len(texts)}")
    print("uncollected prefetches", [len(e._pending) for e in encoders])


asyncio.run(main())
