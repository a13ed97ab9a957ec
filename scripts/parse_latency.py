"""Developer tool: per-message parse latency of a trained Rasa model, with a cProfile breakdown.

python scripts/parse_latency.py models/<model>.tar.gz [N] [FILE.jsonl] [--no-profile] [--nodes]
    [--dump OUT.jsonl]

`--nodes` (implies `--no-profile`): mean and p95 wall time of each Rasa graph node per message
instead of the cProfile breakdown (cProfile inflates Python-heavy components).
`--dump OUT.jsonl`: each timed message's intent and entities, one line each, to compare the
output of two versions of the code on the same model.
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

from nlu_components.encoder import wait_for_encoder_processes  # noqa: E402

configure_structlog(None)  # LOG_LEVEL, default INFO: without it every parse prints at debug

nodes = "--nodes" in sys.argv
profile = "--no-profile" not in sys.argv and not nodes
dump = None
if "--dump" in sys.argv:
    at = sys.argv.index("--dump")
    dump = open(sys.argv[at + 1], "w", encoding="utf-8")  # noqa: SIM115 - closed at the end
    del sys.argv[at : at + 2]
sys.argv = [a for a in sys.argv if a not in ("--no-profile", "--nodes")]
node_ms: dict[str, list[float]] = {}
if nodes:
    import rasa.engine.graph as graph

    _call = graph.GraphNode.__call__

    def _timed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return _call(self, *args, **kwargs)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            node_ms.setdefault(self._node_name, []).append(elapsed)

    graph.GraphNode.__call__ = _timed
model = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
texts = [
    json.loads(line)["text"]
    for line in open(sys.argv[3] if len(sys.argv) > 3 else "../shared/data/banking77/dev.jsonl")
][:n]
agent = Agent.load(model)
wait_for_encoder_processes()  # the parse-time encoder process loads in the background


async def main():
    for t in texts[:10]:
        await agent.parse_message(t)
    ms = []
    node_ms.clear()
    prof = cProfile.Profile()
    for t in texts:
        s = time.perf_counter()
        if profile:
            prof.enable()
        result = await agent.parse_message(t)
        if profile:
            prof.disable()
        ms.append((time.perf_counter() - s) * 1000)
        if dump is not None:
            fields = {"text": t, "intent": result["intent"], "entities": result["entities"]}
            dump.write(json.dumps(fields) + "\n")
    if dump is not None:
        dump.close()
    ms.sort()
    print(
        "p50",
        round(ms[len(ms) // 2], 1),
        "p95",
        round(ms[int(len(ms) * 0.95)], 1),
        "mean",
        round(statistics.mean(ms), 1),
    )
    for name, values in node_ms.items():
        values.sort()
        print(
            f"{name:60s} mean {statistics.mean(values):7.3f}"
            f" p95 {values[int(len(values) * 0.95)]:7.3f}"
        )
    if not profile:
        return
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(30)
    print(out.getvalue()[:9000])


asyncio.run(main())
