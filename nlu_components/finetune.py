"""Fine-tuning mode: the top transformer layers train together with the fusion head (pure).

Parameter-efficient: the embeddings and lower layers stay frozen (no gradient flows below the
first trainable layer), only the top `layers` layers and the head learn. The head is first
trained on frozen features (fast), then encoder and head train jointly with early stopping on
the same held-out slice, which also recalibrates confidence and the out-of-scope thresholds.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nlu_components.align import alignment_matrix
from nlu_components.encoder import SentenceEncoder
from nlu_components.errors import ComponentConfigError
from nlu_components.fusion import Example, FusionClassifierModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneConfig:
    """How the encoder is fine-tuned."""

    #: Top transformer layers that train (the rest stay frozen).
    layers: int = 2
    epochs: int = 3
    batch_size: int = 32
    encoder_learning_rate: float = 3e-5
    head_learning_rate: float = 3e-4
    threads: int = 2

    def __post_init__(self) -> None:
        if self.layers < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ComponentConfigError("finetune `layers`, `epochs` and `batch_size` must be >= 1")


def trainable_layer_names(model: nn.Module, layers: int) -> list[str]:
    """Parameter names of the top `layers` transformer layers of a BERT-style encoder."""
    blocks = getattr(getattr(model, "encoder", None), "layer", None)
    if blocks is None:
        raise ComponentConfigError("fine-tuning needs a BERT-style encoder (model.encoder.layer)")
    if layers > len(blocks):
        raise ComponentConfigError(f"the encoder has only {len(blocks)} layers to fine-tune")
    first = len(blocks) - layers
    prefixes = tuple(f"encoder.layer.{i}." for i in range(first, len(blocks)))
    return [name for name, _ in model.named_parameters() if name.startswith(prefixes)]


def encode_for_head(
    model: nn.Module,
    encoder: SentenceEncoder,
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token vectors (B, L, D), token mask (B, L) and sentence vectors (B, D) — differentiable."""
    batch = encoder.tokenizer(
        [text if text.strip() else "." for text in texts],
        padding=True,
        truncation=True,
        max_length=encoder.max_length,
        return_tensors="pt",
        return_offsets_mapping=True,
    )
    offsets = batch.pop("offset_mapping").numpy()
    hidden = model(**batch).last_hidden_state
    attention = batch["attention_mask"]
    weights = attention.unsqueeze(-1).to(hidden.dtype)
    sentence = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    sentence = nn.functional.normalize(sentence, dim=-1)
    max_tokens = max(1, max(len(s) for s in spans))
    pool = np.zeros((len(texts), max_tokens, hidden.shape[1]), dtype=np.float32)
    mask = np.zeros((len(texts), max_tokens), dtype=bool)
    for row, token_spans in enumerate(spans):
        length = int(attention[row].sum())
        pieces = slice(1, max(1, length - 1))  # drop [CLS] and [SEP]
        matrix = alignment_matrix(offsets[row, pieces], token_spans)
        pool[row, : len(token_spans), pieces] = matrix
        mask[row, : max(1, len(token_spans))] = True
    tokens = torch.bmm(torch.from_numpy(pool), hidden)
    return tokens, torch.from_numpy(mask), sentence


def reencode(
    model: nn.Module,
    encoder: SentenceEncoder,
    examples: Sequence[Example],
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    batch_size: int = 64,
) -> list[Example]:
    """The same examples with token and sentence vectors from `model` (no gradient)."""
    out: list[Example] = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            stop = start + batch_size
            tokens, mask, sentence = encode_for_head(
                model, encoder, texts[start:stop], spans[start:stop]
            )
            for row, example in enumerate(examples[start:stop]):
                n = max(1, len(spans[start + row]))
                out.append(
                    Example(
                        tokens=tokens[row, :n].numpy().copy(),
                        sentence=sentence[row].numpy().copy(),
                        token_syntax=example.token_syntax,
                        cues=example.cues,
                    )
                )
    return out


def finetune(
    model: FusionClassifierModel,
    encoder: SentenceEncoder,
    examples: Sequence[Example],
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    labels: Sequence[str],
    config: FineTuneConfig,
) -> FusionClassifierModel:
    """Jointly fine-tune the top encoder layers and `model`'s head; recalibrate; return it.

    `model` must have been trained on frozen features with `refit_on_all: false`, so the
    held-out slice is still unseen. Sets `model.encoder_state` (the fine-tuned layers).
    """
    y, train_idx, val_idx = model.split(labels)
    net = copy.deepcopy(encoder.model)
    names = set(trainable_layer_names(net, config.layers))
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name in names)
    optimizer = torch.optim.AdamW(
        [
            {
                "params": [p for n, p in net.named_parameters() if n in names],
                "lr": config.encoder_learning_rate,
            },
            {"params": list(model.net.parameters()), "lr": config.head_learning_rate},
        ],
        weight_decay=model.config.weight_decay,
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=model.config.label_smoothing)
    rng = random.Random(model.config.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)

    def held_out_accuracy() -> float:
        if not len(val_idx):
            return float("nan")
        encoded = reencode(
            net,
            encoder,
            [examples[i] for i in val_idx],
            [texts[i] for i in val_idx],
            [spans[i] for i in val_idx],
        )
        return float((model._logits(encoded).argmax(-1).numpy() == y[val_idx]).mean())

    try:
        best_accuracy = held_out_accuracy()
        best = (copy.deepcopy(net.state_dict()), copy.deepcopy(model.net.state_dict()))
        logger.info("fine-tuning: held-out accuracy before %.4f", best_accuracy)
        order = list(train_idx)
        for epoch in range(1, config.epochs + 1):
            net.train()
            model.net.train()
            rng.shuffle(order)
            for start in range(0, len(order), config.batch_size):
                index = order[start : start + config.batch_size]
                tokens, mask, sentence = encode_for_head(
                    net, encoder, [texts[i] for i in index], [spans[i] for i in index]
                )
                batch = model._batch([examples[i] for i in index])
                length = min(tokens.shape[1], batch.token_syntax.shape[1])
                logits, _ = model.net(
                    tokens[:, :length],
                    mask[:, :length],
                    sentence,
                    batch.token_syntax[:, :length],
                    batch.cue_ids,
                    batch.cue_offsets,
                    batch.cue_weights,
                )
                loss = loss_fn(logits, torch.from_numpy(y[index]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            accuracy = held_out_accuracy()
            logger.info("fine-tuning: epoch %d held-out accuracy %.4f", epoch, accuracy)
            if accuracy >= best_accuracy:  # ties: keep the fine-tuned state
                best_accuracy = accuracy
                best = (copy.deepcopy(net.state_dict()), copy.deepcopy(model.net.state_dict()))
        net.load_state_dict(best[0])
        model.net.load_state_dict(best[1])
        model.encoder_state = {name: best[0][name].clone() for name in sorted(names)}
        model.finetune_layers = config.layers
        model.validation_accuracy = best_accuracy
        encoded = reencode(net, encoder, examples, texts, spans)
        in_scope = model.in_scope(y)
        model.calibrate(
            [encoded[i] for i in val_idx],
            y[val_idx],
            [encoded[i] for i in train_idx if in_scope[i]],
        )
    finally:
        torch.set_num_threads(previous_threads)
    return model
