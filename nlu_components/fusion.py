"""The fusion model: transformer view M(x) and syntax view T(x), gated, calibrated (pure torch).

    M  = GELU(W_m [mean(h) ; Σ_t a_t h_t])        a_t = softmax_t(v · tanh(W_h h_t + W_s s_t))
    T  = GELU(Σ_c w_c e_c)                         e_c: embedding of syntax cue c
    g  = σ(W_g [M ; T])                            per-message, per-dimension gate
    F  = g ⊙ T + (1 − g) ⊙ M
    p  = softmax(W_o LayerNorm(F) / temperature)

h_t are the encoder's contextual token vectors, s_t the token syntax features (dependency
label, POS, structural flags), so the attention that pools tokens is steered by the parse.
Training uses early stopping on a held-out slice, then temperature scaling on that slice, and
optionally refits on all data for the chosen number of epochs. No Rasa imports here.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nlu_components.errors import ComponentConfigError, ModelLoadError

logger = logging.getLogger(__name__)

VIEWS = ("encoder", "syntax")


@dataclass(frozen=True)
class FusionConfig:
    """Hyper-parameters of the fusion model (validated on construction)."""

    views: tuple[str, ...] = VIEWS
    hidden_dim: int = 256
    cue_dim: int = 64
    attention_dim: int = 128
    dropout: float = 0.2
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    patience: int = 4
    validation_fraction: float = 0.1
    refit_on_all: bool = True
    min_cue_count: int = 2
    max_tokens: int = 48
    seed: int = 42
    training_threads: int = 2
    oos_intent: str = "out_of_scope"
    oos_in_scope_rejection: float = 0.02
    oos_threshold: float | None = None
    oos_similarity_threshold: float | None = None

    def __post_init__(self) -> None:
        views = tuple(self.views)
        object.__setattr__(self, "views", views)
        if not views or any(v not in VIEWS for v in views):
            raise ComponentConfigError(f"`views` must be a non-empty subset of {list(VIEWS)}")
        if not 0.0 < self.validation_fraction < 0.5:
            raise ComponentConfigError("`validation_fraction` must be in (0, 0.5)")
        if not 0.0 <= self.oos_in_scope_rejection < 0.5:
            raise ComponentConfigError("`oos_in_scope_rejection` must be in [0, 0.5)")
        if self.epochs < 1 or self.batch_size < 1 or self.hidden_dim < 8:
            raise ComponentConfigError("`epochs`, `batch_size` and `hidden_dim` must be positive")


@dataclass
class Example:
    """One message's inputs to the fusion model."""

    tokens: np.ndarray  # (L, enc_dim) contextual token vectors
    sentence: np.ndarray  # (enc_dim,) sentence embedding
    token_syntax: np.ndarray  # (L', syn_dim) token syntax features (aligned with tokens)
    cues: list[str] = field(default_factory=list)


@dataclass
class Prediction:
    """Calibrated output for one message."""

    probabilities: np.ndarray
    #: Cosine similarity to the nearest in-scope training message (novelty signal).
    similarity: float
    gate: float | None
    cue_contributions: list[tuple[str, float]]
    token_weights: list[float]


class FusionNet(nn.Module):
    """The gated fusion network (see the module docstring)."""

    def __init__(
        self, enc_dim: int, syn_dim: int, n_cues: int, n_labels: int, config: FusionConfig
    ) -> None:
        super().__init__()
        self.use_encoder = "encoder" in config.views
        self.use_syntax = "syntax" in config.views
        hidden = config.hidden_dim
        if self.use_encoder:
            pooled = enc_dim
            if self.use_syntax:
                self.att_h = nn.Linear(enc_dim, config.attention_dim)
                self.att_s = nn.Linear(syn_dim, config.attention_dim, bias=False)
                self.att_v = nn.Linear(config.attention_dim, 1, bias=False)
                pooled = 2 * enc_dim
            self.enc_proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(pooled, hidden))
            # unit-norm sentence vectors → unit-variance inputs; plus a linear path from the
            # sentence embedding to the logits, so the model is never weaker than a linear
            # classifier on the encoder alone
            self.sentence_scale = float(enc_dim) ** 0.5
            self.skip = nn.Linear(enc_dim, n_labels)
        if self.use_syntax:
            self.cue_emb = nn.EmbeddingBag(n_cues + 1, config.cue_dim, mode="sum")
            self.syn_proj = nn.Linear(config.cue_dim, hidden)
        if self.use_encoder and self.use_syntax:
            self.gate = nn.Linear(2 * hidden, hidden)
            nn.init.constant_(self.gate.bias, -2.0)  # start close to the encoder view
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(hidden, n_labels)

    def forward(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        sentence: torch.Tensor,
        token_syntax: torch.Tensor,
        cue_ids: torch.Tensor,
        cue_offsets: torch.Tensor,
        cue_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        aux: dict[str, torch.Tensor] = {}
        m = t = None
        if self.use_encoder:
            sentence = sentence * self.sentence_scale
            pooled = sentence
            if self.use_syntax:
                scores = self.att_v(torch.tanh(self.att_h(tokens) + self.att_s(token_syntax)))
                scores = scores.squeeze(-1).masked_fill(~mask, -1e4)
                weights = torch.softmax(scores, dim=-1)
                aux["attention"] = weights
                pooled = torch.cat(
                    [sentence, torch.bmm(weights.unsqueeze(1), tokens).squeeze(1)], -1
                )
            m = self.act(self.enc_proj(pooled))
        if self.use_syntax:
            bag = self.cue_emb(cue_ids, cue_offsets, per_sample_weights=cue_weights)
            t = self.act(self.syn_proj(bag))
        if m is not None and t is not None:
            g = torch.sigmoid(self.gate(torch.cat([m, t], dim=-1)))
            aux["gate"] = g
            fused = g * t + (1 - g) * m
        else:
            fused = m if m is not None else t
        if fused is None:
            raise ComponentConfigError("the fusion model has no view switched on")
        logits = self.out(self.drop(self.norm(fused)))
        if self.use_encoder:
            logits = logits + self.skip(self.drop(sentence))
        return logits, aux


@dataclass
class Batch:
    tokens: torch.Tensor
    mask: torch.Tensor
    sentence: torch.Tensor
    token_syntax: torch.Tensor
    cue_ids: torch.Tensor
    cue_offsets: torch.Tensor
    cue_weights: torch.Tensor

    def inputs(self) -> tuple[torch.Tensor, ...]:
        return (
            self.tokens, self.mask, self.sentence, self.token_syntax,
            self.cue_ids, self.cue_offsets, self.cue_weights,
        )  # fmt: skip


class FusionClassifierModel:
    """Trains, calibrates, predicts, saves and loads the fusion network."""

    WEIGHTS_FILE = "fusion.safetensors"
    META_FILE = "fusion.json"

    def __init__(
        self,
        config: FusionConfig,
        labels: list[str],
        cue_vocab: dict[str, int],
        enc_dim: int,
        syn_dim: int,
    ) -> None:
        self.config = config
        self.labels = labels
        self.cue_vocab = cue_vocab
        self.cue_names = {i: c for c, i in cue_vocab.items()}
        self.enc_dim = enc_dim
        self.syn_dim = syn_dim
        self.temperature = 1.0
        self.oos_threshold: float | None = config.oos_threshold
        self.similarity_threshold: float | None = config.oos_similarity_threshold
        #: L2-normalised sentence embeddings of the in-scope training messages.
        self.reference = np.zeros((0, enc_dim), dtype=np.float32)
        self.best_epochs = 0
        self.validation_accuracy: float | None = None
        #: Fine-tuned encoder layers (fine-tuning mode) and how many top layers they are.
        self.encoder_state: dict[str, torch.Tensor] | None = None
        self.finetune_layers = 0
        self.net = FusionNet(enc_dim, syn_dim, len(cue_vocab), len(labels), config)

    # ---------------------------------------------------------------- inputs
    def _batch(self, examples: Sequence[Example]) -> Batch:
        max_len = max(1, min(self.config.max_tokens, max(len(e.tokens) for e in examples)))
        n = len(examples)
        tokens = np.zeros((n, max_len, self.enc_dim), dtype=np.float32)
        syntax = np.zeros((n, max_len, self.syn_dim), dtype=np.float32)
        mask = np.zeros((n, max_len), dtype=bool)
        ids: list[int] = []
        offsets: list[int] = []
        weights: list[float] = []
        for row, example in enumerate(examples):
            length = min(max_len, len(example.tokens))
            tokens[row, :length] = example.tokens[:length]
            aligned = min(length, len(example.token_syntax))
            syntax[row, :aligned] = example.token_syntax[:aligned]
            mask[row, :length] = True
            if length == 0:
                mask[row, 0] = True
            offsets.append(len(ids))
            known = [self.cue_vocab[c] for c in example.cues if c in self.cue_vocab]
            ids += known
            weights += [1.0 / math.sqrt(max(1, len(known)))] * len(known)
        return Batch(
            tokens=torch.from_numpy(tokens),
            mask=torch.from_numpy(mask),
            sentence=torch.from_numpy(np.stack([e.sentence for e in examples]).astype(np.float32)),
            token_syntax=torch.from_numpy(syntax),
            cue_ids=torch.tensor(ids, dtype=torch.long),
            cue_offsets=torch.tensor(offsets, dtype=torch.long),
            cue_weights=torch.tensor(weights, dtype=torch.float32),
        )

    # ---------------------------------------------------------------- training
    @classmethod
    def train(
        cls, examples: Sequence[Example], labels: Sequence[str], config: FusionConfig
    ) -> FusionClassifierModel:
        """Fit on `examples` with early stopping, calibration and an OOS threshold."""
        if len(examples) != len(labels) or not examples:
            raise ComponentConfigError("the fused classifier needs at least one labelled example")
        label_list = sorted(set(labels))
        if len(label_list) < 2:
            raise ComponentConfigError("the fused classifier needs at least two intents")
        counts = Counter(c for e in examples for c in set(e.cues))
        vocab = {
            c: i
            for i, c in enumerate(sorted(k for k, v in counts.items() if v >= config.min_cue_count))
        }
        enc_dim = int(examples[0].sentence.shape[-1])
        syn_dim = (
            int(examples[0].token_syntax.shape[-1])
            if len(examples[0].token_syntax.shape) == 2
            else 1
        )
        y = np.array([label_list.index(label) for label in labels])
        train_idx, val_idx = _stratified_split(y, config.validation_fraction, config.seed)
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(config.training_threads)
        try:
            torch.manual_seed(config.seed)
            model = cls(config, label_list, vocab, enc_dim, syn_dim)
            best_epochs, val_acc = model._fit(examples, y, train_idx, val_idx, config.epochs)
            in_scope = _in_scope_mask(label_list, y, config.oos_intent)
            model.calibrate(
                [examples[i] for i in val_idx],
                y[val_idx],
                [examples[i] for i in train_idx if in_scope[i]],
            )
            if config.refit_on_all and len(val_idx):
                torch.manual_seed(config.seed)
                refit = cls(config, label_list, vocab, enc_dim, syn_dim)
                # same learning-rate schedule as the early-stopped run, stopped at its best epoch
                refit._fit(
                    examples,
                    y,
                    np.arange(len(y)),
                    np.array([], dtype=int),
                    config.epochs,
                    best_epochs,
                )
                refit.temperature = model.temperature
                refit.oos_threshold = model.oos_threshold
                refit.similarity_threshold = model.similarity_threshold
                refit.reference = _reference([e for e, keep in zip(examples, in_scope) if keep])
                model = refit
            model.best_epochs = best_epochs
            model.validation_accuracy = val_acc
        finally:
            torch.set_num_threads(previous_threads)
        logger.info(
            "fused classifier: %d epochs, held-out accuracy %.4f, temperature %.3f, OOS threshold %s",
            best_epochs, val_acc, model.temperature, model.oos_threshold,
        )  # fmt: skip
        return model

    def _fit(
        self,
        examples: Sequence[Example],
        y: np.ndarray,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        epochs: int,
        stop_after: int | None = None,
    ) -> tuple[int, float]:
        config = self.config
        torch.manual_seed(config.seed)
        rng = random.Random(config.seed)
        optimizer = torch.optim.AdamW(
            self.net.parameters(),
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
            fused=True,  # one kernel per step: several times faster on CPU
        )
        steps = max(1, epochs * math.ceil(len(train_idx) / config.batch_size))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(steps))
        loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        best: tuple[float, int, dict[str, torch.Tensor] | None] = (-1.0, 0, None)
        bad_epochs = 0
        order = list(train_idx)
        for epoch in range(1, (stop_after or epochs) + 1):
            self.net.train()
            rng.shuffle(order)
            for start in range(0, len(order), config.batch_size):
                index = order[start : start + config.batch_size]
                batch = self._batch([examples[i] for i in index])
                logits, _ = self.net(*batch.inputs())
                loss = loss_fn(logits, torch.from_numpy(y[index]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
            if len(val_idx) == 0:
                continue
            accuracy = float(
                (
                    self._logits([examples[i] for i in val_idx]).argmax(-1).numpy() == y[val_idx]
                ).mean()
            )
            if accuracy > best[0]:
                best = (accuracy, epoch, {k: v.clone() for k, v in self.net.state_dict().items()})
                bad_epochs = 0
            else:
                bad_epochs += 1
                if bad_epochs >= config.patience:
                    break
        if best[2] is not None:
            self.net.load_state_dict(best[2])
            return best[1], best[0]
        return stop_after or epochs, float("nan")

    def _logits(self, examples: Sequence[Example], batch_size: int = 256) -> torch.Tensor:
        self.net.eval()
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(examples), batch_size):
                batch = self._batch(examples[start : start + batch_size])
                outputs.append(self.net(*batch.inputs())[0])
        return torch.cat(outputs) if outputs else torch.zeros((0, len(self.labels)))

    def split(self, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Label ids and the (train, held-out) split `train` uses for these labels."""
        y = np.array([self.labels.index(label) for label in labels])
        return (y, *_stratified_split(y, self.config.validation_fraction, self.config.seed))

    def in_scope(self, y: np.ndarray) -> np.ndarray:
        return _in_scope_mask(self.labels, y, self.config.oos_intent)

    def calibrate(
        self, held_out: Sequence[Example], y_held_out: np.ndarray, reference: Sequence[Example]
    ) -> None:
        """Temperature, confidence threshold and similarity threshold from a held-out slice.

        `reference` are the in-scope training messages novelty is measured against.
        """
        config = self.config
        logits = self._logits(held_out)
        self.temperature = _fit_temperature(logits, torch.from_numpy(y_held_out))
        threshold = self._oos_threshold(logits / self.temperature, y_held_out)
        self.oos_threshold = config.oos_threshold if config.oos_threshold is not None else threshold
        self.reference = _reference(list(reference))
        in_scope = [e for e, keep in zip(held_out, self.in_scope(y_held_out)) if keep]
        similarity_threshold = (
            float(np.quantile(self._similarity(in_scope), config.oos_in_scope_rejection))
            if in_scope and len(self.reference)
            else None
        )
        self.similarity_threshold = (
            config.oos_similarity_threshold
            if config.oos_similarity_threshold is not None
            else similarity_threshold
        )

    def _oos_threshold(self, logits: torch.Tensor, y: np.ndarray) -> float | None:
        """Confidence below which an in-scope prediction becomes out-of-scope.

        Chosen on the held-out slice so that about `oos_in_scope_rejection` of correctly
        classified in-scope messages would be rejected; None when the data has no OOS intent.
        """
        if self.config.oos_intent not in self.labels or len(y) == 0:
            return None
        oos = self.labels.index(self.config.oos_intent)
        probs = torch.softmax(logits, -1).numpy()
        predicted = probs.argmax(-1)
        confident = probs.max(-1)[(y != oos) & (predicted == y)]
        if len(confident) == 0:
            return None
        return float(np.quantile(confident, self.config.oos_in_scope_rejection))

    def _similarity(self, examples: Sequence[Example]) -> np.ndarray:
        """Cosine similarity of each message to its nearest in-scope training message."""
        if not len(self.reference) or not examples:
            return np.ones(len(examples), dtype=np.float32)
        queries = _reference(examples)
        return (queries @ self.reference.T).max(axis=1)

    def is_out_of_scope(self, prediction: Prediction) -> bool:
        """Whether a prediction falls below either calibrated out-of-scope threshold."""
        too_unsure = (
            self.oos_threshold is not None
            and float(prediction.probabilities.max()) < self.oos_threshold
        )
        too_novel = (
            self.similarity_threshold is not None
            and prediction.similarity < self.similarity_threshold
        )
        return too_unsure or too_novel

    # ---------------------------------------------------------------- prediction
    def predict(self, examples: Sequence[Example], explain: bool = True) -> list[Prediction]:
        """Calibrated probabilities (+ gate, cue contributions and token weights)."""
        if not examples:
            return []
        self.net.eval()
        batch = self._batch(examples)
        explain = explain and self.net.use_syntax
        weights = batch.cue_weights.clone().requires_grad_(explain)
        with torch.set_grad_enabled(explain):
            logits, aux = self.net(*batch.inputs()[:-1], weights)
            scaled = logits / self.temperature
            probs = torch.softmax(scaled, -1)
            grads = None
            if explain and weights.numel():
                top = scaled.gather(1, scaled.argmax(-1, keepdim=True)).sum()
                (grads,) = torch.autograd.grad(top, weights)
        probs_np = probs.detach().numpy()
        similarity = self._similarity(examples)
        offsets = batch.cue_offsets.tolist() + [len(batch.cue_ids)]
        results = []
        for row in range(len(examples)):
            contributions: list[tuple[str, float]] = []
            if grads is not None:
                lo, hi = offsets[row], offsets[row + 1]
                ids = batch.cue_ids[lo:hi].tolist()
                scores = (grads[lo:hi] * weights[lo:hi]).detach().tolist()
                contributions = [(self.cue_names[i], s) for i, s in zip(ids, scores)]
                contributions.sort(key=lambda item: -abs(item[1]))
            gate = float(aux["gate"][row].mean().detach()) if "gate" in aux else None
            length = int(batch.mask[row].sum())
            token_weights = (
                aux["attention"][row, :length].detach().tolist() if "attention" in aux else []
            )
            results.append(
                Prediction(
                    probs_np[row], float(similarity[row]), gate, contributions, token_weights
                )
            )
        return results

    # ---------------------------------------------------------------- persistence
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        tensors["__reference__"] = torch.from_numpy(self.reference.astype(np.float16))
        for name, value in (self.encoder_state or {}).items():
            tensors[f"__encoder__.{name}"] = value.contiguous()
        save_file(tensors, str(directory / self.WEIGHTS_FILE))
        meta = {
            "config": asdict(self.config),
            "labels": self.labels,
            "cue_vocab": self.cue_vocab,
            "enc_dim": self.enc_dim,
            "syn_dim": self.syn_dim,
            "temperature": self.temperature,
            "oos_threshold": self.oos_threshold,
            "similarity_threshold": self.similarity_threshold,
            "best_epochs": self.best_epochs,
            "validation_accuracy": self.validation_accuracy,
            "finetune_layers": self.finetune_layers,
        }
        (directory / self.META_FILE).write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> FusionClassifierModel:
        """Load a saved model; `ModelLoadError` (naming the fix) if files are missing or stale."""
        try:
            meta = json.loads((directory / cls.META_FILE).read_text(encoding="utf-8"))
            state = load_file(str(directory / cls.WEIGHTS_FILE))
            config_dict = dict(meta["config"], views=tuple(meta["config"]["views"]))
            model = cls(
                FusionConfig(**config_dict),
                meta["labels"],
                meta["cue_vocab"],
                meta["enc_dim"],
                meta["syn_dim"],
            )
            model.reference = state.pop("__reference__").numpy().astype(np.float32)
            encoder_keys = [k for k in state if k.startswith("__encoder__.")]
            if encoder_keys:
                model.encoder_state = {
                    k.removeprefix("__encoder__."): state.pop(k) for k in encoder_keys
                }
            model.net.load_state_dict(state)
            model.temperature = float(meta["temperature"])
            model.oos_threshold = meta["oos_threshold"]
            model.similarity_threshold = meta["similarity_threshold"]
            model.best_epochs = meta["best_epochs"]
            model.validation_accuracy = meta["validation_accuracy"]
            model.finetune_layers = int(meta.get("finetune_layers", 0))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            raise ModelLoadError(
                f"fused classifier files in {directory} are missing, corrupt or from another "
                f"version ({e}); retrain with `rasa train --force`"
            ) from e
        model.net.eval()
        return model


def _warmup_cosine(total_steps: int, warmup_fraction: float = 0.05):  # type: ignore[no-untyped-def]
    """Learning-rate factor: linear warm-up, then cosine decay to 5 % (any number of steps)."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _in_scope_mask(labels: list[str], y: np.ndarray, oos_intent: str) -> np.ndarray:
    if oos_intent not in labels:
        return np.ones(len(y), dtype=bool)
    return y != labels.index(oos_intent)


def _reference(examples: Sequence[Example]) -> np.ndarray:
    if not examples:
        return np.zeros((0, 1), dtype=np.float32)
    matrix = np.stack([e.sentence for e in examples]).astype(np.float32)
    matrix /= np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9, None)
    return matrix  # float32 in memory (a per-message float16 → float32 copy cost ~25 ms)


def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `fraction` of each label's examples (labels with < 3 examples stay in train)."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for label in np.unique(y):
        index = np.flatnonzero(y == label)
        rng.shuffle(index)
        n_val = int(round(len(index) * fraction)) if len(index) >= 3 else 0
        n_val = max(n_val, 1) if len(index) >= 3 else 0
        val += index[:n_val].tolist()
        train += index[n_val:].tolist()
    return np.array(sorted(train)), np.array(sorted(val), dtype=int)


def _fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Temperature minimising the held-out negative log-likelihood (Guo et al., 2017)."""
    if len(y) == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)
    loss_fn = nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(logits / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(min(max(log_t.exp().item(), 0.05), 20.0))
