"""`fusiondesk bench nlu`: data reading, pipelines, report, CLI errors, and a real smoke run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from bot.bench import pipelines as bench_pipelines
from bot.bench.data import Example, LabelMap, Span, limit_per_intent, read_examples
from bot.bench.errors import BenchDataError, PipelineConfigError
from bot.bench.nlu import ResultCache, cache_key
from bot.bench.report import Prediction, evaluate, pipeline_label, render_markdown
from bot.cli import main

NAMES = ["anna", "ben", "emma", "tom", "lucy", "mark", "sara", "john", "kate", "paul"]
CITIES = ["paris", "berlin", "rome", "madrid", "london", "vienna", "oslo", "prague", "lisbon"]
LOST = [
    "i lost my card",
    "my card was stolen",
    "someone took my card",
    "card missing please block it",
    "i can't find my card",
    "block my lost card",
    "my wallet with the card is gone",
    "the card got stolen yesterday",
    "lost card help",
    "card stolen",
]
OOS_TEXTS = [
    "tell me a joke",
    "who won the football game",
    "how tall is mount everest",
    "sing a song for me",
    "what is the meaning of life",
    "recommend a movie",
]


def _row(text: str, intent: str, entities: tuple[tuple[str, str], ...] = ()) -> dict:
    spans = []
    for value, entity in entities:
        start = text.index(value)
        spans.append({"start": start, "end": start + len(value), "entity": entity, "value": value})
    return {"text": text, "intent": intent, "entities": spans}


def _rows(first: int, count: int) -> list[dict]:
    rows = []
    for i in range(first, first + count):
        amount, person, city = str(10 + 7 * i), NAMES[i % 10], CITIES[i % 9]
        rows.append(
            _row(
                f"send {amount} euros to {person}",
                "transfer_money",
                ((amount, "amount"), (person, "person")),
            )  # fmt: skip
        )
        # "?" in an intent name (banking77 has `reverted_card_payment?`)
        rows.append(_row(f"what is the weather in {city}", "weather_query?", ((city, "city"),)))
        rows.append(_row(LOST[i % 10], "lost_card"))
    return rows


def write_tiny_data(directory: Path) -> tuple[Path, Path]:
    """3 intents × 8 train utterances with entities, a few out_of_scope; a 9-line test set."""
    train = _rows(0, 8) + [_row(t, "out_of_scope") for t in OOS_TEXTS[:3]]
    test = _rows(8, 2) + [_row(t, "out_of_scope") for t in OOS_TEXTS[3:]]
    paths = directory / "train.jsonl", directory / "test.jsonl"
    for path, rows in zip(paths, (train, test), strict=True):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths


# --- data ---------------------------------------------------------------------------------


def test_read_examples_reads_spans_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps(_row("send 5 to anna", "pay", (("anna", "person"), ("5", "amount"))))
        + "\n\n"
        + json.dumps({"text": "hi", "intent": "greet"})  # no "entities" key: none
        + "\n",
        encoding="utf-8",
    )
    examples = read_examples(path)
    assert examples[0].entities == (Span(5, 6, "amount", "5"), Span(10, 14, "person", "anna"))
    assert examples[1] == Example("hi", "greet", ())


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "not an object"),
        ('{"text": "  ", "intent": "a"}', "'text' must be a non-empty string"),
        ('{"text": "hi"}', "'intent' must be a non-empty string"),
        (
            '{"text": "hi anna", "intent": "a", "entities": '
            '[{"start": 3, "end": 7, "entity": "p", "value": "emma"}]}',
            "differs from text[3:7]",
        ),
        (
            '{"text": "hi", "intent": "a", "entities": [{"start": 0, "end": 9, "entity": "p"}]}',
            "outside the text",
        ),
        (
            '{"text": "hi anna", "intent": "a", "entities": [{"start": 0, "end": 5, '
            '"entity": "p"}, {"start": 3, "end": 7, "entity": "q"}]}',
            "overlap",
        ),
    ],
)
def test_read_examples_names_file_line_and_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "intent": "a"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(BenchDataError, match=f"bad.jsonl:2: .*{re.escape(problem)}"):
        read_examples(path)


def test_read_examples_rejects_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(BenchDataError, match="does not exist"):
        read_examples(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(BenchDataError, match="no utterances"):
        read_examples(tmp_path / "empty.jsonl")


def test_limit_per_intent_keeps_the_first_n_of_each_intent() -> None:
    examples = [Example(str(i), "a" if i % 2 else "b") for i in range(6)]
    assert [e.text for e in limit_per_intent(examples, 2)] == ["0", "1", "2", "3"]
    assert limit_per_intent(examples, None) == examples


def test_label_map_makes_names_rasa_safe_and_maps_back() -> None:
    train = [
        Example("x", "weather_query?", (Span(0, 1, "date/time", "x"),)),
        Example("y", "weather_query"),
        Example("z", "faq/fees"),
    ]
    labels = LabelMap.build(train, [Example("w", "out_of_scope")])
    assert labels.intents["weather_query"] == "weather_query"  # safe names stay
    assert labels.intents["weather_query?"] == "weather_query_2"  # no collision
    assert labels.intents["faq/fees"] == "faq_fees"  # "/" would mean a retrieval intent
    assert labels.intents["out_of_scope"] == "out_of_scope"
    assert labels.to_rasa(train[0]).entities[0].entity == "date_time"
    assert labels.intent_from_rasa("weather_query_2") == "weather_query?"
    assert labels.intent_from_rasa("nlu_fallback") == "nlu_fallback"
    assert labels.entity_from_rasa("date_time") == "date/time"


# --- pipelines ----------------------------------------------------------------------------


def _config(tmp_path: Path, pipeline: list[dict]) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(
        yaml.safe_dump({"recipe": "default.v1", "language": "en", "pipeline": pipeline}),
        encoding="utf-8",
    )
    return path


FUSED = [
    {"name": "WhitespaceTokenizer"},
    {"name": "nlu_components.FusedIntentClassifier", "mode": "frozen"},
    {"name": "FallbackClassifier", "threshold": 0.3},
]


def test_fused_and_its_variants_come_from_config_yml(tmp_path: Path) -> None:
    config = _config(tmp_path, FUSED)
    fused = bench_pipelines.resolve_pipeline("fused", config)
    assert fused.config["pipeline"] == FUSED
    encoder = bench_pipelines.resolve_pipeline("encoder-only", config).config["pipeline"]
    assert encoder[1] == {**FUSED[1], "views": ["encoder"]}
    syntax = bench_pipelines.resolve_pipeline("syntax-only", config).config["pipeline"]
    assert syntax[1]["views"] == ["syntax"]
    finetune = bench_pipelines.resolve_pipeline("fused-finetune", config).config["pipeline"]
    assert finetune[1]["mode"] == "finetune" and finetune[2] == FUSED[2]
    assert fused.config["pipeline"] == FUSED  # variants never change the base


def test_variants_need_the_fused_classifier(tmp_path: Path) -> None:
    config = _config(tmp_path, [{"name": "WhitespaceTokenizer"}, {"name": "DIETClassifier"}])
    with pytest.raises(PipelineConfigError, match="FusedIntentClassifier.*has none.*DIETClass"):
        bench_pipelines.resolve_pipeline("encoder-only", config)


def test_rasa_default_is_the_installed_rasa_default_config(tmp_path: Path) -> None:
    spec = bench_pipelines.resolve_pipeline("rasa-default", tmp_path / "unused.yml")
    names = [c["name"] for c in spec.config["pipeline"]]
    assert names == [
        "WhitespaceTokenizer",
        "RegexFeaturizer",
        "LexicalSyntacticFeaturizer",
        "CountVectorsFeaturizer",
        "CountVectorsFeaturizer",
        "DIETClassifier",
        "EntitySynonymMapper",
        "ResponseSelector",
        "FallbackClassifier",
    ]
    assert spec.config["pipeline"][5]["epochs"] == 100
    assert spec.source.endswith("default_config.yml")


def test_rasa_crf_and_custom_files_and_unknown_names(tmp_path: Path) -> None:
    crf = bench_pipelines.resolve_pipeline("rasa-crf", tmp_path / "unused.yml")
    names = [c["name"] for c in crf.config["pipeline"]]
    assert "CRFEntityExtractor" in names and "LogisticRegressionClassifier" in names
    custom = _config(tmp_path, [{"name": "WhitespaceTokenizer"}]).rename(tmp_path / "mine.yml")
    assert bench_pipelines.resolve_pipeline(str(custom), tmp_path / "x.yml").name == "mine"
    with pytest.raises(PipelineConfigError, match="unknown pipeline 'bert'.*rasa-crf"):
        bench_pipelines.resolve_pipeline("bert", tmp_path / "x.yml")


def test_cache_key_changes_with_data_config_and_epochs(tmp_path: Path) -> None:
    crf = bench_pipelines.resolve_pipeline("rasa-crf", tmp_path / "x.yml")
    default = bench_pipelines.resolve_pipeline("rasa-default", tmp_path / "x.yml")
    base = cache_key(crf, "train", "test", None)
    assert base == cache_key(crf, "train", "test", None)
    others = {
        cache_key(crf, "train2", "test", None),
        cache_key(crf, "train", "test2", None),
        cache_key(crf, "train", "test", 5),
        cache_key(default, "train", "test", None),
    }
    assert base not in others and len(others) == 4


def test_result_cache_round_trip_and_corrupt_entries(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    assert cache.get("k") is None
    cache.put("k", {"predictions": [], "x": 1})
    assert cache.get("k") == {"predictions": [], "x": 1}
    (tmp_path / "cache" / "k.json").write_text("{half", encoding="utf-8")
    assert cache.get("k") is None


# --- report -------------------------------------------------------------------------------


def _prediction(intent: str, ranking: list[tuple[str, float]], entities=(), ms=5.0) -> Prediction:
    return Prediction(intent, ranking[0][1], tuple(ranking), tuple(entities), ms)


def test_evaluate_by_hand() -> None:
    test = [
        Example("a1", "a", (Span(0, 1, "x", "a"),)),
        Example("b1", "b"),
        Example("o1", "out_of_scope"),
        Example("o2", "out_of_scope"),
    ]
    predictions = [
        _prediction("a", [("a", 0.9), ("b", 0.1)], [(0, 1, "x"), (1, 2, "y")], ms=1.0),
        _prediction("nlu_fallback", [("nlu_fallback", 0.3), ("b", 0.25)], ms=2.0),
        _prediction("nlu_fallback", [("nlu_fallback", 0.3), ("a", 0.2)], ms=3.0),
        _prediction("a", [("a", 0.6)], ms=4.0),
    ]
    flat, details = evaluate(test, test, predictions)
    assert flat["intent_accuracy"] == 0.5  # a ✓, b ✗ (fallback), o1 ✓, o2 ✗
    assert flat["intent_accuracy_without_fallback"] == 0.5  # b ✓ now, o1 ✗
    assert flat["fallback_rate"] == 0.5
    assert flat["in_scope_accuracy"] == 0.5
    assert flat["oos_recall"] == 0.5
    # OOS scores: 0.1, 0.75, 0.8 (OOS), 0.4 (OOS) -> pairs: 0.8>0.1, 0.8>0.75, 0.4>0.1, 0.4<0.75
    assert flat["oos_auroc"] == 0.75
    assert (flat["entity_precision"], flat["entity_recall"]) == (0.5, 1.0)
    assert flat["parse_ms_p50"] == 2.5
    assert details["per_entity_type"]["y"]["predicted"] == 1
    assert details["most_confused"][0] == {"gold": "b", "predicted": "out_of_scope", "count": 1}


def test_evaluate_leaves_out_oos_and_entity_figures_when_data_has_none() -> None:
    test = [Example("a1", "a"), Example("b1", "b")]
    flat, _ = evaluate(test, test, [_prediction("a", [("a", 1.0)])] * 2)
    assert flat["intent_accuracy"] == 0.5
    assert not {"oos_recall", "oos_auroc", "in_scope_accuracy", "entity_f1"} & set(flat)


def test_markdown_puts_pipelines_side_by_side_and_labels_short_runs() -> None:
    label = pipeline_label(
        "rasa-default", [{"component": "DIETClassifier", "epochs": 5, "of": 100}]
    )
    assert label == "rasa-default (DIETClassifier 5 of 100 epochs)"
    report = {
        "rasa-default": {"label": label, "intent_accuracy": 0.5, "entity_f1": 0.25,
                         "epochs_shortened": True, "epochs": 5},
        "rasa-crf": {"label": "rasa-crf", "intent_accuracy": 0.75, "entity_f1": 0.5},
        "broken": {"label": "broken", "error": "ValueError: no", "log": "logs/broken.log"},
    }  # fmt: skip
    details = {
        "rasa-default": {"per_entity_type": {"city": {"f1": 0.5, "support": 4}}},
        "rasa-crf": {"per_entity_type": {"city": {"f1": 1.0, "support": 4}}},
    }
    summary = {
        s: {"file": f"{s}.jsonl", "n": 4, "n_intents": 2, "n_entities": 1, "sha256": "ab" * 32}
        for s in ("train", "test")
    }
    markdown = render_markdown(report, details, {}, {**summary, "machine": "2 cores"})
    assert "| rasa-default (DIETClassifier 5 of 100 epochs) | 50.00 |" in markdown
    assert "| rasa-crf | 75.00 |" in markdown
    assert "| `city` | 4 | 50.00 | 100.00 |" in markdown
    assert "is a shortened run (`--epochs 5`)" in markdown
    assert "**broken failed**: ValueError: no" in markdown


# --- the command --------------------------------------------------------------------------


def test_cli_bad_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, test = write_tiny_data(tmp_path)
    test.write_text('{"text": "hi"}\n', encoding="utf-8")
    status = main(["bench", "nlu", "--train", str(train), "--test", str(test),
                   "--pipeline", "rasa-crf", "--out", str(tmp_path / "out")])  # fmt: skip
    assert status == 2
    assert "test.jsonl:1: 'intent' must be a non-empty string" in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.json").exists()


def test_cli_checks_every_pipeline_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = write_tiny_data(tmp_path)
    config = _config(tmp_path, [{"name": "WhitespaceTokenizer"}])
    status = main(["bench", "nlu", "--train", str(train), "--test", str(test),
                   "--pipeline", "rasa-crf", "--pipeline", "syntax-only",
                   "--config", str(config), "--out", str(tmp_path / "out")])  # fmt: skip
    assert status == 2
    assert "pipeline 'syntax-only'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "logs" / "rasa-crf.log").exists()


@pytest.mark.slow
def test_smoke_benchmark_trains_parses_reports_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FUSIONDESK_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FUSIONDESK_PROGRESS", "1")
    train, test = write_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative --out must work although the children chdir
    out = tmp_path / "out"
    pipelines = ["rasa-crf", "rasa-default", "fused"]
    argv = ["bench", "nlu", "--train", str(train), "--test", str(test), "--out", "out",
            "--epochs", "1"] + [a for p in pipelines for a in ("--pipeline", p)]  # fmt: skip

    assert main([*argv, "--keep-models"]) == 0
    assert (out / "models" / "rasa-crf.tar.gz").stat().st_size > 1000
    assert "rasa-crf" in capsys.readouterr().err  # the progress bar

    report = json.loads((out / "report.json").read_text("utf-8"))
    assert list(report) == pipelines
    for name, r in report.items():
        assert "error" not in r, (name, r.get("error"))
        for key in ("intent_accuracy", "intent_macro_f1", "in_scope_accuracy", "oos_recall",
                    "oos_auroc", "entity_precision", "entity_recall", "entity_f1",
                    "entity_token_precision", "entity_token_recall", "entity_token_f1"):  # fmt: skip
            assert 0.0 <= r[key] <= 1.0, (name, key, r[key])
        assert r["train_seconds"] > 0 and r["peak_rss_mb"] > 100
        # trained in one process, parsed in a fresh one (as `rasa run` loads the model)
        assert r["peak_rss_train_mb"] > 100 and r["peak_rss_parse_mb"] > 100
        assert r["peak_rss_mb"] >= max(r["peak_rss_train_mb"], r["peak_rss_parse_mb"])
        assert 0 < r["parse_ms_p50"] <= r["parse_ms_p95"]
        assert (r["n_train"], r["n_test"], r["n_test_oos"]) == (27, 9, 3)
        assert r["train_sha256"] and r["test_sha256"] and r["cached"] is False
    assert report["rasa-default"]["epochs_shortened"] is True
    assert report["rasa-default"]["label"].startswith("rasa-default (DIETClassifier 1 of 100")
    # ours parses with the encoder in a child process, whose memory is counted
    assert report["fused"]["peak_rss_encoder_process_mb"] > 100
    assert report["rasa-crf"]["peak_rss_encoder_process_mb"] == 0
    # the annotations reached the pipeline: CRF learns these three regular slots
    assert report["rasa-crf"]["entity_f1"] >= 0.5
    # the same entities scored per word reach the report too
    assert report["rasa-crf"]["entity_token_f1"] >= 0.5
    assert report["rasa-crf"]["intent_accuracy"] >= 0.5

    markdown = (out / "report.md").read_text("utf-8")
    assert "| rasa-crf |" in markdown and "| rasa-default (DIETClassifier 1 of 100" in markdown
    assert "| `person` | 2 |" in markdown  # F1 per entity type
    assert "shortened run" in markdown
    for name in pipelines:
        assert (out / "plots" / f"{name}-confidence.png").stat().st_size > 1000
        assert (out / "logs" / f"{name}.log").exists()
        rows = (out / "predictions" / f"{name}.jsonl").read_text("utf-8").splitlines()
        assert len(rows) == 9
    assert (out / "plots" / "oos-roc.png").stat().st_size > 1000
    crf_rows = [
        json.loads(r)
        for r in (out / "predictions" / "rasa-crf.jsonl").read_text("utf-8").splitlines()
    ]  # noqa: E501
    assert {r["gold"] for r in crf_rows} >= {"weather_query?"}
    assert "weather_query?" in {r["predicted"] for r in crf_rows}  # mapped back from Rasa's name

    # second run: every pipeline comes from the cache, with the same figures
    out2 = tmp_path / "out2"
    assert main([a if a != "out" else "out2" for a in argv]) == 0
    again = json.loads((out2 / "report.json").read_text("utf-8"))
    assert all(r["cached"] for r in again.values())
    assert again["rasa-crf"]["intent_accuracy"] == report["rasa-crf"]["intent_accuracy"]
    assert again["rasa-default"]["train_seconds"] == report["rasa-default"]["train_seconds"]
    assert "reused from the cache" in (out2 / "report.md").read_text("utf-8")


@pytest.mark.slow
def test_a_failing_pipeline_is_reported_and_the_status_is_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSIONDESK_BENCH_CACHE", str(tmp_path / "cache"))
    train, test = write_tiny_data(tmp_path)
    broken = _config(tmp_path, [{"name": "WhitespaceTokenizer"}, {"name": "NoSuchClassifier"}])
    out = tmp_path / "out"
    status = main(["bench", "nlu", "--train", str(train), "--test", str(test),
                   "--pipeline", str(broken), "--out", str(out)])  # fmt: skip
    assert status == 1
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert "NoSuchClassifier" in report["config"]["error"]
    assert "**config failed**" in (out / "report.md").read_text("utf-8")
    assert not list((tmp_path / "cache").glob("*.json"))  # failures are never cached
