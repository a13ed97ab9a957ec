"""`fusiondesk bench kb` on a tiny generated FAQ (never the shared benchmark data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.bench.errors import BenchDataError
from bot.bench.kb import MODES, normalise_intent, read_queries, run_benchmark
from tests.actions.kb.fakes import HashingEncoder
from tests.support import ROOT, child_env

TOPICS = {
    "card_arrival": (
        "When will my new card arrive?",
        "Cards arrive within five working days.",
        ["my card has still not arrived", "how long does card delivery take"],
    ),
    "lost_card": (
        "I lost my card",
        "Freeze the card in the app and order another.",
        ["someone stole my card", "my card is missing"],
    ),
    "exchange_rate": (
        "Which exchange rate do you use?",
        "We use the interbank rate.",
        ["what rate do you use for currency exchange", "is the exchange rate fair"],
    ),
    "change_pin": (
        "How do I change my PIN?",
        "Change it at any cash machine.",
        ["I want a new PIN number", "change PIN at an ATM"],
    ),
    "top_up_limit": (
        "What is the top-up limit?",
        "You can top up 10,000 per day.",
        ["how much can I top up", "maximum top up amount"],
    ),
}


@pytest.fixture
def tiny_faq(tmp_path: Path) -> tuple[Path, Path, Path]:
    faq = tmp_path / "faq.jsonl"
    faq.write_text(
        "".join(
            json.dumps({"id": key, "question": q, "answer": a}) + "\n"
            for key, (q, a, _) in TOPICS.items()
        )
    )
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "".join(
            json.dumps({"text": text, "faq_id": key}) + "\n"
            for key, (_, _, texts) in TOPICS.items()
            for text in texts
        )
    )
    oos = tmp_path / "oos.jsonl"
    oos.write_text(
        "".join(
            json.dumps({"text": t}) + "\n"
            for t in ("sing me a song", "what is the weather in Lima")
        )
    )
    return faq, queries, oos


def test_report_has_every_mode_and_metric(
    tiny_faq: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    faq, queries, oos = tiny_faq
    report = run_benchmark(
        faq,
        queries,
        tmp_path / "out",
        oos=oos,
        scale=40,
        encoder=HashingEncoder(),
        progress=lambda _: None,
    )
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    for mode in MODES:
        metrics = saved[mode]
        assert {"hit_at_1", "hit_at_3", "mrr", "query_ms_p50", "query_ms_p95"} <= set(metrics)
        assert 0 <= metrics["hit_at_1"] <= metrics["hit_at_3"] <= 1
        assert metrics["hit_at_1"] <= metrics["mrr"] <= 1
        assert 0 < metrics["query_ms_p50"] <= metrics["query_ms_p95"]
    # the bag-of-words stand-in encoder still finds most of these paraphrases
    assert saved["hybrid"]["hit_at_3"] >= 0.8
    assert saved["data"]["articles"] == 5 and saved["data"]["n_queries"] == 10
    assert saved["scale"]["articles"] == 40 and set(MODES) <= set(saved["scale"])
    assert saved["decisions"]["out_of_scope"]["n"] == 2
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| hybrid |" in markdown and "At 40 articles" in markdown


def test_intent_queries_map_to_the_article_of_the_intent(tmp_path: Path) -> None:
    from actions.kb.article import Article

    articles = [Article(id="refund", intent="refund_not_showing_up", title="T", answer="A")]
    path = tmp_path / "dev.jsonl"
    path.write_text(
        json.dumps({"text": "where is my refund", "intent": "Refund_not_showing_up"}) + "\n"
    )
    assert read_queries(path, articles)[0].gold == "refund"
    assert normalise_intent("reverted_card_payment?") == "reverted_card_payment"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "x", "faq_id": "nope"}\n', r"queries.jsonl:1: no article for 'nope'"),
        ('{"text": "x"}\n', r"queries.jsonl:1: needs"),
        ("{broken\n", r"queries.jsonl:1: not valid JSON"),
        ("", "no queries"),
    ],
)
def test_bad_query_files_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    from actions.kb.article import Article

    path = tmp_path / "queries.jsonl"
    path.write_text(content)
    with pytest.raises(BenchDataError, match=message):
        read_queries(path, [Article(id="a", title="T", answer="A")])


@pytest.mark.slow
def test_cli_smoke_with_the_real_encoder(tiny_faq: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """`fusiondesk bench kb` end to end: MiniLM, in-memory SQLite, the bot's search code."""
    faq, queries, oos = tiny_faq
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "bench", "kb", "--faq", str(faq), "--queries", str(queries),
         "--oos", str(oos), "--scale", "60", "--out", str(out)],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["dense"]["hit_at_1"] >= 0.8 and report["hybrid"]["hit_at_1"] >= 0.8
    assert report["scale"]["articles"] == 60
    assert "| hybrid |" in result.stdout


def test_missing_faq_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchDataError, match="no such file"):
        run_benchmark(
            tmp_path / "nope.jsonl",
            tmp_path / "q.jsonl",
            tmp_path / "out",
            encoder=HashingEncoder(),
        )
