"""Developer tool: per-message parse latency of a trained Rasa model, with a cProfile breakdown.

python scripts/parse_latency.py models/<model>.tar.gz [N] [FILE.jsonl] [--no-profile]
"""

import asyncio
import cProfile
import io
import json
import pstats
import statistics
import sys
import time

from bot.env import apply_process_env

apply_process_env()
from rasa.core.agent import Agent  # noqa: E402
from rasa.utils.log_utils import configure_structlog  # noqa: E402

configure_structlog(None)  # LOG_LEVEL, default INFO: without it every parse prints at debug

profile = "--no-profile" not in sys.argv
sys.argv = [a for a in sys.argv if a != "--no-profile"]
model = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
texts = [
    json.loads(line)["text"]
    for line in open(sys.argv[3] if len(sys.argv) > 3 else "../shared/data/banking77/dev.jsonl")
][:n]
agent = Agent.load(model)


async def main():
    for t in texts[:10]:
        await agent.parse_message(t)
    ms = []
    prof = cProfile.Profile()
    for t in texts:
        s = time.perf_counter()
        if profile:
            prof.enable()
        await agent.parse_message(t)
        if profile:
            prof.disable()
        ms.append((time.perf_counter() - s) * 1000)
    ms.sort()
    print(
        "p50",
        round(ms[len(ms) // 2], 1),
        "p95",
        round(ms[int(len(ms) * 0.95)], 1),
        "mean",
        round(statistics.mean(ms), 1),
    )
    if not profile:
        return
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(30)
    print(out.getvalue()[:9000])


asyncio.run(main())
