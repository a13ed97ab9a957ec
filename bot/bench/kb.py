"""`fusiondesk bench kb`: FAQ retrieval quality and latency of the knowledge base.

Runs the bot's own retrieval code — `actions.kb.service.KnowledgeBase` on an in-memory SQLite
database, the same import path, stored vectors, index and search call as the action server —
in its three modes (`bm25`, `dense`, `hybrid`) on one set of queries, and writes
`DIR/report.json` and `DIR/report.md`.

Inputs:

* `--faq`: `faq.jsonl` (`{"id", "question", "answer"}`), or knowledge-base YAML/JSONL files
  (a file or a folder) as `fusiondesk kb import` reads them;
* `--queries`: JSON Lines with `{"text", "faq_id"}`, or utterances `{"text", "intent"}` whose
  gold article is the one answering that intent (intent names are normalised: lower-case,
  characters outside `[a-z0-9_]` removed);
* `--oos` (optional): questions no article answers (JSON Lines `{"text"}` or a Rasa NLU YAML
  file): how often the bot would wrongly answer them;
* `--scale N` (optional): add generated articles until the knowledge base has N, and time the
  same queries against it.

Latency is the wall time of one `KnowledgeBase.search` call (database version check, query
encoding on the action server's torch threads — `FUSIONDESK_KB_THREADS`, default one —,
scoring, top-k), measured per query and mode, beside the process CPU time it used.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from bot.bench.errors import BenchDataError, BenchError

logger = logging.getLogger(__name__)

MODES: tuple[Literal["bm25", "dense", "hybrid"], ...] = ("bm25", "dense", "hybrid")


def add_parser(bench_subparsers: argparse._SubParsersAction) -> None:
    """Register `fusiondesk bench kb`."""
    parser = bench_subparsers.add_parser(
        "kb",
        help="knowledge-base retrieval: BM25 vs dense vs hybrid (hit@k, MRR, latency)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument(
        "--faq", type=Path, required=True, help="faq.jsonl or KB .yml/.jsonl/folder"
    )
    parser.add_argument(
        "--queries", type=Path, required=True, help='JSONL {"text","faq_id"|"intent"}'
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json/report.md")
    parser.add_argument("--oos", type=Path, help="questions without an answer (JSONL or NLU YAML)")
    parser.add_argument("--scale", type=int, default=0, help="also time at N articles (generated)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N queries")
    parser.add_argument("--seed", type=int, default=13, help="seed of the generated articles")
    parser.set_defaults(func=_cmd)


@dataclass(frozen=True)
class Query:
    text: str
    gold: str


def normalise_intent(name: str) -> str:
    """BANKING77 raw intent → article intent (`Refund_not_showing_up` → `refund_not_showing_up`)."""
    return re.sub(r"[^a-z0-9_]", "", name.lower())


def read_queries(path: Path, articles: Sequence[Any]) -> list[Query]:
    """Queries with the id of their gold article.

    Raises:
        BenchDataError: unreadable file, bad JSON, missing keys, or an unknown gold article.
    """
    ids = {a.id for a in articles}
    by_intent = {a.intent: a.id for a in articles if a.intent}
    queries: list[Query] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BenchDataError(f"{path}: cannot read queries: {e}") from e
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise BenchDataError(f"{path}:{number}: not valid JSON: {e.msg}") from e
        if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
            raise BenchDataError(
                f'{path}:{number}: expected {{"text", "faq_id"}} or {{"text", "intent"}}'
            )
        if "faq_id" in raw:
            gold = str(raw["faq_id"])
        elif "intent" in raw:
            intent = normalise_intent(str(raw["intent"]))
            gold = by_intent.get(intent, intent)
        else:
            raise BenchDataError(f'{path}:{number}: needs "faq_id" or "intent"')
        if gold not in ids:
            raise BenchDataError(f"{path}:{number}: no article for {gold!r} in the FAQ file")
        queries.append(Query(raw["text"], gold))
    if not queries:
        raise BenchDataError(f"{path}: no queries")
    return queries


def read_oos(path: Path) -> list[str]:
    """Out-of-scope questions: JSON Lines with "text", or a Rasa NLU YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BenchDataError(f"{path}: cannot read: {e}") from e
    if path.suffix in (".yml", ".yaml"):
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise BenchDataError(f"{path}: not valid YAML: {e}") from e
        out = []
        for block in data.get("nlu", []):
            for line in str(block.get("examples", "")).splitlines():
                if line.strip().startswith("- "):
                    out.append(line.strip()[2:].strip())
        return out
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise BenchDataError(f'{path}:{number}: expected {{"text": ...}}') from e
    return out


def generated_articles(articles: Sequence[Any], count: int, seed: int) -> list[Any]:
    """`count` synthetic articles drawn from the real ones' vocabulary (timing only).

    Word frequencies follow the real articles, so BM25's posting lists and the vectors'
    spread look like a larger knowledge base of the same domain.
    """
    from actions.kb.article import Article

    rng = random.Random(seed)
    words = re.findall(
        r"[A-Za-z][A-Za-z']+",
        " ".join(f"{a.title} {' '.join(a.questions)} {a.answer}" for a in articles),
    )
    if not words:
        words = ["account", "card", "payment", "transfer"]
    out = []
    for i in range(count):
        question = " ".join(rng.choice(words) for _ in range(rng.randint(6, 14))).capitalize() + "?"
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(30, 90))).capitalize() + "."
        out.append(Article(id=f"generated_{i:06d}", title=question, answer=answer))
    return out


def _rank_of(scores: np.ndarray, gold: int) -> int:
    """1-based rank of `gold` (ties count against it)."""
    return int(np.sum(scores > scores[gold])) + 1


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _calibration(pairs: Sequence[tuple[float, bool]], bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of the top hit's confidence."""
    if not pairs:
        return {}
    confidences = np.array([p for p, _ in pairs])
    correct = np.array([c for _, c in pairs], dtype=float)
    ece = 0.0
    table = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        mask = (confidences >= low) & (
            (confidences < high) if b < bins - 1 else (confidences <= high)
        )
        if mask.any():
            ece += mask.mean() * abs(confidences[mask].mean() - correct[mask].mean())
            table.append({"bin": f"{low:.1f}-{high:.1f}", "n": int(mask.sum()),
                          "confidence": round(float(confidences[mask].mean()), 3),
                          "accuracy": round(float(correct[mask].mean()), 3)})  # fmt: skip
    return {"ece": round(float(ece), 4), "bins": table}


def run_benchmark(
    faq: Path,
    queries_path: Path,
    out: Path,
    oos: Path | None = None,
    scale: int = 0,
    limit: int = 0,
    seed: int = 13,
    encoder: Any = None,
    progress: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Run the benchmark and write `out/report.json` and `out/report.md`; returns the report.

    Args:
        encoder: sentence encoder (default: the NLU's MiniLM, as the action server uses).
    """
    from actions.kb.decision import choose_reply
    from actions.kb.errors import KnowledgeBaseError
    from actions.kb.service import KnowledgeBase, load_default_encoder
    from actions.kb.text import clean_query
    from actions.kb.yaml_io import load_path

    try:
        articles = load_path(faq)
    except KnowledgeBaseError as e:
        raise BenchDataError(str(e)) from e
    if not articles:
        raise BenchDataError(f"{faq}: no articles")
    queries = read_queries(queries_path, articles)
    if limit > 0:
        queries = queries[:limit]
    oos_texts = read_oos(oos) if oos else []
    out.mkdir(parents=True, exist_ok=True)

    encoder = encoder or load_default_encoder()
    kb = KnowledgeBase("sqlite://", encoder=encoder, seed_dir=None)
    started = time.perf_counter()
    kb.import_articles(articles)
    index = kb.index()
    import_s = time.perf_counter() - started
    progress(f"imported {len(articles)} articles in {import_s:.1f} s")
    position = {a.id: i for i, a in enumerate(index.articles)}
    query_encoder = kb.query_encoder

    # quality: every article's score in every mode, one encoding per query
    ranks: dict[str, list[int]] = {mode: [] for mode in MODES}
    top_pairs: list[tuple[float, bool]] = []
    decisions = {
        "answer": 0,
        "answer_correct": 0,
        "choose": 0,
        "choose_contains_gold": 0,
        "none": 0,
    }
    for query in queries:
        text = clean_query(query.text)
        scores = index.channel_scores(text, query_encoder.encode(text))
        gold = position[query.gold]
        for mode in MODES:
            ranks[mode].append(_rank_of(scores.for_mode(mode), gold))
        hits = index.top_hits(scores, 3)
        top_pairs.append((hits[0].confidence, hits[0].article.id == query.gold))
        reply = choose_reply(hits, index.config)
        decisions[reply.kind] += 1
        if reply.kind == "answer" and reply.article is not None and reply.article.id == query.gold:
            decisions["answer_correct"] += 1
        if reply.kind == "choose" and any(h.article.id == query.gold for h in reply.choices):
            decisions["choose_contains_gold"] += 1
    oos_decisions = {"answer": 0, "choose": 0, "none": 0}
    for text in oos_texts:
        hits = kb.search(text, k=3)
        top_pairs.append((hits[0].confidence if hits else 0.0, False))
        oos_decisions[choose_reply(hits, index.config).kind] += 1

    # latency: the real search call, per mode
    latency = {mode: _time_searches(kb, [q.text for q in queries], mode) for mode in MODES}
    report: dict[str, Any] = {}
    for mode in MODES:
        r = np.asarray(ranks[mode])
        report[mode] = {
            "hit_at_1": round(float(np.mean(r <= 1)), 4),
            "hit_at_3": round(float(np.mean(r <= 3)), 4),
            "mrr": round(float(np.mean(1.0 / r)), 4),
            "query_ms_p50": round(_percentile(latency[mode][0], 50), 2),
            "query_ms_p95": round(_percentile(latency[mode][0], 95), 2),
            "cpu_ms_p50": round(_percentile(latency[mode][1], 50), 2),
            "cpu_ms_p95": round(_percentile(latency[mode][1], 95), 2),
        }
    n = len(queries)
    report["decisions"] = {
        "in_scope": {
            "answer": round(decisions["answer"] / n, 4),
            "answer_precision": round(decisions["answer_correct"] / max(decisions["answer"], 1), 4),
            "choose": round(decisions["choose"] / n, 4),
            "choose_contains_gold": round(decisions["choose_contains_gold"] / max(decisions["choose"], 1), 4),
            "none": round(decisions["none"] / n, 4),
        },
        "out_of_scope": (
            {k: round(v / len(oos_texts), 4) for k, v in oos_decisions.items()} | {"n": len(oos_texts)}
            if oos_texts else None
        ),
    }  # fmt: skip
    report["calibration"] = _calibration(top_pairs)
    report["data"] = {
        "faq": str(faq), "queries": str(queries_path), "oos": str(oos) if oos else None,
        "articles": len(articles), "n_queries": n,
        "vector_rows": index.dense.n_rows,
    }  # fmt: skip
    report["config"] = asdict(index.config)
    report["environment"] = {
        "query_encoder": query_encoder.path_name, "import_s": round(import_s, 2),
        "query_threads": getattr(encoder, "num_threads", None),
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": _cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    if scale > len(articles):
        report["scale"] = _scaled(kb, articles, queries, scale, seed, progress)
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    progress(f"wrote {out / 'report.json'} and {out / 'report.md'}")
    return report


def _cpu_count() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
    )


def _time_searches(kb: Any, texts: Sequence[str], mode: str) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of one `kb.search` per text (CPU time, of every thread of the
    process, shows what a query costs when other processes compete for the cores; wall time is
    what a customer waits)."""
    kb.search(texts[0], k=3, mode=mode)  # warm caches outside the measurement
    wall, cpu = [], []
    for text in texts:
        started, started_cpu = time.perf_counter(), time.process_time()
        kb.search(text, k=3, mode=mode)
        cpu.append((time.process_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    return wall, cpu


def _scaled(
    kb: Any,
    articles: Sequence[Any],
    queries: Sequence[Query],
    scale: int,
    seed: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Add generated articles up to `scale`, then measure quality and latency again."""
    extra = generated_articles(articles, scale - len(articles), seed)
    started = time.perf_counter()
    kb.import_articles(extra)
    index = kb.index()
    build_s = time.perf_counter() - started
    progress(f"scaled to {len(index)} articles in {build_s:.1f} s")
    result: dict[str, Any] = {"articles": len(index), "import_and_index_s": round(build_s, 1)}
    for mode in MODES:
        timings, cpu = _time_searches(kb, [q.text for q in queries], mode)
        hits1 = 0
        for query in queries:
            hits = kb.search(query.text, k=1, mode=mode)
            hits1 += bool(hits) and hits[0].article.id == query.gold
        result[mode] = {
            "hit_at_1": round(hits1 / len(queries), 4),
            "query_ms_p50": round(_percentile(timings, 50), 2),
            "query_ms_p95": round(_percentile(timings, 95), 2),
            "cpu_ms_p50": round(_percentile(cpu, 50), 2),
            "cpu_ms_p95": round(_percentile(cpu, 95), 2),
        }
    return result


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable summary of `report`."""
    data = report["data"]
    lines = [
        "# Knowledge-base retrieval benchmark",
        "",
        f"{data['articles']} articles ({data['faq']}), {data['n_queries']} queries ({data['queries']}); "
        f"query encoder path: {report['environment']['query_encoder']}.",
        "",
        "| mode | hit@1 | hit@3 | MRR | p50 ms | p95 ms | CPU p50 ms | CPU p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        m = report[mode]
        lines.append(
            f"| {mode} | {m['hit_at_1']:.4f} | {m['hit_at_3']:.4f} | {m['mrr']:.4f} | "
            f"{m['query_ms_p50']:.2f} | {m['query_ms_p95']:.2f} | "
            f"{m.get('cpu_ms_p50', float('nan')):.2f} | {m.get('cpu_ms_p95', float('nan')):.2f} |"
        )
    if "scale" in report:
        s = report["scale"]
        lines += ["", f"## At {s['articles']} articles (generated distractors added)", "",
                  "| mode | hit@1 | p50 ms | p95 ms | CPU p50 ms | CPU p95 ms |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for mode in MODES:
            m = s[mode]
            lines.append(
                f"| {mode} | {m['hit_at_1']:.4f} | {m['query_ms_p50']:.2f} | {m['query_ms_p95']:.2f} | "
                f"{m.get('cpu_ms_p50', float('nan')):.2f} | {m.get('cpu_ms_p95', float('nan')):.2f} |"
            )
    d = report["decisions"]["in_scope"]
    lines += ["", "## What the bot would do (hybrid, calibrated thresholds)", "",
              f"- answerable questions: answer {d['answer']:.1%} (of those correct {d['answer_precision']:.1%}), "
              f"offer choices {d['choose']:.1%} (gold among them {d['choose_contains_gold']:.1%}), "
              f"ask to rephrase {d['none']:.1%}"]  # fmt: skip
    oos = report["decisions"]["out_of_scope"]
    if oos:
        lines.append(f"- questions without an article ({oos['n']}): answer {oos['answer']:.1%}, "
                     f"offer choices {oos['choose']:.1%}, ask to rephrase {oos['none']:.1%}")  # fmt: skip
    if report.get("calibration"):
        lines.append(
            f"- confidence calibration error (ECE) of the top hit: {report['calibration']['ece']:.3f}"
        )
    c = report["config"]
    lines += ["", f"Fusion: hybrid = dense + {c['bm25_weight']} × BM25/max(BM25); dense = max cos(question variants) "
              f"+ {c['answer_weight']} × cos(answer view). Latency is one `KnowledgeBase.search` call "
              f"(version check, query encoding on {report['environment'].get('query_threads', '?')} "
              "torch thread(s), scoring); CPU columns are the process CPU time of that call "
              "(1-minute load average during the run: "
              f"{report['environment'].get('load_average_1m', '?')} on {report['environment']['cpus']} CPUs)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _cmd(args: argparse.Namespace) -> int:
    if args.scale < 0 or args.limit < 0:
        raise BenchError("--scale and --limit must be >= 0")
    report = run_benchmark(
        args.faq, args.queries, args.out, oos=args.oos, scale=args.scale, limit=args.limit,
        seed=args.seed, progress=print,
    )  # fmt: skip
    print(render_markdown(report))
    return 0
