"""Fine-tuning mode: the top transformer layers learn the intents (pure torch).

Parameter-efficient: the embeddings and lower layers stay frozen (no gradient flows below the
first trainable layer); only the top `layers` layers learn, through a temporary linear head on
the same pooled sentence vector the classifier reads (the mean pooling of `pooling_layers`,
each L2-normalised). Early stopping on a stratified held-out slice picks the best epoch. The
fused classifier is then trained on features from the fine-tuned encoder as in frozen mode.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nlu_components.encoder import SentenceEncoder
from nlu_components.errors import ComponentConfigError
from nlu_components.fusion import _stratified_split

logger = logging.getLogger(__name__)

#: Scale of the unit-norm pooled vectors in the temporary head (a cosine-softmax classifier).
HEAD_SCALE = 16.0


@dataclass(frozen=True)
class FineTuneConfig:
    """How the encoder is fine-tuned."""

    #: Top transformer layers that train (the rest stay frozen).
    layers: int = 2
    epochs: int = 3
    batch_size: int = 32
    encoder_learning_rate: float = 5e-5
    head_learning_rate: float = 3e-3
    threads: int = 2
    pooling_layers: tuple[int, ...] = (2, 4, 6)
    validation_fraction: float = 0.1
    seed: int = 42
    label_smoothing: float = 0.1
    #: Where the layers train: `auto` (a CUDA GPU when torch sees one, else the CPU), `cpu`,
    #: `cuda` or `cuda:N`. The trained weights come back to the CPU either way.
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.layers < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ComponentConfigError("finetune `layers`, `epochs` and `batch_size` must be >= 1")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ComponentConfigError(
                f"finetune `device` must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )


def training_device(name: str) -> torch.device:
    """The torch device `FineTuneConfig.device` names; an unavailable GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ComponentConfigError(
            f"finetune `device: {name}` but torch sees no CUDA GPU here; use `auto` or `cpu`"
        )
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ComponentConfigError(f"finetune `device`: {e}") from e


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


def pooled(
    model: nn.Module,
    encoder: SentenceEncoder,
    texts: Sequence[str],
    layers: Sequence[int],
    device: torch.device | None = None,
) -> torch.Tensor:
    """Differentiable pooled sentence vectors (B, len(layers) · d), as the featurizer makes them."""
    batch = encoder.tokenizer(
        [text if text.strip() else "." for text in texts],
        padding=True,
        truncation=True,
        max_length=encoder.max_length,
        return_tensors="pt",
    )
    if device is not None:
        batch = batch.to(device)
    states = model(**batch, output_hidden_states=True).hidden_states
    weights = batch["attention_mask"].unsqueeze(-1).float()
    chosen = list(layers) or [len(states) - 1]
    parts = [
        nn.functional.normalize(
            (states[i] * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=-1
        )
        for i in chosen
    ]
    return torch.cat(parts, -1)


def finetune(
    encoder: SentenceEncoder,
    texts: Sequence[str],
    labels: Sequence[str],
    config: FineTuneConfig,
) -> dict[str, torch.Tensor]:
    """Fine-tune the top encoder layers on the intents; return the trained layers' weights."""
    label_list = sorted(set(labels))
    if len(label_list) < 2:
        raise ComponentConfigError("fine-tuning needs at least two intents")
    y = np.array([label_list.index(label) for label in labels])
    train_idx, val_idx = _stratified_split(y, config.validation_fraction, config.seed)
    device = training_device(config.device)
    net = copy.deepcopy(encoder.model).to(device)
    names = set(trainable_layer_names(net, config.layers))
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name in names)
    torch.manual_seed(config.seed)
    dim = encoder.dim * max(1, len(config.pooling_layers))
    head = nn.Linear(dim, len(label_list)).to(device)
    targets = torch.from_numpy(y).to(device)
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for n, p in net.named_parameters() if n in names],
             "lr": config.encoder_learning_rate},
            {"params": list(head.parameters()), "lr": config.head_learning_rate},
        ],
        weight_decay=0.01,
    )  # fmt: skip
    steps = config.epochs * math.ceil(len(train_idx) / config.batch_size)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.05, 1 - step / steps)
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    rng = random.Random(config.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)

    def held_out_accuracy() -> float:
        if not len(val_idx):
            return float("nan")
        net.eval()
        correct = 0
        with torch.inference_mode():
            for start in range(0, len(val_idx), 128):
                index = val_idx[start : start + 128]
                vectors = pooled(
                    net, encoder, [texts[i] for i in index], config.pooling_layers, device
                )
                predicted = head(HEAD_SCALE * vectors).argmax(-1)
                correct += int((predicted == targets[_indices(index, device)]).sum())
        return correct / len(val_idx)

    try:
        best_accuracy = -1.0
        best = _on_cpu(net, names)
        order = list(train_idx)
        for epoch in range(1, config.epochs + 1):
            net.train()
            rng.shuffle(order)
            for start in range(0, len(order), config.batch_size):
                index = order[start : start + config.batch_size]
                vectors = pooled(
                    net, encoder, [texts[i] for i in index], config.pooling_layers, device
                )
                loss = loss_fn(head(HEAD_SCALE * vectors), targets[_indices(index, device)])
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                scheduler.step()
            accuracy = held_out_accuracy()
            logger.info("fine-tuning: epoch %d held-out accuracy %.4f", epoch, accuracy)
            if accuracy > best_accuracy or math.isnan(accuracy):
                best_accuracy = accuracy
                best = _on_cpu(net, names)
    finally:
        torch.set_num_threads(previous_threads)
    return {name: best[name] for name in sorted(names)}


def _indices(index: Sequence[int] | np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(index, dtype=np.int64), device=device)


def _on_cpu(net: nn.Module, names: set[str]) -> dict[str, torch.Tensor]:
    """A copy of `net`'s trainable weights in CPU memory (the best epoch's so far)."""
    return {
        name: tensor.detach().to("cpu", copy=True)
        for name, tensor in net.state_dict().items()
        if name in names
    }
