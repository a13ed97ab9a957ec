"""A small neural sequence tagger whose label guesses become features of the CRF (stacking).

Pure module (no Rasa imports). Per spaCy token it reads the transformer's contextual vector
beside learned embeddings of the word, its suffix, POS, dependency label, spaCy NER tag,
semantic role and typed value, and of the message's intent; two convolutions over the
neighbouring tokens (widths 5 and 3; or a bidirectional LSTM) and a softmax give BIO label
probabilities. It sees the whole encoder vector (the CRF only sees a PCA projection and
cluster ids of it) and learns nonlinear combinations of the views.

`RoleTagger` trains it out-of-fold (each training message is labelled by a model that did not
see it, as unseen text is at run time), then on all data, and gives the CRF the predicted
label of each token and of its neighbours as features. HWU64 dev, exact-span entity F1 of the
tagger (`scripts/role_tagger_ablation.py --annotated-intents-only`, gold intents): CRF alone
80.86 / 80.36 (seeds 13 / 7); stacked with the CNN 82.30 / 81.76, with the BiLSTM 81.46 (and
about 0.5 ms more per message). One full `fusiondesk bench nlu` run showed no gain (80.71 vs
80.74) for twice the training time, so `use_neural_features` is off by default.

Persistence: `neural.json` (settings, vocabularies, labels) and `neural.npz` (weights, saved
with `allow_pickle=False`). No pickle.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from nlu_components.encoder import _threads
from nlu_components.errors import ComponentConfigError, ModelLoadError, reject_unknown_settings

CONFIG_FILE = "neural.json"
WEIGHTS_FILE = "neural.npz"
FORMAT_VERSION = 1
UNKNOWN = "<unk>"

#: The discrete token attributes the tagger embeds, with their embedding widths.
ATTRIBUTES: tuple[tuple[str, int], ...] = (
    ("word", 64),
    ("suffix", 16),
    ("pos", 16),
    ("dep", 16),
    ("ner", 16),
    ("role", 16),
    ("value", 16),
)
INTENT_WIDTH = 32


@dataclass(frozen=True)
class NeuralTaggerConfig:
    """Settings of `NeuralTagger`; `from_dict` validates and names the key to fix."""

    #: "lstm" (bidirectional LSTM) or "cnn" (two convolutions, widths 5 and 3: several times
    #: faster per message).
    architecture: str = "cnn"
    #: LSTM units per direction (the CNN has twice as many channels).
    hidden: int = 128
    #: Width of the layer between the token features and the LSTM.
    projection: int = 256
    #: Passes over the training data.
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 2e-3
    dropout: float = 0.3
    #: Share of training words replaced by the unknown word (teaches it unseen words).
    word_dropout: float = 0.1
    seed: int = 13
    #: torch threads while training (prediction keeps the process's setting).
    training_threads: int = 2

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> NeuralTaggerConfig:
        reject_unknown_settings(values, (f.name for f in fields(cls)), "neural tagger")
        config = cls(**dict(values))
        if min(config.hidden, config.projection, config.epochs, config.batch_size) < 1:
            raise ComponentConfigError(
                "neural tagger: hidden, projection, epochs and batch_size must be >= 1"
            )
        if config.architecture not in ("lstm", "cnn"):
            raise ComponentConfigError(
                f"neural tagger: architecture must be 'lstm' or 'cnn', got {config.architecture!r}"
            )
        if config.training_threads < 1:
            raise ComponentConfigError("neural tagger: training_threads must be >= 1")
        if not (0 <= config.dropout < 1 and 0 <= config.word_dropout < 1):
            raise ComponentConfigError("neural tagger: dropout and word_dropout must be in [0, 1)")
        if config.learning_rate <= 0:
            raise ComponentConfigError("neural tagger: learning_rate must be > 0")
        return config


@dataclass(frozen=True)
class NeuralExample:
    """One tokenised message: attribute strings per token, its vectors and intent."""

    #: One tuple per token, in the order of `ATTRIBUTES`.
    attributes: list[tuple[str, ...]]
    #: (tokens, d) contextual vectors; d may be 0 (no encoder).
    vectors: np.ndarray
    intent: str | None = None


def token_attributes(doc: Any, annotations: Sequence[Any] | None) -> list[tuple[str, ...]]:
    """The `ATTRIBUTES` of each token of a spaCy `Doc` (roles from `annotations` when given)."""
    out: list[tuple[str, ...]] = []
    for i, token in enumerate(doc):
        lower = token.lower_
        if annotations is not None:
            a = annotations[i]
            role, value = f"{a.role_iob}-{a.role}", f"{a.value_iob}-{a.value_kind}"
        else:
            role = value = "-"
        out.append(
            (
                lower,
                lower[-3:],
                token.pos_,
                token.dep_,
                f"{token.ent_iob_}-{token.ent_type_}",
                role,
                value,
            )
        )
    return out


class _Vocabulary:
    """String → index per attribute; index 0 is the unknown value."""

    def __init__(self, tables: list[dict[str, int]], intents: dict[str, int]) -> None:
        self.tables = tables
        self.intents = intents

    @classmethod
    def build(cls, examples: Sequence[NeuralExample]) -> _Vocabulary:
        tables: list[dict[str, int]] = [{UNKNOWN: 0} for _ in ATTRIBUTES]
        intents = {UNKNOWN: 0}
        for example in examples:
            for attributes in example.attributes:
                for table, value in zip(tables, attributes, strict=True):
                    table.setdefault(value, len(table))
            if example.intent:
                intents.setdefault(example.intent, len(intents))
        return cls(tables, intents)

    def ids(self, example: NeuralExample) -> np.ndarray:
        return np.array(
            [
                [table.get(value, 0) for table, value in zip(self.tables, attributes, strict=True)]
                for attributes in example.attributes
            ],
            dtype=np.int64,
        ).reshape(len(example.attributes), len(ATTRIBUTES))

    def to_json(self) -> dict[str, Any]:
        return {"tables": [list(t) for t in self.tables], "intents": list(self.intents)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Vocabulary:
        tables = [{value: i for i, value in enumerate(t)} for t in data["tables"]]
        if len(tables) != len(ATTRIBUTES):
            raise ValueError(f"expected {len(ATTRIBUTES)} vocabularies, found {len(tables)}")
        return cls(tables, {value: i for i, value in enumerate(data["intents"])})


def _network(vocabulary: _Vocabulary, dims: int, labels: int, config: NeuralTaggerConfig) -> Any:
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class SequenceTagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.ModuleList(
                nn.Embedding(len(table), width)
                for table, (_, width) in zip(vocabulary.tables, ATTRIBUTES, strict=True)
            )
            self.intent = nn.Embedding(len(vocabulary.intents), INTENT_WIDTH)
            width = dims + sum(w for _, w in ATTRIBUTES) + INTENT_WIDTH
            self.dropout = nn.Dropout(config.dropout)
            self.projection = nn.Linear(width, config.projection)
            if config.architecture == "cnn":
                # convolutions as products over stacked neighbour windows: on one short
                # message torch's conv1d took ~0.15 ms each here, a product ~0.03 ms
                self.conv1 = nn.Linear(5 * config.projection, 2 * config.hidden)
                self.conv2 = nn.Linear(3 * 2 * config.hidden, 2 * config.hidden)
            else:
                self.lstm = nn.LSTM(
                    config.projection, config.hidden, batch_first=True, bidirectional=True
                )
            self.output = nn.Linear(2 * config.hidden, labels)

        def forward(self, vectors: Any, ids: Any, intents: Any, lengths: Any) -> Any:
            parts = [vectors] + [e(ids[..., j]) for j, e in enumerate(self.embeddings)]
            parts.append(self.intent(intents)[:, None, :].expand(-1, ids.shape[1], -1))
            x = torch.relu(self.projection(self.dropout(torch.cat(parts, -1))))
            x = self.dropout(x)
            if config.architecture == "cnn":
                # padding zeroed after every layer: a message's labels are the same alone
                # as in a batch (the convolutions pad with zeros at the ends)
                mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).float()[..., None]
                h = torch.relu(self.conv1(_windows(x * mask, 5))) * mask
                x = torch.relu(self.conv2(_windows(self.dropout(h), 3))) * mask
            elif bool((lengths == x.shape[1]).all()):  # no padding (one live message)
                x = self.lstm(x)[0]
            else:
                # packed: padding never reaches the backward direction, so a message gets
                # the same labels alone as in a batch
                packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
                x = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)[0]
            return self.output(self.dropout(x))

    return SequenceTagger()


def _windows(x: Any, width: int) -> Any:
    """(batch, length, channels) → (batch, length, width · channels): each position beside
    its neighbours, zeros beyond the ends (a 1-D convolution's input, without conv1d)."""
    from torch.nn import functional

    half = width // 2
    padded = functional.pad(x, (0, 0, half, half))
    return padded.unfold(1, width, 1).transpose(2, 3).reshape(x.shape[0], x.shape[1], -1)


class NeuralTagger:
    """BiLSTM over encoder vectors and token attributes; per-token label probabilities."""

    def __init__(
        self,
        config: NeuralTaggerConfig,
        vocabulary: _Vocabulary,
        labels: Sequence[str],
        dims: int,
        network: Any,
    ) -> None:
        self.config = config
        self.vocabulary = vocabulary
        self.labels = list(labels)
        self.dims = dims
        self.network = network
        self.network.eval()

    @classmethod
    def fit(
        cls,
        examples: Sequence[NeuralExample],
        tags: Sequence[Sequence[str]],
        config: NeuralTaggerConfig | None = None,
        labels: Sequence[str] | None = None,
    ) -> NeuralTagger:
        """Train on examples and their BIO tags (one per token).

        Args:
            labels: the label set (default: the labels in `tags`, "O" first).
        """
        import torch

        config = config or NeuralTaggerConfig()
        if len(examples) != len(tags):
            raise ValueError("examples and tags must have the same length")
        labels = list(labels) if labels is not None else label_set(tags)
        index = {label: i for i, label in enumerate(labels)}
        dims = _dims(examples)
        vocabulary = _Vocabulary.build(examples)
        encoded = [
            (_vectors(e, dims), vocabulary.ids(e), vocabulary.intents.get(e.intent or "", 0))
            for e in examples
        ]
        targets = [np.array([index[t] for t in example_tags], np.int64) for example_tags in tags]
        order = [n for n, e in enumerate(examples) if e.attributes]
        shuffle = random.Random(config.seed)
        with torch.random.fork_rng(), _threads(config.training_threads):
            torch.manual_seed(config.seed)
            network = _network(vocabulary, dims, len(labels), config)
            optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
            network.train()
            for _ in range(config.epochs):
                shuffle.shuffle(order)
                for start in range(0, len(order), config.batch_size):
                    chosen = order[start : start + config.batch_size]
                    vectors, ids, intents, lengths = _batch([encoded[n] for n in chosen], dims)
                    if config.word_dropout:
                        drop = torch.rand(ids.shape[:2]) < config.word_dropout
                        ids[..., 0][drop] = 0
                    target = torch.full(ids.shape[:2], -100, dtype=torch.long)
                    for row, n in enumerate(chosen):
                        target[row, : len(targets[n])] = torch.from_numpy(targets[n])
                    logits = network(vectors, ids, intents, lengths)
                    target = target[:, : logits.shape[1]]
                    loss = torch.nn.functional.cross_entropy(
                        logits.reshape(-1, len(labels)), target.reshape(-1), ignore_index=-100
                    )
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        return cls(config, vocabulary, labels, dims, network)

    def probabilities(self, examples: Sequence[NeuralExample]) -> list[np.ndarray]:
        """(tokens, labels) probabilities per example."""
        import torch

        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(examples), 256):
                chunk = examples[start : start + 256]
                encoded = [
                    (
                        _vectors(e, self.dims),
                        self.vocabulary.ids(e),
                        self.vocabulary.intents.get(e.intent or "", 0),
                    )
                    for e in chunk
                ]
                probs = self.network(*_batch(encoded, self.dims)).softmax(-1).numpy()
                out.extend(probs[row, : len(e.attributes)] for row, e in enumerate(chunk))
        return out

    # -- persistence ------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "config": asdict(self.config),
            "vocabulary": self.vocabulary.to_json(),
            "labels": self.labels,
            "dims": self.dims,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(meta), encoding="utf-8")
        state = {k: v.detach().cpu().numpy() for k, v in self.network.state_dict().items()}
        np.savez(directory / WEIGHTS_FILE, **state)  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: Path) -> NeuralTagger:
        """Load a tagger written by `save`; `ModelLoadError` names what is wrong."""
        import torch

        try:
            meta = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            if meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format {meta.get('format_version')}, expected {FORMAT_VERSION}")
            config = NeuralTaggerConfig.from_dict(meta["config"])
            vocabulary = _Vocabulary.from_json(meta["vocabulary"])
            network = _network(vocabulary, int(meta["dims"]), len(meta["labels"]), config)
            with np.load(directory / WEIGHTS_FILE, allow_pickle=False) as weights:
                state = {k: torch.from_numpy(weights[k]) for k in weights.files}
            network.load_state_dict(state)
        except (OSError, ValueError, KeyError, RuntimeError, ComponentConfigError) as e:
            raise ModelLoadError(
                f"could not load the neural tagger from {directory}: {e}. Retrain the model "
                f"with `rasa train`."
            ) from e
        return cls(config, vocabulary, meta["labels"], int(meta["dims"]), network)


def label_set(tags: Sequence[Sequence[str]]) -> list[str]:
    """The labels in `tags`, "O" first, the rest sorted."""
    return ["O"] + sorted({t for example_tags in tags for t in example_tags} - {"O"})


def _dims(examples: Sequence[NeuralExample]) -> int:
    for example in examples:
        if example.attributes:
            return int(example.vectors.shape[1]) if example.vectors.ndim == 2 else 0
    return 0


def _vectors(example: NeuralExample, dims: int) -> np.ndarray:
    vectors = np.asarray(example.vectors, np.float32)
    if vectors.shape != (len(example.attributes), dims):
        if dims == 0:
            return np.zeros((len(example.attributes), 0), np.float32)
        raise ComponentConfigError(
            f"the neural tagger was trained on {dims}-dimensional token vectors, got "
            f"{vectors.shape} for {len(example.attributes)} tokens"
        )
    return vectors


def _batch(encoded: Sequence[tuple[np.ndarray, np.ndarray, int]], dims: int) -> tuple[Any, ...]:
    """Padded vectors, attribute ids, intent ids and lengths (empty messages count as 1)."""
    import torch

    length = max((len(ids) for _, ids, _ in encoded), default=0) or 1
    vectors = torch.zeros(len(encoded), length, dims)
    ids = torch.zeros(len(encoded), length, len(ATTRIBUTES), dtype=torch.long)
    for row, (v, i, _) in enumerate(encoded):
        vectors[row, : len(i)] = torch.from_numpy(v)
        ids[row, : len(i)] = torch.from_numpy(i)
    intents = torch.tensor([intent for _, _, intent in encoded], dtype=torch.long)
    lengths = torch.tensor([max(len(i), 1) for _, i, _ in encoded], dtype=torch.long)
    return vectors, ids, intents, lengths
