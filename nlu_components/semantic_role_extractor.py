"""`SemanticRoleEntityExtractor`: entities with roles from frames and a learned tagger (Rasa).

Thin adapter over `nlu_components.roles` (predicate–argument frames from the dependency parse)
and `nlu_components.role_tagger` (CRF over encoder, role and dependency features). It reads the
parse that `ParsingSpacyNLP` put on each message and the token vectors of
`TransformerEncoderFeaturizer`, is trained by `rasa train` from the entity annotations of the
NLU data, and adds Rasa entities with `entity`, `value`, `start`, `end`, `confidence`,
`extractor` and, where it applies, `role` (`{"entity": "person", "role": "recipient"}`).

Entities of other extractors are never changed; ours are dropped where they overlap theirs.
The `role_mapping` turns frame arguments into entities for entity types that have only a few
annotated examples, so a new domain fills its slots from frames early on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import SPACY_DOCS, TOKENS_NAMES
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.nlu.tokenizers.tokenizer import Tokenizer
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_CONFIDENCE,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_ROLE,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    EXTRACTOR,
    INTENT,
    INTENT_NAME_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu_components.encoder_featurizer import add_wait_work
from nlu_components.errors import ComponentConfigError, ModelLoadError
from nlu_components.role_tagger import EntitySpan, RoleTagger, TaggerConfig, TaggerInput
from nlu_components.roles import (
    Frame,
    MappedEntity,
    RoleMappingRule,
    TokenAnnotation,
    Value,
    covering_argument,
    extract_frames,
    find_values,
    map_frames,
    token_annotations,
)
from nlu_components.spacy_parser import declare_entity_use, ensure_entities, without_entities

logger = logging.getLogger(__name__)

META_FILE = "extractor.json"
TAGGER_DIR = "tagger"
_TAGGER_KEYS = (
    "use_role_features",
    "use_lexicon_features",
    "use_intent_features",
    "use_neural_features",
    "neural_folds",
    "neural_epochs",
    "neural_architecture",
    "lexicon_folds",
    "lexicon_max_words",
    "use_dependency_features",
    "encoder_dims",
    "encoder_clusters",
    "sentence_clusters",
    "window",
    "c1",
    "c2",
    "max_iterations",
    "max_projection_samples",
    "random_seed",
)
_TOKEN_VECTOR_SOURCES = ("featurizer", "encoder", "none")
#: Message key of the parse-only work a served model does ahead (`_parse_ahead`).
PARSED_AHEAD = "fusiondesk_slot_filler_parsed"


@dataclasses.dataclass
class ParsedAhead:
    """What the extractor computes from a message's parse alone (`_parse`)."""

    #: The message's spaCy doc this was computed from (`process` checks it is unchanged).
    source: Any
    #: The doc the extractor reads: `source`, or a copy without spaCy's entities.
    doc: Any
    frames: list[Frame]
    values: list[Value]
    annotations: list[TokenAnnotation]
    #: The tagger's `parse_features` of `doc`, when computed ahead.
    features: list[dict[str, float]] | None = None


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=True)
class SemanticRoleEntityExtractor(GraphComponent, EntityExtractorMixin):
    """Entities with semantic roles from a dependency parse, encoder vectors and a CRF."""

    @classmethod
    def required_components(cls) -> list[type]:
        return [Tokenizer]

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            # Where the per-token transformer vectors come from: "featurizer" reads the dense
            # sequence features of `featurizer_name` (TransformerEncoderFeaturizer earlier in the
            # pipeline), "encoder" encodes the text here with nlu_components.encoder,
            # "none" trains without encoder features.
            "token_vectors": "featurizer",
            # Name (or part of the node name) of the featurizer whose dense features are read.
            "featurizer_name": "TransformerEncoderFeaturizer",
            # Local transformers model directory for token_vectors: "encoder" (null = MiniLM).
            "encoder_model_path": None,
            # Train only on examples of intents that have at least one entity annotation:
            # the bank's FAQ utterances mention amounts and dates without annotating them, and
            # training on them would teach the tagger to ignore amounts. false = all examples.
            "train_on_annotated_intents_only": True,
            # Role and value features from the frames (the ablation switch).
            "use_role_features": True,
            # POS, dependency label and head features from the parse (and NER ones with
            # use_spacy_entities).
            "use_dependency_features": True,
            # Read spaCy's named entities (PERSON, ORG, GPE, DATE, MONEY, ...) as tagger
            # features and as typed values for the frames. Off by default: the tagger learns
            # the types from the annotations as well without them (dev exact-span F1 with /
            # without, `fusiondesk bench nlu`: HWU64 80.64 / 80.88, SNIPS 96.30 / 96.38), and
            # with no reader the parse skips spaCy's NER, 2-5 ms a message. The rules still
            # find amounts, currencies, card references, date words and proper-noun persons.
            # true = the frames also type ORG / GPE / DATE / PERSON spans from the NER.
            "use_spacy_entities": False,
            # Is this word sequence an annotated entity somewhere in the training data? Built
            # out-of-fold (lexicon_folds) while training; sequences of up to lexicon_max_words.
            "use_lexicon_features": True,
            # The intent (gold in training, the classifier's at run time) alone and paired
            # with each word: which slot a word fills depends on what is asked.
            "use_intent_features": True,
            # Stacking: a small network over the whole token vector and embedded token
            # attributes guesses each token's label; the CRF gets the guesses as features.
            # Trained on neural_folds out-of-fold splits (neural_epochs passes each), then on
            # all data. neural_architecture: "cnn" (two convolutions) or "lstm" (a BiLSTM).
            # Off by default: on HWU64 dev it lifted the tagger alone by about 1 point of
            # entity F1 but not a full benchmark run, and doubled training time there.
            "use_neural_features": False,
            "neural_folds": 3,
            "neural_epochs": 10,
            "neural_architecture": "cnn",
            "lexicon_folds": 5,
            "lexicon_max_words": 6,
            # PCA components of each token vector used as real-valued CRF features.
            "encoder_dims": 12,
            # k-means cluster counts over token vectors (one discrete feature each).
            "encoder_clusters": [32, 128, 512],
            # Clusters of the sentence vector (what the utterance is about); 0 = off.
            "sentence_clusters": 32,
            # Context window (tokens either side) of the lexical features.
            "window": 2,
            # CRF L1 / L2 regularisation and L-BFGS iterations.
            "c1": 0.05,
            "c2": 0.02,
            "max_iterations": 150,
            # Token vectors sampled to fit the PCA and k-means (bounds training time).
            "max_projection_samples": 20000,
            "random_seed": 13,
            # Entities below this confidence (mean CRF marginal of their tokens) are dropped.
            "min_confidence": 0.0,
            # Frame argument → entity rules, tried in order. `value` is a typed value found by
            # rules (amount, currency, date, card, person, org, place), `frame_role` the role of
            # the argument it sits in (agent, theme, recipient, beneficiary, source,
            # instrument, time, location, manner), `predicates` optional lemmas; `entity` and
            # `role` are what Rasa gets. The defaults suit the bank bot's forms.
            "role_mapping": [
                {"value": "amount", "entity": "amount"},
                {"value": "currency", "entity": "currency"},
                {"value": "date", "entity": "date"},
                {
                    "frame_role": "recipient",
                    "value": "person",
                    "entity": "person",
                    "role": "recipient",
                },
                {
                    "frame_role": "beneficiary",
                    "value": "person",
                    "entity": "person",
                    "role": "recipient",
                },
                {
                    "frame_role": "instrument",
                    "value": "card",
                    "entity": "card",
                    "role": "instrument",
                },
                {"value": "card", "entity": "card"},
                {"frame_role": "location", "value": "org", "entity": "merchant"},
                {"frame_role": "source", "value": "org", "entity": "merchant"},
            ],
            # Entity types with at least one but fewer than this many annotated examples are
            # also filled from `role_mapping` where the tagger found nothing (0 = never).
            "frame_fill_max_examples": 20,
            # Give a tagged entity without a role the role of a matching `role_mapping` rule
            # (only for entity types annotated with roles in the training data).
            "attach_roles": True,
            # Role for an entity inside a negated argument ("no, to Emma, not Anna"), so that
            # role-filtered slot mappings skip it; only for entity types that have roles.
            # null keeps the tagger's role.
            "negated_role": "excluded",
        }

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        tagger: RoleTagger | None = None,
        entity_counts: dict[str, int] | None = None,
        roled_entities: Iterable[str] = (),
    ) -> None:
        self._config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        self.tagger_config = self.validate_config(self._config)
        self.rules = [RoleMappingRule.from_dict(r) for r in self._config["role_mapping"] or []]
        self.tagger = tagger
        self.entity_counts = dict(entity_counts or {})
        self.roled_entities = set(roled_entities)
        self._encoder: Any = None

    @staticmethod
    def validate_config(config: dict[str, Any]) -> TaggerConfig:
        """Check the settings; return the tagger's part. Raises `ComponentConfigError`."""
        unknown = sorted(set(config) - set(SemanticRoleEntityExtractor.get_default_config()))
        if unknown:
            raise ComponentConfigError(
                f"SemanticRoleEntityExtractor: unknown setting(s) {unknown}; see "
                f"get_default_config() in nlu_components/semantic_role_extractor.py"
            )
        source = config.get("token_vectors")
        if source not in _TOKEN_VECTOR_SOURCES:
            raise ComponentConfigError(
                f"SemanticRoleEntityExtractor: token_vectors must be one of "
                f"{list(_TOKEN_VECTOR_SOURCES)}, got {source!r}"
            )
        if not 0.0 <= float(config.get("min_confidence", 0.0)) <= 1.0:
            raise ComponentConfigError(
                "SemanticRoleEntityExtractor: min_confidence must be in [0, 1]"
            )
        try:
            [RoleMappingRule.from_dict(r) for r in config.get("role_mapping") or []]
        except (ValueError, TypeError, AttributeError) as e:
            raise ComponentConfigError(f"SemanticRoleEntityExtractor: role_mapping: {e}") from e
        tagger_values = {k: config[k] for k in _TAGGER_KEYS if k in config}
        tagger_values["use_encoder_features"] = source != "none"
        try:
            return TaggerConfig.from_dict(tagger_values)
        except ComponentConfigError as e:
            raise ComponentConfigError(f"SemanticRoleEntityExtractor: {e}") from e

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SemanticRoleEntityExtractor:
        return cls(config, model_storage, resource)

    # ------------------------------------------------------------------ inputs

    def _doc(self, message: Message) -> Any:
        doc = message.get(SPACY_DOCS[TEXT])
        if doc is None:
            return None
        if len(doc) and not doc.has_annotation("DEP"):
            raise ComponentConfigError(
                "SemanticRoleEntityExtractor needs a dependency parse: put "
                "`nlu_components.ParsingSpacyNLP` (not SpacyNLP) at the start of the pipeline"
            )
        return doc

    def _source(self, message: Message) -> Any:
        """The message's parse; None for messages without words ("", "   "), which get no
        entities and need no features, or without a parse."""
        text = message.get(TEXT)
        return self._doc(message) if text and str(text).strip() else None

    def _inputs(
        self, messages: list[Message], ahead: list[ParsedAhead | None] | None = None
    ) -> tuple[list[TaggerInput | None], list[tuple[list[Frame], list[Value]] | None]]:
        """Tagger inputs and (frames, values) per message; None for messages without words.

        The frames are computed once per message: the tagger's role features and the
        role mapping both use them. `ahead`: per message, its `_parse_ahead` result, used
        when it was computed from the message's current parse.
        """
        sources = [self._source(m) for m in messages]
        ahead = ahead or [None] * len(messages)
        parsed: list[ParsedAhead | None] = [
            a if a is not None and source is not None and a.source is source else None
            for source, a in zip(sources, ahead, strict=True)
        ]
        missing = [
            n for n, (p, s) in enumerate(zip(parsed, sources)) if p is None and s is not None
        ]
        for n, computed in zip(missing, self._parse([sources[n] for n in missing]), strict=True):
            parsed[n] = computed
        vectors = self._token_vectors(messages, [p.doc if p else None for p in parsed])
        inputs: list[TaggerInput | None] = []
        for message, p, found in zip(messages, parsed, vectors, strict=True):
            inputs.append(
                None
                if p is None or found is None
                else TaggerInput(p.doc, found[0], found[1], p.annotations, _intent_name(message))
            )
        analyses = [
            None if p is None or i is None else (p.frames, p.values)
            for p, i in zip(parsed, inputs, strict=True)
        ]
        return inputs, analyses

    def _parse(self, sources: list[Any]) -> list[ParsedAhead]:
        """The parse-only analysis of docs: the doc this extractor reads (spaCy's entities
        removed unless `use_spacy_entities`), its frames, values and per-token annotations
        (`_parse_ahead` adds the tagger's parse features)."""
        if self._config["use_spacy_entities"]:
            ensure_entities(sources)  # training docs are parsed without NER until needed here
            docs = list(sources)
        else:
            docs = [without_entities(d) for d in sources]
        out = []
        for source, doc in zip(sources, docs, strict=True):
            frames, values = extract_frames(doc), find_values(doc)
            annotations = token_annotations(doc, frames, values)
            out.append(ParsedAhead(source, doc, frames, values, annotations))
        return out

    def _parse_ahead(self, messages: list[Message]) -> None:
        """Wait work (`add_wait_work`): each message's `_parse` and the tagger's parse
        features, left on it for `process` while the featurizer waits for the encoder."""
        present = [(m, source) for m in messages if (source := self._source(m)) is not None]
        parsed = self._parse([source for _, source in present])
        for (message, _), p in zip(present, parsed, strict=True):
            if self.tagger is not None:
                p.features = self.tagger.parse_features(
                    TaggerInput(p.doc, annotations=p.annotations)
                )
            message.set(PARSED_AHEAD, p)

    def _token_vectors(
        self, messages: list[Message], docs: list[Any]
    ) -> list[tuple[np.ndarray | None, np.ndarray | None] | None]:
        """(token vectors, sentence vector) per message with a doc (None without one)."""
        source = self._config["token_vectors"]
        if source == "none":
            return [None if d is None else (None, None) for d in docs]
        if source == "encoder":
            return self._encode(docs)
        return [
            None if doc is None else self._featurizer_vectors(message, doc)
            for message, doc in zip(messages, docs, strict=True)
        ]

    def _featurizer_vectors(self, message: Message, doc: Any) -> tuple[np.ndarray, np.ndarray]:
        name = self._config["featurizer_name"]
        dense = [f for f in message.features if f.attribute == TEXT and f.is_dense()]
        named = [
            f
            for f in dense
            if any(name in str(o) for o in (f.origin if isinstance(f.origin, list) else [f.origin]))
        ]
        # a featurizer created outside a Rasa graph has no node name: use the only one there is
        chosen = named or (dense if len(dense) <= 2 else [])
        sequence = sentence = None
        for features in chosen:
            if features.type == "sequence" and sequence is None:
                sequence = np.asarray(features.features, dtype=np.float32)
            elif features.type == "sentence" and sentence is None:
                sentence = np.asarray(features.features, dtype=np.float32).reshape(-1)
        tokens = message.get(TOKENS_NAMES[TEXT]) or []
        if sequence is None or sentence is None or len(sequence) != len(tokens):
            raise ComponentConfigError(
                f"SemanticRoleEntityExtractor: no dense features from {name!r} on the message "
                f"{message.get(TEXT)!r}. Put nlu_components.TransformerEncoderFeaturizer before "
                f"the extractor, or set token_vectors: encoder (or none)."
            )
        return _tokens_to_doc(sequence, [(t.start, t.end) for t in tokens], doc), sentence

    def _encode(self, docs: list[Any]) -> list[tuple[np.ndarray | None, np.ndarray | None] | None]:
        from nlu_components.align import pool_pieces_to_tokens
        from nlu_components.encoder import load_encoder

        if self._encoder is None:
            self._encoder = load_encoder(self._config["encoder_model_path"])
        present = [d for d in docs if d is not None]
        encodings = iter(self._encoder.encode_tokens([d.text for d in present]))
        out: list[tuple[np.ndarray | None, np.ndarray | None] | None] = []
        for doc in docs:
            if doc is None:
                out.append(None)
                continue
            encoding = next(encodings)
            spans = [(t.idx, t.idx + len(t.text)) for t in doc]
            out.append(
                (
                    pool_pieces_to_tokens(encoding.vectors, encoding.offsets, spans),
                    encoding.sentence,
                )
            )
        return out

    # ------------------------------------------------------------------ training

    def train(self, training_data: TrainingData) -> Resource:
        """Train the tagger from the entity annotations and persist it."""
        examples = [
            m for m in self.filter_trainable_entities(training_data.nlu_examples) if m.get(TEXT)
        ]
        counts: Counter[str] = Counter()
        roled: set[str] = set()
        annotated_intents: set[str] = set()
        for message in examples:
            for entity in message.get(ENTITIES) or []:
                counts[entity[ENTITY_ATTRIBUTE_TYPE]] += 1
                if entity.get(ENTITY_ATTRIBUTE_ROLE):
                    roled.add(entity[ENTITY_ATTRIBUTE_TYPE])
                annotated_intents.add(str(message.get(INTENT)))
        if self._config["train_on_annotated_intents_only"]:
            examples = [m for m in examples if str(m.get(INTENT)) in annotated_intents]
        self.entity_counts = dict(counts)
        self.roled_entities = roled
        self.tagger = None
        if counts:
            inputs, _ = self._inputs(examples)
            pairs = [(i, m) for i, m in zip(inputs, examples, strict=True) if i is not None]
            spans = [_annotated_spans(m) for _, m in pairs]
            tagger = RoleTagger(self.tagger_config)
            tagger.fit([i for i, _ in pairs], spans)  # type: ignore[misc]
            self.tagger = tagger
            logger.info(
                "SemanticRoleEntityExtractor trained on %d examples, %d entity types",
                len(pairs),
                len(counts),
            )
        else:
            logger.warning(
                "SemanticRoleEntityExtractor: the NLU data has no entity annotations, so the "
                "extractor will find no entities. Annotate a few examples, e.g. "
                '[Anna]{"entity": "person", "role": "recipient"}.'
            )
        self.persist()
        return self._resource

    def persist(self) -> None:
        with self._model_storage.write_to(self._resource) as directory:
            meta = {
                "entity_counts": self.entity_counts,
                "roled_entities": sorted(self.roled_entities),
                "token_vectors": self._config["token_vectors"],
                "has_tagger": self.tagger is not None,
                "use_spacy_entities": bool(self._config["use_spacy_entities"]),
            }
            (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            if self.tagger is not None:
                self.tagger.save(directory / TAGGER_DIR)

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> SemanticRoleEntityExtractor:
        """Load the trained extractor; raise `ModelLoadError` when it is missing or broken."""
        try:
            with model_storage.read_from(resource) as directory:
                meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
                tagger = RoleTagger.load(directory / TAGGER_DIR) if meta["has_tagger"] else None
        except (ValueError, OSError, KeyError) as e:
            raise ModelLoadError(
                f"SemanticRoleEntityExtractor: the trained model is missing or unreadable "
                f"({e}). Retrain with `rasa train`."
            ) from e
        # a model saved before the setting existed was trained with spaCy's entities
        merged = {**config, "use_spacy_entities": bool(meta.get("use_spacy_entities", True))}
        if meta.get("token_vectors") and meta["token_vectors"] != config.get(
            "token_vectors", cls.get_default_config()["token_vectors"]
        ):
            raise ModelLoadError(
                f"SemanticRoleEntityExtractor was trained with token_vectors="
                f"{meta['token_vectors']!r} but is configured with {config.get('token_vectors')!r}: "
                f"retrain with `rasa train`."
            )
        extractor = cls(
            merged,
            model_storage,
            resource,
            tagger,
            meta.get("entity_counts", {}),
            meta.get("roled_entities", []),
        )
        # lets the parser skip spaCy's NER for a model whose slot filler does not read it
        declare_entity_use(execution_context.model_id, extractor.reads_spacy_entities)
        if extractor.finds_entities:
            # the frames and the tagger's parse features, while the featurizer waits
            add_wait_work(execution_context.model_id, extractor._parse_ahead)
        return extractor

    # ------------------------------------------------------------------ inference

    def _fill_types(self) -> set[str]:
        """Entity types the frames fill: those with a few annotated examples and a rule."""
        return {
            rule.entity
            for rule in self.rules
            if 0 < self.entity_counts.get(rule.entity, 0) < self._config["frame_fill_max_examples"]
        }

    @property
    def finds_entities(self) -> bool:
        """False when trained on data without entity annotations: nothing to tag or fill."""
        return self.tagger is not None or bool(self._fill_types())

    @property
    def reads_spacy_entities(self) -> bool:
        """True when this extractor needs spaCy's NER on incoming messages."""
        return self.finds_entities and bool(self._config["use_spacy_entities"])

    def process(self, messages: list[Message]) -> list[Message]:
        """Add our entities to each message (others' entities are kept as they are)."""
        if not self.finds_entities:
            return messages  # no parse features, frames or spaCy entities needed
        ahead: list[ParsedAhead | None] = [m.data.pop(PARSED_AHEAD, None) for m in messages]
        inputs, analyses = self._inputs(messages, ahead)
        predicted: list[list[EntitySpan]] = [[] for _ in messages]
        if self.tagger is not None:
            present = [(n, i) for n, i in enumerate(inputs) if i is not None]
            features = [
                a.features if a is not None and a.doc is i.doc else None
                for a, i in ((ahead[n], i) for n, i in present)
            ]
            for (n, _), spans in zip(
                present, self.tagger.predict([i for _, i in present], features), strict=True
            ):
                predicted[n] = spans
        for message, tagger_input, analysis, spans in zip(
            messages, inputs, analyses, predicted, strict=True
        ):
            if tagger_input is None or analysis is None:
                continue
            entities = self._entities(tagger_input.doc, spans, *analysis)
            existing = message.get(ENTITIES) or []
            others = [(e[ENTITY_ATTRIBUTE_START], e[ENTITY_ATTRIBUTE_END]) for e in existing]
            ours = [
                e
                for e in entities
                if all(
                    e[ENTITY_ATTRIBUTE_END] <= s or e[ENTITY_ATTRIBUTE_START] >= t
                    for s, t in others
                )
            ]
            message.set(ENTITIES, existing + self.add_extractor_name(ours), add_to_output=True)
        return messages

    def _entities(
        self, doc: Any, spans: list[EntitySpan], frames: list[Frame], values: list[Value]
    ) -> list[dict[str, Any]]:
        min_confidence = float(self._config["min_confidence"])
        negated_role = self._config["negated_role"]
        out: list[dict[str, Any]] = []
        for span in spans:
            if span.confidence < min_confidence:
                continue
            role = span.role
            if span.entity in self.roled_entities:
                argument, frame = covering_argument(frames, span.start, span.end)
                if argument is not None and argument.negated and negated_role:
                    role = negated_role
                elif role is None and self._config["attach_roles"] and argument is not None:
                    role = self._mapped_role(span.entity, argument, frame)
            out.append(
                _entity(span.start, span.end, span.value, span.entity, role, span.confidence)
            )
        fill_types = self._fill_types()
        if fill_types:
            taken = [(e[ENTITY_ATTRIBUTE_START], e[ENTITY_ATTRIBUTE_END]) for e in out]
            for mapped in map_frames(doc, self.rules, frames, values):
                if mapped.entity not in fill_types:
                    continue
                if any(not (mapped.end_char <= s or mapped.start_char >= e) for s, e in taken):
                    continue
                out.append(self._mapped_entity(mapped, negated_role))
                taken.append((mapped.start_char, mapped.end_char))
        return sorted(out, key=lambda e: e[ENTITY_ATTRIBUTE_START])

    def _mapped_role(self, entity: str, argument: Any, frame: Any) -> str | None:
        for rule in self.rules:
            if rule.entity == entity and rule.role and rule.frame_role == argument.role:
                if not rule.predicates or (
                    frame is not None and frame.predicate in rule.predicates
                ):
                    return rule.role
        return None

    def _mapped_entity(self, mapped: MappedEntity, negated_role: str | None) -> dict[str, Any]:
        role = mapped.role
        if mapped.negated and negated_role and mapped.entity in self.roled_entities:
            role = negated_role
        # frames are rules, not a trained model: a fixed, modest confidence
        return _entity(mapped.start_char, mapped.end_char, mapped.text, mapped.entity, role, 0.5)


def _entity(
    start: int, end: int, value: str, entity: str, role: str | None, confidence: float
) -> dict[str, Any]:
    out: dict[str, Any] = {
        ENTITY_ATTRIBUTE_TYPE: entity,
        ENTITY_ATTRIBUTE_VALUE: value,
        ENTITY_ATTRIBUTE_START: start,
        ENTITY_ATTRIBUTE_END: end,
        ENTITY_ATTRIBUTE_CONFIDENCE: round(float(confidence), 4),
    }
    if role:
        out[ENTITY_ATTRIBUTE_ROLE] = role
    return out


def _annotated_spans(message: Message) -> list[EntitySpan]:
    return [
        EntitySpan(
            start=int(e[ENTITY_ATTRIBUTE_START]),
            end=int(e[ENTITY_ATTRIBUTE_END]),
            entity=str(e[ENTITY_ATTRIBUTE_TYPE]),
            role=e.get(ENTITY_ATTRIBUTE_ROLE) or None,
        )
        for e in message.get(ENTITIES) or []
        if e.get(EXTRACTOR) is None
    ]


def _tokens_to_doc(sequence: np.ndarray, spans: list[tuple[int, int]], doc: Any) -> np.ndarray:
    """Re-index Rasa-token vectors onto spaCy tokens (whitespace tokens get the mean)."""
    by_start = {start: row for row, (start, _) in enumerate(spans)}
    fallback = sequence.mean(axis=0) if len(sequence) else np.zeros(sequence.shape[1], np.float32)
    out = np.empty((len(doc), sequence.shape[1]), dtype=np.float32)
    for i, token in enumerate(doc):
        row = by_start.get(token.idx)
        out[i] = sequence[row] if row is not None else fallback
    return out


def _intent_name(message: Message) -> str | None:
    """Gold intent (a string, training data) or the classifier's prediction (a dict)."""
    intent = message.get(INTENT)
    if isinstance(intent, dict):
        intent = intent.get(INTENT_NAME_KEY)
    return str(intent) if intent else None
