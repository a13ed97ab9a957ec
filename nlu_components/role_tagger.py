"""The learned entity tagger: encoder vectors fused with role and dependency features, a CRF.

Pure module (no Rasa imports). Each token of a parsed spaCy `Doc` becomes a feature dict:

- **lexical** — word, affixes, shape, neighbours in a window;
- **dependency** — POS, tag, dependency label, head lemma and POS, spaCy NER tag;
- **role** — from `nlu_components.roles`: the role of the argument covering the token
  (recipient, time, ...), its predicate, negation and question flags, and the typed value kind
  (amount, currency, date, card, ...);
- **lexicon** — whether the word sequence was annotated as an entity in the training data
  (built out-of-fold while training);
- **encoder** — the token's contextual transformer vector, reduced by PCA to a few real-valued
  features, plus k-means cluster ids of the vector at several granularities (discrete, like
  Brown clusters) and a cluster id of the sentence vector (what the utterance is about);
- **neural** (stacking) — the label a BiLSTM over the whole token vector and the token's
  embedded attributes guesses for the token and its neighbours (`nlu_components.neural_tagger`,
  trained out-of-fold so the CRF learns how far to trust it).

A linear-chain CRF (CRFsuite through `python-crfsuite`, which Rasa already installs) learns
BIO labels; spans are decoded with per-span confidences from the CRF marginals. Labels carry
the entity and, when annotated, its role (`person` + `recipient`).

Persistence: `config.json`, `projection.npz` (PCA and centroids, `allow_pickle=False`),
CRFsuite's own model file `model.crfsuite` and the neural tagger's `neural/`. No pickle.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from spacy.tokens import Doc

from nlu_components.blas import one_blas_thread
from nlu_components.errors import (
    ComponentConfigError,
    ModelLoadError,
    NLUComponentError,
    reject_unknown_settings,
)
from nlu_components.neural_tagger import (
    NeuralExample,
    NeuralTagger,
    NeuralTaggerConfig,
    label_set,
    token_attributes,
)
from nlu_components.roles import TokenAnnotation, token_annotations

#: Separates the entity from its role inside a CRF label ("person::recipient").
ROLE_SEPARATOR = "::"
CONFIG_FILE = "config.json"
PROJECTION_FILE = "projection.npz"
MODEL_FILE = "model.crfsuite"
NEURAL_DIR = "neural"
FORMAT_VERSION = 1


class TaggerTrainingError(NLUComponentError):
    """The tagger could not be trained from the given examples."""


@dataclass(frozen=True)
class EntitySpan:
    """An entity found (or annotated) in a text: character span, type, optional role."""

    start: int
    end: int
    entity: str
    role: str | None = None
    confidence: float = 1.0
    value: str = ""


@dataclass(frozen=True)
class TaggerConfig:
    """Settings of `RoleTagger`; `from_dict` validates and names the key to fix."""

    #: Features from semantic-role frames and typed values (the ablation switch).
    use_role_features: bool = True
    #: POS, dependency label, head and NER features from the spaCy parse.
    use_dependency_features: bool = True
    #: Features from the transformer token vectors (needs vectors in fit/predict).
    use_encoder_features: bool = True
    #: Lexicon features: does this word sequence occur as an annotated entity in the training
    #: data? Built out-of-fold while training so the CRF does not learn to trust it blindly.
    use_lexicon_features: bool = True
    #: The message's intent as a feature, alone and paired with each word (which slot a word
    #: fills depends on what the customer asks: "tomorrow" is a date in a transfer, a time
    #: in an alarm). Needs an intent classifier before the extractor.
    use_intent_features: bool = True
    #: Stacking: a BiLSTM (`nlu_components.neural_tagger`) over the whole token vector and
    #: embedded token attributes guesses each token's label; the guesses of the token and its
    #: neighbours are CRF features. Trained out-of-fold (`neural_folds`), then on all data.
    #: Off by default: +1.0 F1 on HWU64 dev for the tagger alone (mean of two seeds, predicted
    #: intents) but no gain in one full benchmark run, for twice the training time there.
    use_neural_features: bool = False
    #: Folds for the out-of-fold neural guesses while training (2 or more).
    neural_folds: int = 3
    #: Passes of the neural tagger over the training data.
    neural_epochs: int = 10
    #: "lstm" or "cnn" (see `nlu_components.neural_tagger`).
    neural_architecture: str = "cnn"
    #: Folds for the out-of-fold lexicon while training (2 or more).
    lexicon_folds: int = 5
    #: Longest entity (in tokens) the lexicon looks up.
    lexicon_max_words: int = 6
    #: Real-valued PCA components of each token vector used as features (0 turns them off).
    encoder_dims: int = 12
    #: k-means cluster counts over token vectors; each gives one discrete feature per token.
    encoder_clusters: tuple[int, ...] = (32, 128, 512)
    #: Clusters of the sentence vector (0 turns the sentence feature off).
    sentence_clusters: int = 32
    #: Context window (tokens either side) for the lexical and cluster features.
    window: int = 2
    #: CRF L1 and L2 regularisation.
    c1: float = 0.05
    c2: float = 0.02
    #: L-BFGS iterations of the CRF.
    max_iterations: int = 150
    #: Token vectors sampled to fit PCA and k-means (bounds training time on big data).
    max_projection_samples: int = 20000
    #: Seed for sampling and k-means.
    random_seed: int = 13

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TaggerConfig:
        """Build and validate a config; unknown keys are an error."""
        reject_unknown_settings(values, (f.name for f in fields(cls)), "role tagger")
        data = dict(values)
        if "encoder_clusters" in data:
            data["encoder_clusters"] = tuple(int(k) for k in data["encoder_clusters"] or ())
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `ComponentConfigError` for values that cannot work."""
        if self.encoder_dims < 0 or self.sentence_clusters < 0:
            raise ComponentConfigError("encoder_dims and sentence_clusters must be >= 0")
        if any(k < 2 for k in self.encoder_clusters):
            raise ComponentConfigError("every value of encoder_clusters must be >= 2")
        if self.window < 0 or self.window > 5:
            raise ComponentConfigError("window must be between 0 and 5")
        if self.c1 < 0 or self.c2 < 0:
            raise ComponentConfigError("c1 and c2 (CRF regularisation) must be >= 0")
        if self.neural_folds < 2 or self.neural_epochs < 1:
            raise ComponentConfigError("neural_folds must be >= 2 and neural_epochs >= 1")
        if self.neural_architecture not in ("lstm", "cnn"):
            raise ComponentConfigError("neural_architecture must be 'lstm' or 'cnn'")
        if self.lexicon_folds < 2 or not 1 <= self.lexicon_max_words <= 12:
            raise ComponentConfigError("lexicon_folds must be >= 2, lexicon_max_words 1..12")
        if self.max_iterations < 1 or self.max_projection_samples < 100:
            raise ComponentConfigError(
                "max_iterations must be >= 1 and max_projection_samples >= 100"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["encoder_clusters"] = list(self.encoder_clusters)
        return data


@dataclass
class EncoderProjection:
    """PCA and k-means codebooks over token vectors, fitted on the training tokens."""

    mean: np.ndarray
    components: np.ndarray  # (dims, d)
    scale: np.ndarray  # (dims,)
    centroids: list[np.ndarray] = field(default_factory=list)  # each (k, d), unit rows
    sentence_centroids: np.ndarray | None = None  # (k, d)

    @classmethod
    def fit(
        cls, token_vectors: np.ndarray, sentence_vectors: np.ndarray, config: TaggerConfig
    ) -> EncoderProjection:
        rng = np.random.default_rng(config.random_seed)
        sample = token_vectors
        if len(sample) > config.max_projection_samples:
            sample = sample[rng.choice(len(sample), config.max_projection_samples, replace=False)]
        sample = sample.astype(np.float32)
        mean = sample.mean(axis=0)
        dims = min(config.encoder_dims, sample.shape[1], max(len(sample) - 1, 0))
        components = np.zeros((0, sample.shape[1]), np.float32)
        scale = np.ones((0,), np.float32)
        if dims > 0:
            centred = sample - mean
            # eigenvectors of the (d, d) covariance: much cheaper than an SVD of the sample
            eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
            order = np.argsort(eigenvalues)[::-1][:dims]
            components = eigenvectors[:, order].T.astype(np.float32)
            projected = centred @ components.T
            scale = np.clip(projected.std(axis=0), 1e-6, None).astype(np.float32)
        unit = _unit(sample)
        centroids = [
            _kmeans(unit, k, config.random_seed + i)
            for i, k in enumerate(config.encoder_clusters)
            if k < len(unit)
        ]
        sentence_centroids = None
        if config.sentence_clusters and len(sentence_vectors) > config.sentence_clusters:
            sentence_centroids = _kmeans(
                _unit(sentence_vectors.astype(np.float32)), config.sentence_clusters, 7
            )
        return cls(mean, components, scale, centroids, sentence_centroids)

    def token_features(self, vectors: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(n, dims) scaled PCA values and one (n,) cluster-id array per codebook."""
        vectors = vectors.astype(np.float32)
        reduced = ((vectors - self.mean) @ self.components.T) / self.scale
        if not len(vectors) or not self.centroids:
            return reduced, [np.zeros(0, int) for _ in self.centroids]
        import torch

        # one product against every codebook at once, in torch: for a message's dozen tokens
        # numpy's single-threaded GEMM took 0.33 ms here, torch's 0.07 ms
        similarities = (torch.from_numpy(_unit(vectors)) @ self._codebooks()).numpy()
        ids, start = [], 0
        for c in self.centroids:
            ids.append(np.argmax(similarities[:, start : start + len(c)], axis=1))
            start += len(c)
        return reduced, ids

    def _codebooks(self) -> Any:
        """All centroids as one (d, total) float32 torch tensor (cached)."""
        cached = getattr(self, "_codebook_cache", None)
        if cached is None:
            import torch

            stacked = np.concatenate([np.asarray(c, np.float32) for c in self.centroids])
            cached = torch.from_numpy(np.ascontiguousarray(stacked.T))
            self._codebook_cache = cached
        return cached

    def sentence_cluster(self, sentence: np.ndarray | None) -> int | None:
        if self.sentence_centroids is None or sentence is None:
            return None
        return int(np.argmax(self.sentence_centroids @ _unit(sentence[None, :])[0]))

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "mean": self.mean,
            "components": self.components,
            "scale": self.scale,
        }
        for i, c in enumerate(self.centroids):
            arrays[f"centroids_{i}"] = c
        if self.sentence_centroids is not None:
            arrays["sentence_centroids"] = self.sentence_centroids
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> EncoderProjection:
        with np.load(path, allow_pickle=False) as data:
            count = len([k for k in data.files if k.startswith("centroids_")])
            return cls(
                mean=data["mean"],
                components=data["components"],
                scale=data["scale"],
                centroids=[data[f"centroids_{i}"] for i in range(count)],
                sentence_centroids=data["sentence_centroids"]
                if "sentence_centroids" in data.files
                else None,
            )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9, None)


def _kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 12) -> np.ndarray:
    """Spherical k-means (cosine) centroids with unit rows; `x` has unit rows.

    Plain numpy Lloyd iterations: sklearn's MiniBatchKMeans took minutes for 1,000 clusters
    on 2 busy cores, this takes seconds and is deterministic for a seed.
    """
    from scipy import sparse

    rng = np.random.default_rng(seed)
    k = min(k, len(x))
    centroids = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iterations):
        assignment = np.argmax(x @ centroids.T, axis=1)
        one_hot = sparse.csr_matrix(
            (np.ones(len(x), np.float32), (assignment, np.arange(len(x)))), shape=(k, len(x))
        )
        sums = np.asarray(one_hot @ x)
        counts = np.bincount(assignment, minlength=k)
        empty = counts == 0
        if empty.any():  # re-seed empty clusters with random points
            sums[empty] = x[rng.choice(len(x), int(empty.sum()), replace=False)]
        centroids = _unit(sums)
    return centroids.astype(np.float32)


class Lexicon:
    """Lower-cased token sequences annotated as entities in the training data → their types."""

    def __init__(self, entries: dict[tuple[str, ...], set[str]] | None = None, max_words: int = 6):
        self.entries: dict[tuple[str, ...], set[str]] = entries or {}
        self.max_words = max_words

    def add(self, doc: Doc, spans: Sequence[EntitySpan]) -> None:
        for span in spans:
            words = tuple(
                t.lower_
                for t in doc
                if not t.is_space and t.idx < span.end and t.idx + len(t.text) > span.start
            )
            if 0 < len(words) <= self.max_words:
                self.entries.setdefault(words, set()).add(span.entity)

    def features(self, doc: Doc) -> list[list[str]]:
        """Per token: "B-type" / "I-type" for every lexicon entry covering it."""
        out: list[list[str]] = [[] for _ in doc]
        lower = [t.lower_ for t in doc]
        for i in range(len(doc)):
            for n in range(1, min(self.max_words, len(doc) - i) + 1):
                types = self.entries.get(tuple(lower[i : i + n]))
                if not types:
                    continue
                for kind in types:
                    out[i].append(f"B-{kind}")
                    for j in range(i + 1, i + n):
                        out[j].append(f"I-{kind}")
        return out

    def to_json(self) -> list[list[Any]]:
        return [[list(k), sorted(v)] for k, v in sorted(self.entries.items())]

    @classmethod
    def from_json(cls, data: list[list[Any]], max_words: int) -> Lexicon:
        return cls({tuple(k): set(v) for k, v in data}, max_words)


@dataclass(frozen=True)
class TaggerInput:
    """One utterance for the tagger: its parse and, optionally, encoder vectors."""

    doc: Doc
    #: (len(doc), d) contextual vector per spaCy token; None without encoder features.
    vectors: np.ndarray | None = None
    #: (d,) sentence vector; None turns the sentence-cluster feature off for this input.
    sentence: np.ndarray | None = None
    #: Frames and values of `doc` flattened per token, when the caller has them already.
    annotations: list[TokenAnnotation] | None = None
    #: The message's intent (gold while training, the classifier's prediction at run time).
    intent: str | None = None


class RoleTagger:
    """CRF entity tagger over fused lexical, dependency, role and encoder features."""

    def __init__(
        self,
        config: TaggerConfig | None = None,
        projection: EncoderProjection | None = None,
        model: bytes | None = None,
        labels: Sequence[str] = (),
        lexicon: Lexicon | None = None,
        neural: NeuralTagger | None = None,
    ) -> None:
        self.config = config or TaggerConfig()
        self.projection = projection
        self.lexicon = lexicon
        self.neural = neural
        self.labels = list(labels)
        self._model_bytes = model
        self._tagger: Any = None
        if model is not None:
            self._tagger = _open_tagger(model)

    @property
    def is_trained(self) -> bool:
        return self._tagger is not None

    # -- training ---------------------------------------------------------------------------

    def fit(self, inputs: Sequence[TaggerInput], spans: Sequence[Sequence[EntitySpan]]) -> None:
        """Train on utterances and their annotated entity spans (character offsets).

        Raises:
            TaggerTrainingError: no examples, mismatched lengths, or no entity at all.
            ComponentConfigError: encoder features on but vectors missing.
        """
        with one_blas_thread():
            self._fit(inputs, spans)

    def _fit(self, inputs: Sequence[TaggerInput], spans: Sequence[Sequence[EntitySpan]]) -> None:
        import pycrfsuite

        if len(inputs) != len(spans):
            raise TaggerTrainingError("inputs and spans must have the same length")
        if not any(spans):
            raise TaggerTrainingError(
                "the training data has no entity annotations: annotate entities in the NLU "
                'data (e.g. [Anna]{"entity": "person", "role": "recipient"})'
            )
        self._check_vectors(inputs)
        if self.config.use_role_features:  # frames once per message, for both taggers
            inputs = [
                i if i.annotations is not None else replace(i, annotations=token_annotations(i.doc))
                for i in inputs
            ]
        if self.config.use_encoder_features:
            token_vectors = np.concatenate([i.vectors for i in inputs if len(i.doc)])  # type: ignore[misc]
            sentences = np.stack(
                [i.sentence for i in inputs if i.sentence is not None] or [np.zeros(1)]
            )
            self.projection = EncoderProjection.fit(token_vectors, sentences, self.config)
        trainer = pycrfsuite.Trainer(verbose=False)
        trainer.set_params(
            {
                "c1": self.config.c1,
                "c2": self.config.c2,
                "max_iterations": self.config.max_iterations,
                "feature.possible_transitions": True,
            }
        )
        folds: list[Lexicon | None] = [None] * self.config.lexicon_folds
        if self.config.use_lexicon_features:
            # each example sees the lexicon of the other folds (as unseen text will at run time)
            k = self.config.lexicon_folds
            fold_lexicons = [Lexicon(max_words=self.config.lexicon_max_words) for _ in range(k)]
            full = Lexicon(max_words=self.config.lexicon_max_words)
            for n, (tagger_input, example_spans) in enumerate(zip(inputs, spans, strict=True)):
                full.add(tagger_input.doc, example_spans)
                for f, lexicon in enumerate(fold_lexicons):
                    if f != n % k:
                        lexicon.add(tagger_input.doc, example_spans)
            self.lexicon = full
            folds = list(fold_lexicons)
        all_tags = [bio_tags(i.doc, s) for i, s in zip(inputs, spans, strict=True)]
        guesses: list[np.ndarray | None] = [None] * len(inputs)
        self.neural = None
        if self.config.use_neural_features:
            guesses, self.neural = self._fit_neural(inputs, all_tags)  # type: ignore[assignment]
        labels: set[str] = set()
        for n, (tagger_input, tags) in enumerate(zip(inputs, all_tags, strict=True)):
            if not len(tagger_input.doc):
                continue
            labels.update(tags)
            trainer.append(self.featurize(tagger_input, folds[n % len(folds)], guesses[n]), tags)
        with tempfile.TemporaryDirectory(prefix="fd-role-tagger-") as tmp:
            path = os.path.join(tmp, MODEL_FILE)
            trainer.train(path)
            self._model_bytes = Path(path).read_bytes()
        self.labels = sorted(labels)
        self._tagger = _open_tagger(self._model_bytes)

    def _fit_neural(
        self, inputs: Sequence[TaggerInput], tags: Sequence[Sequence[str]]
    ) -> tuple[list[np.ndarray], NeuralTagger]:
        """Out-of-fold label probabilities for every input, and the tagger trained on all."""
        config = NeuralTaggerConfig.from_dict(
            {
                "architecture": self.config.neural_architecture,
                "epochs": self.config.neural_epochs,
                "seed": self.config.random_seed,
            }
        )
        examples = [self._neural_example(i) for i in inputs]
        labels = label_set(tags)
        k = self.config.neural_folds
        guesses: list[np.ndarray] = [np.zeros((0, len(labels)), np.float32)] * len(inputs)
        for fold in range(k):
            train = [n for n in range(len(inputs)) if n % k != fold]
            held = [n for n in range(len(inputs)) if n % k == fold]
            if not train or not held:
                continue
            model = NeuralTagger.fit(
                [examples[n] for n in train], [tags[n] for n in train], config, labels
            )
            for n, probs in zip(held, model.probabilities([examples[n] for n in held])):
                guesses[n] = probs
        return guesses, NeuralTagger.fit(examples, tags, config, labels)

    def _neural_example(self, tagger_input: TaggerInput) -> NeuralExample:
        doc = tagger_input.doc
        annotations = None
        if self.config.use_role_features:
            annotations = tagger_input.annotations or token_annotations(doc)
        vectors = tagger_input.vectors
        if not self.config.use_encoder_features or vectors is None:
            vectors = np.zeros((len(doc), 0), np.float32)
        return NeuralExample(
            token_attributes(doc, annotations),
            vectors,
            tagger_input.intent if self.config.use_intent_features else None,
        )

    def _check_vectors(self, inputs: Sequence[TaggerInput]) -> None:
        if not self.config.use_encoder_features:
            return
        for tagger_input in inputs:
            vectors = tagger_input.vectors
            if vectors is None or len(vectors) != len(tagger_input.doc):
                raise ComponentConfigError(
                    "use_encoder_features is on but an input has no token vectors (one row "
                    "per spaCy token): put TransformerEncoderFeaturizer before the extractor "
                    "or set use_encoder_features: false"
                )

    # -- features ---------------------------------------------------------------------------

    def featurize(
        self,
        tagger_input: TaggerInput,
        lexicon: Lexicon | None = None,
        guesses: np.ndarray | None = None,
        parse_features: list[dict[str, float]] | None = None,
    ) -> list[dict[str, float]]:
        """CRFsuite feature dicts (name → value), one per token.

        Args:
            tagger_input: the parsed utterance and its vectors.
            lexicon: the lexicon to look words up in (default: the trained one).
            guesses: (tokens, labels) neural label probabilities (default: the trained
                neural tagger's, when it has one).
            parse_features: `parse_features(tagger_input)` computed earlier (the dicts are
                completed in place); computed here when None.
        """
        doc = tagger_input.doc
        config = self.config
        if config.use_role_features and tagger_input.annotations is None:
            tagger_input = replace(tagger_input, annotations=token_annotations(doc))
        out = parse_features
        if out is None or len(out) != len(doc):
            out = self.parse_features(tagger_input, lexicon)
        guessed: list[str] | None = None
        if guesses is None and config.use_neural_features and self.neural is not None:
            guesses = self.neural.probabilities([self._neural_example(tagger_input)])[0]
        if guesses is not None and self.neural is not None and len(guesses) == len(doc):
            guessed = [self.neural.labels[int(j)] for j in guesses.argmax(-1)]
        reduced: np.ndarray | None = None
        cluster_ids: list[np.ndarray] = []
        sentence_cluster: int | None = None
        if config.use_encoder_features and self.projection is not None:
            if tagger_input.vectors is None:
                raise ComponentConfigError("this tagger was trained with encoder features")
            reduced, cluster_ids = self.projection.token_features(tagger_input.vectors)
            sentence_cluster = self.projection.sentence_cluster(tagger_input.sentence)
        intent = tagger_input.intent if config.use_intent_features else None
        lower = [_word(t) for t in doc] if intent or reduced is not None else []
        for i, feats in enumerate(out):
            if intent:
                feats[f"intent={intent}"] = 1.0
                feats[f"intent={intent}|w={lower[i]}"] = 1.0
            if guessed is not None:
                feats[f"nn={guessed[i]}"] = 1.0
                for offset in (-1, 1):
                    if 0 <= i + offset < len(doc):
                        feats[f"{offset}:nn={guessed[i + offset]}"] = 1.0
            if reduced is not None:
                for k, value in enumerate(reduced[i]):
                    feats[f"e{k}"] = float(value)
                for level, ids in enumerate(cluster_ids):
                    feats[f"c{level}={ids[i]}"] = 1.0
                    if level == len(cluster_ids) - 1:
                        feats[f"c{level}w={ids[i]}|{lower[i]}"] = 1.0
                    for offset in (-1, 1):
                        j = i + offset
                        if 0 <= j < len(doc):
                            feats[f"{offset}:c{level}={ids[j]}"] = 1.0
                if sentence_cluster is not None:
                    feats[f"s={sentence_cluster}"] = 1.0
                    feats[f"s={sentence_cluster}|w={lower[i]}"] = 1.0
        return out

    def parse_features(
        self, tagger_input: TaggerInput, lexicon: Lexicon | None = None
    ) -> list[dict[str, float]]:
        """The part of `featurize` that needs only the parse: the words and their
        neighbours, the dependencies, the roles (from `tagger_input.annotations`, computed
        when missing) and the lexicon. A served model computes it while the transformer
        still works on the message; `featurize` adds the intent, neural and encoder features.
        """
        doc = tagger_input.doc
        config = self.config
        lexicon = lexicon or self.lexicon
        lexical = lexicon.features(doc) if config.use_lexicon_features and lexicon else None
        annotations: list[TokenAnnotation] | None = None
        if config.use_role_features:
            annotations = tagger_input.annotations or token_annotations(doc)
        words = [_word_features(t) for t in doc]
        out: list[dict[str, float]] = []
        for i, token in enumerate(doc):
            feats: dict[str, float] = {"bias": 1.0}
            for key, value in words[i].items():
                feats[f"{key}={value}"] = 1.0
            for offset in range(1, config.window + 1):
                for j, side in ((i - offset, "-"), (i + offset, "+")):
                    prefix = f"{side}{offset}"
                    if 0 <= j < len(doc):
                        feats[f"{prefix}:w={words[j]['w']}"] = 1.0
                        feats[f"{prefix}:shape={words[j]['shape']}"] = 1.0
                        if offset == 1:
                            feats[f"{prefix}:suf3={words[j]['suf3']}"] = 1.0
                    else:
                        feats[f"{prefix}:edge"] = 1.0
            if i > 0:
                feats[f"bigram={words[i - 1]['w']}|{words[i]['w']}"] = 1.0
            if i + 1 < len(doc):
                feats[f"bigram+={words[i]['w']}|{words[i + 1]['w']}"] = 1.0
            if config.use_dependency_features:
                _dependency_features(token, feats)
            if annotations is not None:
                _role_features(annotations, i, feats)
            if lexical is not None:
                for hit in lexical[i]:
                    feats[f"lex={hit}"] = 1.0
                if not lexical[i]:
                    feats["lex=none"] = 1.0
            out.append(feats)
        return out

    # -- prediction -------------------------------------------------------------------------

    def predict(
        self,
        inputs: Sequence[TaggerInput],
        parse_features: Sequence[list[dict[str, float]] | None] | None = None,
    ) -> list[list[EntitySpan]]:
        """Entity spans (character offsets, confidence from the CRF marginals) per input.

        `parse_features`: per input, its `parse_features` computed earlier, or None.

        Raises:
            ModelLoadError: the tagger was never trained or loaded.
        """
        if self._tagger is None:
            raise ModelLoadError("the role tagger is not trained: train it or load a model")
        ahead = list(parse_features) if parse_features is not None else [None] * len(inputs)
        if len(ahead) != len(inputs):
            raise ValueError("parse_features must have one entry per input")
        with one_blas_thread():
            return [self._predict_one(i, a) for i, a in zip(inputs, ahead, strict=True)]

    def _predict_one(
        self, tagger_input: TaggerInput, parse_features: list[dict[str, float]] | None = None
    ) -> list[EntitySpan]:
        doc = tagger_input.doc
        if not len(doc):
            return []
        if self.config.use_encoder_features:
            self._check_vectors([tagger_input])
        features = self.featurize(tagger_input, parse_features=parse_features)
        tags = self._tagger.tag(features)
        marginals = [self._tagger.marginal(tag, i) for i, tag in enumerate(tags)]
        return decode_bio(doc, tags, marginals)

    # -- persistence ------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write config.json, projection.npz and model.crfsuite into `directory`."""
        if self._model_bytes is None:
            raise ModelLoadError("cannot save an untrained role tagger")
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "labels": self.labels,
            "has_projection": self.projection is not None,
            "lexicon": self.lexicon.to_json() if self.lexicon is not None else None,
            "has_neural": self.neural is not None,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if self.projection is not None:
            self.projection.save(directory / PROJECTION_FILE)
        (directory / MODEL_FILE).write_bytes(self._model_bytes)
        if self.neural is not None:
            self.neural.save(directory / NEURAL_DIR)

    @classmethod
    def load(cls, directory: Path) -> RoleTagger:
        """Load a tagger written by `save`.

        Raises:
            ModelLoadError: a file is missing or unreadable; the message says which.
        """
        try:
            meta = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            if meta.get("format_version") != FORMAT_VERSION:
                raise ModelLoadError(
                    f"role tagger in {directory} has format {meta.get('format_version')}, "
                    f"this version reads {FORMAT_VERSION}: retrain with `rasa train`"
                )
            config = TaggerConfig.from_dict(meta["config"])
            projection = (
                EncoderProjection.load(directory / PROJECTION_FILE)
                if meta.get("has_projection")
                else None
            )
            model = (directory / MODEL_FILE).read_bytes()
            neural = NeuralTagger.load(directory / NEURAL_DIR) if meta.get("has_neural") else None
        except (OSError, ValueError, KeyError, ComponentConfigError) as e:
            raise ModelLoadError(
                f"could not load the role tagger from {directory}: {e}. Retrain the model "
                f"with `rasa train`."
            ) from e
        lexicon = (
            Lexicon.from_json(meta["lexicon"], config.lexicon_max_words)
            if meta.get("lexicon") is not None
            else None
        )
        return cls(config, projection, model, meta.get("labels", []), lexicon, neural)


def _open_tagger(model: bytes) -> Any:
    import pycrfsuite

    tagger = pycrfsuite.Tagger()
    try:
        tagger.open_inmemory(model)
    except (ValueError, OSError) as e:
        raise ModelLoadError(f"the CRF model is unreadable ({e}): retrain with `rasa train`") from e
    return tagger


# ---------------------------------------------------------------------------------------------
# labels


def encode_label(entity: str, role: str | None) -> str:
    """CRF label of an entity type and optional role."""
    if ROLE_SEPARATOR in entity or (role and ROLE_SEPARATOR in role):
        raise TaggerTrainingError(
            f"entity and role names may not contain {ROLE_SEPARATOR!r}: {entity!r} / {role!r}"
        )
    return f"{entity}{ROLE_SEPARATOR}{role}" if role else entity


def decode_label(label: str) -> tuple[str, str | None]:
    entity, _, role = label.partition(ROLE_SEPARATOR)
    return entity, role or None


def bio_tags(doc: Doc, spans: Sequence[EntitySpan]) -> list[str]:
    """BIO tags of `doc`'s tokens for character spans (a token overlapping a span is inside)."""
    tags = ["O"] * len(doc)
    for span in sorted(spans, key=lambda s: s.start):
        label = encode_label(span.entity, span.role)
        inside = [
            t.i
            for t in doc
            if not t.is_space and t.idx < span.end and t.idx + len(t.text) > span.start
        ]
        for n, i in enumerate(inside):
            if tags[i] == "O":
                tags[i] = ("B-" if n == 0 else "I-") + label
    return tags


def decode_bio(
    doc: Doc, tags: Sequence[str], marginals: Sequence[float] | None = None
) -> list[EntitySpan]:
    """Spans from BIO tags; an I- without a matching B- starts a new span."""
    spans: list[EntitySpan] = []
    start: int | None = None
    label = ""

    def close(end: int) -> None:
        if start is None:
            return
        entity, role = decode_label(label)
        begin, finish = doc[start].idx, doc[end - 1].idx + len(doc[end - 1].text)
        probs = marginals[start:end] if marginals is not None else [1.0]
        spans.append(
            EntitySpan(
                start=begin,
                end=finish,
                entity=entity,
                role=role,
                confidence=float(np.mean(probs)),
                value=doc.text[begin:finish],
            )
        )

    for i, tag in enumerate(tags):
        prefix, _, name = tag.partition("-")
        if prefix == "B" or (prefix == "I" and (start is None or name != label)):
            close(i)
            start, label = i, name
        elif prefix != "I":
            close(i)
            start, label = None, ""
    close(len(tags))
    return spans


# ---------------------------------------------------------------------------------------------
# feature helpers

_SHAPE = [(re.compile(r"[A-Z]"), "X"), (re.compile(r"[a-z]"), "x"), (re.compile(r"\d"), "d")]


def _shape(text: str) -> str:
    out = text
    for pattern, char in _SHAPE:
        out = pattern.sub(char, out)
    return re.sub(r"(.)\1{2,}", r"\1\1", out)[:8]


def _word(token: Any) -> str:
    """The word feature's value (`w=`) of a token."""
    return str(token.text.lower())


def _word_features(token: Any) -> dict[str, str]:
    text = token.text
    lower = _word(token)
    return {
        "w": lower,
        "suf3": lower[-3:],
        "suf2": lower[-2:],
        "pre3": lower[:3],
        "shape": _shape(text),
        "title": str(text.istitle()),
        "upper": str(text.isupper()),
        "num": str(token.like_num),
        "len": str(min(len(text), 8)),
    }


def _dependency_features(token: Any, feats: dict[str, float]) -> None:
    head = token.head
    feats[f"pos={token.pos_}"] = 1.0
    feats[f"tag={token.tag_}"] = 1.0
    feats[f"dep={token.dep_}"] = 1.0
    feats[f"lemma={token.lemma_.lower()}"] = 1.0
    feats[f"head={head.lemma_.lower()}"] = 1.0
    feats[f"headpos={head.pos_}"] = 1.0
    feats[f"dep|head={token.dep_}|{head.lemma_.lower()}"] = 1.0
    feats[f"ent={token.ent_iob_}-{token.ent_type_}"] = 1.0
    # the preposition above a noun ("to" for "Anna" in "to Anna")
    if head.dep_ in {"prep", "agent", "dative"} and head.pos_ == "ADP":
        feats[f"prep={head.lower_}"] = 1.0
        feats[f"prep|gov={head.lower_}|{head.head.lemma_.lower()}"] = 1.0


def _role_features(annotations: Sequence[TokenAnnotation], i: int, feats: dict[str, float]) -> None:
    a = annotations[i]
    feats[f"role={a.role}"] = 1.0
    feats[f"roleiob={a.role_iob}-{a.role}"] = 1.0
    if a.predicate:
        feats[f"pred|role={a.predicate}|{a.role}"] = 1.0
    if a.is_predicate:
        feats["is_pred"] = 1.0
    if a.negated:
        feats["negated"] = 1.0
    if a.question:
        feats["question"] = 1.0
    feats[f"value={a.value_iob}-{a.value_kind}"] = 1.0
    for offset in (-1, 1):
        j = i + offset
        if 0 <= j < len(annotations):
            feats[f"{offset}:role={annotations[j].role}"] = 1.0
            feats[f"{offset}:value={annotations[j].value_kind}"] = 1.0
