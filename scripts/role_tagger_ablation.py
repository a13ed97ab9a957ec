"""Entity F1 of the semantic-role tagger alone, with and without its role features.

A quick benchmark of `nlu_components.role_tagger` outside Rasa (the full pipelines are compared
by `fusiondesk bench nlu`): parse with the bot's spaCy pipeline, encode with the bot's MiniLM
(token vectors pooled per word as `TransformerEncoderFeaturizer` does), train the CRF on
`--train`, and score exact span + type micro precision / recall / F1 on `--test`.

    python scripts/role_tagger_ablation.py --train train.jsonl --test dev.jsonl \
        --out results/roles-snips.json [--variant name='{"use_role_features": false}']

Without `--variant`, it runs `full` (the extractor's defaults), `no-roles` (the ablation) and
`with-spacy-entities` (spaCy's NER read as features and typed values, as
`use_spacy_entities: true` does). Files are JSON lines with
`text` and `entities` (`start`, `end`, `entity`), as in the benchmark data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.env import apply_process_env  # noqa: E402

apply_process_env()

from nlu_components.align import pool_pieces_to_tokens  # noqa: E402
from nlu_components.encoder import load_encoder  # noqa: E402
from nlu_components.role_tagger import (  # noqa: E402
    EntitySpan,
    RoleTagger,
    TaggerConfig,
    TaggerInput,
)
from nlu_components.spacy_parser import (  # noqa: E402
    DEFAULT_SPACY_MODEL,
    load_parsing_pipeline,
    without_entities,
)

DEFAULT_VARIANTS = {
    "full": {},
    "no-roles": {"use_role_features": False},
    "with-spacy-entities": {"use_spacy_entities": True},
}


def read(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def prepare(rows: list[dict[str, Any]], nlp: Any, encoder: Any) -> list[TaggerInput]:
    texts = [r["text"] for r in rows]
    docs = list(nlp.pipe(texts, batch_size=256))
    encodings = encoder.encode_tokens(texts, num_threads=2)
    inputs = []
    for doc, encoding in zip(docs, encodings, strict=True):
        spans = [(t.idx, t.idx + len(t.text)) for t in doc]
        vectors = pool_pieces_to_tokens(encoding.vectors, encoding.offsets, spans)
        inputs.append(TaggerInput(doc, vectors, encoding.sentence))
    # gold intents: an upper bound for the intent features (the Rasa benchmark uses predicted)
    return [dataclasses.replace(i, intent=r.get("intent")) for i, r in zip(inputs, rows)]


def without_spacy_entities(*groups: list[TaggerInput]) -> list[list[TaggerInput]]:
    return [[dataclasses.replace(i, doc=without_entities(i.doc)) for i in g] for g in groups]


def gold(rows: list[dict[str, Any]]) -> list[list[EntitySpan]]:
    return [[EntitySpan(e["start"], e["end"], e["entity"]) for e in r["entities"]] for r in rows]


def score(truth: list[list[EntitySpan]], predicted: list[list[EntitySpan]]) -> dict[str, Any]:
    """Exact span + type micro P/R/F1 (in %) and F1 per type."""
    counts: dict[str, Counter[str]] = {}
    tp = fp = fn = 0
    for g, p in zip(truth, predicted, strict=True):
        gs = {(s.start, s.end, s.entity) for s in g}
        ps = {(s.start, s.end, s.entity) for s in p}
        for key, bucket in ((gs & ps, "tp"), (ps - gs, "fp"), (gs - ps, "fn")):
            for _, _, kind in key:
                counts.setdefault(kind, Counter())[bucket] += 1
        tp, fp, fn = tp + len(gs & ps), fp + len(ps - gs), fn + len(gs - ps)

    def prf(t: int, f_p: int, f_n: int) -> tuple[float, float, float]:
        p = t / (t + f_p) if t + f_p else 0.0
        r = t / (t + f_n) if t + f_n else 0.0
        return 100 * p, 100 * r, (200 * p * r / (p + r) if p + r else 0.0)

    precision, recall, f1 = prf(tp, fp, fn)
    per_type = {k: round(prf(c["tp"], c["fp"], c["fn"])[2], 2) for k, c in sorted(counts.items())}
    return {
        "precision": round(precision, 2),
        "recall": round(recall, 2),
        "f1": round(f1, 2),
        "support": tp + fn,
        "f1_per_type": per_type,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON report to write")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="tagger settings to compare, e.g. no-roles='{\"use_role_features\": false}'",
    )
    parser.add_argument(
        "--annotated-intents-only",
        action="store_true",
        help="train only on intents with entity annotations (the extractor's default)",
    )
    args = parser.parse_args(argv)
    variants = dict(DEFAULT_VARIANTS)
    if args.variant:
        variants = {}
        for item in args.variant:
            name, _, raw = item.partition("=")
            variants[name] = json.loads(raw or "{}")
    train_rows, test_rows = read(args.train), read(args.test)
    if args.annotated_intents_only:
        annotated = {r.get("intent") for r in train_rows if r["entities"]}
        train_rows = [r for r in train_rows if r.get("intent") in annotated]
    nlp, encoder = load_parsing_pipeline(DEFAULT_SPACY_MODEL), load_encoder(max_length=64)
    started = time.monotonic()
    train_inputs, test_inputs = prepare(train_rows, nlp, encoder), prepare(test_rows, nlp, encoder)
    prepared_s = time.monotonic() - started
    report: dict[str, Any] = {
        "train": str(args.train),
        "train_utterances": len(train_rows),
        "test": str(args.test),
        "prepare_seconds": round(prepared_s, 1),
        "variants": {},
    }
    for name, settings in variants.items():
        # as SemanticRoleEntityExtractor's setting: spaCy's entities are read only when asked
        tagger_settings = {k: v for k, v in settings.items() if k != "use_spacy_entities"}
        train_for, test_for = train_inputs, test_inputs
        if not settings.get("use_spacy_entities", False):
            train_for, test_for = without_spacy_entities(train_inputs, test_inputs)
        tagger = RoleTagger(TaggerConfig.from_dict(tagger_settings))
        started = time.monotonic()
        tagger.fit(train_for, gold(train_rows))
        trained_s = time.monotonic() - started
        started = time.monotonic()
        predicted = tagger.predict(test_for)
        result = score(gold(test_rows), predicted)
        result.update(
            settings=settings,
            train_seconds=round(trained_s, 1),
            predict_ms_per_utterance=round(1000 * (time.monotonic() - started) / len(test_rows), 2),
        )
        report["variants"][name] = result
        print(f"{name}: P {result['precision']} R {result['recall']} F1 {result['f1']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
