"""A/B of the lean single-text forward pass: pre-packed products + 4-D attention vs plain.

    python scripts/lean_ab.py [--data ../shared/data/stackfaq/dev.jsonl] [--n 300] [--rounds 3]

Alternates the two variants on every message in one process (this VM's speed drifts by ±30 %
within minutes, so separate runs do not compare), on one torch thread as the bot runs, and
prints per-variant p50/p95 in ms and the largest difference of their pooled vectors.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from nlu_components.encoder import load_encoder
from nlu_components.lean import has_fast_bf16, lean_forwards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/stackfaq/dev.jsonl")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with open(args.data, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][: args.n]
    encoder = load_encoder(None)
    name = "bf16" if has_fast_bf16() else "fp32"
    variants = {
        "packed": dict(lean_forwards(encoder, packed=True))[name],
        "plain": dict(lean_forwards(encoder, packed=False))[name],
    }
    layers = tuple(range(7))
    worst = max(
        float(
            np.abs(variants["packed"](t, layers).layers - variants["plain"](t, layers).layers).max()
        )
        for t in texts[:50]
    )
    timings: dict[str, list[float]] = {k: [] for k in variants}
    for text in texts[:20]:
        for forward in variants.values():
            forward(text, ())
    for _ in range(args.rounds):
        for text in texts:
            for key, forward in variants.items():
                started = time.perf_counter()
                forward(text, ())
                timings[key].append((time.perf_counter() - started) * 1000)
    result = {
        key: {
            "p50_ms": round(float(np.percentile(v, 50)), 2),
            "p95_ms": round(float(np.percentile(v, 95)), 2),
        }
        for key, v in timings.items()
    }
    result["precision"] = name  # type: ignore[assignment]
    result["max_pooled_difference"] = worst  # type: ignore[assignment]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
