"""Turn one pipeline's predictions into report figures, and render `report.md` (no Rasa here).

`evaluate` gives the flat object `report.json` holds for each pipeline plus a `details` object
(per-intent and per-entity-type scores, the most frequent confusions); `render_markdown` puts
all pipelines side by side.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.bench import metrics
from bot.bench.data import Example


@dataclass(frozen=True)
class Prediction:
    """What the trained model said about one test message (original label names)."""

    intent: str
    confidence: float
    #: (intent, confidence) pairs, best first, as Rasa's `intent_ranking` gave them.
    ranking: tuple[tuple[str, float], ...]
    #: (start, end, type) of every predicted entity.
    entities: tuple[metrics.EntityKey, ...]
    #: Wall-clock milliseconds of `parse_message` for this message.
    ms: float

    @property
    def intent_without_fallback(self) -> str:
        """The prediction with Rasa's `FallbackClassifier` undone (its ranking's best intent)."""
        if self.intent != metrics.FALLBACK:
            return self.intent
        for name, _ in self.ranking:
            if name != metrics.FALLBACK:
                return name
        return self.intent

    @property
    def oos_score(self) -> float:
        """1 − the best in-scope confidence: high means "probably out of scope"."""
        return 1.0 - metrics.top_in_scope_confidence(self.ranking)


def has_out_of_scope(test: Sequence[Example]) -> bool:
    return any(metrics.is_out_of_scope(e.intent) for e in test)


def has_entities(*datasets: Sequence[Example]) -> bool:
    return any(e.entities for data in datasets for e in data)


def _gold_entities(test: Sequence[Example]) -> list[set[metrics.EntityKey]]:
    return [{(s.start, s.end, s.entity) for s in e.entities} for e in test]


def evaluate(
    train: Sequence[Example],
    test: Sequence[Example],
    predictions: Sequence[Prediction],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scores of one pipeline.

    Returns:
        (flat figures for `report.json`, details for `details.json`). Rates are fractions 0–1;
        out-of-scope figures appear only when the test set has `out_of_scope`, entity figures
        only when train or test has entities.
    """
    if len(test) != len(predictions):
        raise ValueError(f"{len(test)} test messages but {len(predictions)} predictions")
    gold = [e.intent for e in test]
    pred = [p.intent for p in predictions]
    flat: dict[str, Any] = {
        "intent_accuracy": metrics.accuracy(gold, pred),
        "intent_macro_f1": metrics.macro_f1(gold, pred),
        "intent_accuracy_without_fallback": metrics.accuracy(
            gold, [p.intent_without_fallback for p in predictions]
        ),
        "fallback_rate": sum(p == metrics.FALLBACK for p in pred) / len(pred),
    }
    details: dict[str, Any] = {
        "per_intent": {k: v.as_dict() for k, v in metrics.per_intent_prf(gold, pred).items()},
        "most_confused": [
            {"gold": g, "predicted": p, "count": n}
            for g, p, n in metrics.most_confused(gold, pred, k=20)
        ],
    }
    if has_out_of_scope(test):
        positives = [metrics.is_out_of_scope(g) for g in gold]
        flat.update(
            in_scope_accuracy=metrics.in_scope_accuracy(gold, pred),
            oos_recall=metrics.oos_recall(gold, pred),
            oos_precision=metrics.oos_precision(gold, pred),
            oos_auroc=metrics.auroc(positives, [p.oos_score for p in predictions]),
            n_test_oos=sum(positives),
        )
    if has_entities(train, test):
        gold_entities = _gold_entities(test)
        pred_entities = [set(p.entities) for p in predictions]
        overall = metrics.entity_prf(gold_entities, pred_entities)
        flat.update(
            entity_precision=overall.precision,
            entity_recall=overall.recall,
            entity_f1=overall.f1,
            n_test_entities=overall.support,
        )
        tokens = metrics.entity_token_prf([e.text for e in test], gold_entities, pred_entities)
        flat.update(
            entity_token_precision=tokens.precision,
            entity_token_recall=tokens.recall,
            entity_token_f1=tokens.f1,
        )
        details["per_entity_type"] = {
            k: v.as_dict()
            for k, v in metrics.entity_prf_by_type(gold_entities, pred_entities).items()
        }
    latencies = [p.ms for p in predictions]
    flat.update(
        parse_ms_p50=metrics.percentile(latencies, 50),
        parse_ms_p95=metrics.percentile(latencies, 95),
        parse_ms_mean=sum(latencies) / len(latencies),
        parse_ms_max=max(latencies),
    )
    return flat, details


def pipeline_label(name: str, shortened: Sequence[dict[str, Any]]) -> str:
    """`name`, plus which components trained for fewer epochs than configured."""
    if not shortened:
        return name
    parts = ", ".join(f"{s['component']} {s['epochs']} of {s['of']} epochs" for s in shortened)
    return f"{name} ({parts})"


# --- Markdown -----------------------------------------------------------------------------

_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (report.json key, column title, format: "pct" | "ms" | "s" | "mb" | "auc")
    ("intent_accuracy", "intent acc", "pct"),
    ("intent_macro_f1", "macro-F1", "pct"),
    ("intent_accuracy_without_fallback", "acc w/o fallback", "pct"),
    ("in_scope_accuracy", "in-scope acc", "pct"),
    ("oos_recall", "OOS recall", "pct"),
    ("oos_auroc", "OOS AUROC", "auc"),
    ("entity_precision", "entity P", "pct"),
    ("entity_recall", "entity R", "pct"),
    ("entity_f1", "entity F1", "pct"),
    ("entity_token_f1", "entity F1 (words)", "pct"),
    ("train_seconds", "train s", "s"),
    ("parse_ms_p50", "parse p50 ms", "ms"),
    ("parse_ms_p95", "parse p95 ms", "ms"),
    ("peak_rss_mb", "peak RSS MB", "mb"),
)


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:.2f}"
    if kind == "auc":
        return f"{value:.4f}"
    if kind == "ms":
        return f"{value:.1f}"
    return f"{value:.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(
    report: dict[str, dict[str, Any]],
    details: dict[str, dict[str, Any]],
    plots: dict[str, list[str]],
    data_summary: dict[str, Any],
) -> str:
    """The side-by-side `report.md` of every pipeline in `report`.

    Args:
        report: pipeline name → flat figures (as in `report.json`).
        details: pipeline name → details (per-entity-type scores, confusions).
        plots: pipeline name (or `"all"`) → plot paths relative to the report.
        data_summary: train/test file names, sizes, hashes and label counts, machine facts.
    """
    ok = {name: r for name, r in report.items() if "error" not in r}
    columns = [c for c in _COLUMNS if any(r.get(c[0]) is not None for r in ok.values())]
    lines = ["# NLU benchmark", ""]
    for split in ("train", "test"):
        d = data_summary[split]
        lines.append(
            f"- **{split}**: `{d['file']}`: {d['n']} utterances, {d['n_intents']} intents, "
            f"{d['n_entities']} entity spans (sha256 `{d['sha256'][:12]}`)"
        )
    lines.append(f"- **machine**: {data_summary['machine']}")
    lines += [
        "",
        "## Results",
        "",
        "Rates in %. A prediction of `nlu_fallback` or `out_of_scope` counts as out of scope; "
        "*acc w/o fallback* undoes Rasa's `FallbackClassifier` (its ranking's best intent). "
        "Latency is per message through the trained Rasa model (`Agent.parse_message`), "
        "loaded in a process of its own as `rasa run` loads it.",
        "",
    ]
    rows = [
        [r["label"] + (" *(cached)*" if r.get("cached") else "")]
        + [_fmt(r.get(key), kind) for key, _, kind in columns]
        for r in ok.values()
    ]
    lines += _table(["pipeline"] + [title for _, title, _ in columns], rows)

    typed = {n: d["per_entity_type"] for n, d in details.items() if d.get("per_entity_type")}
    if typed:
        types = sorted({t for per_type in typed.values() for t in per_type})
        support = {
            t: max(per_type.get(t, {}).get("support", 0) for per_type in typed.values())
            for t in types
        }
        lines += ["", "## Entity F1 per type (%)", ""]
        rows = [
            [f"`{t}`", str(support[t])]
            + [_fmt(typed[n][t]["f1"], "pct") if t in typed[n] else "–" for n in typed]
            for t in sorted(types, key=lambda t: (-support[t], t))
        ]
        lines += _table(["entity type", "gold spans"] + list(typed), rows)

    lines += ["", "## Most confused intents", ""]
    for name, d in details.items():
        pairs = d.get("most_confused", [])[:5]
        listed = "; ".join(f"`{p['gold']}` → `{p['predicted']}` ×{p['count']}" for p in pairs)
        lines.append(f"- **{name}**: {listed or 'no errors'}")

    notes = _notes(report, data_summary)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    if plots:
        lines += ["", "## Plots", ""]
        for name, paths in plots.items():
            for path in paths:
                lines.append(f"![{name}: {path}]({path})")
    return "\n".join(lines) + "\n"


def _notes(report: dict[str, dict[str, Any]], data_summary: dict[str, Any]) -> list[str]:
    notes = []
    for name, r in report.items():
        if "error" in r:
            notes.append(f"**{name} failed**: {r['error']} (see `{r.get('log', 'its log')}`)")
            continue
        if r.get("epochs_shortened"):
            notes.append(
                f"**{r['label']}** is a shortened run (`--epochs {r['epochs']}`): its figures "
                "are below what the full configuration reaches."
            )
        if r.get("cached"):
            notes.append(f"{name}: result reused from the cache (`--no-cache` retrains).")
        if r.get("notes"):
            notes.append(f"{name}: {r['notes']}")
    unseen = data_summary.get("test_intents_not_in_train") or []
    if unseen:
        notes.append(
            f"{len(unseen)} test intent(s) never occur in training and cannot be predicted: "
            + ", ".join(f"`{i}`" for i in unseen[:10])
            + (" …" if len(unseen) > 10 else "")
        )
    return notes


def label_counts(examples: Sequence[Example]) -> dict[str, int]:
    """Utterances per intent."""
    return dict(Counter(e.intent for e in examples))
