"""`SemanticRoleEntityExtractor` with the real parsing spaCy pipeline and encoder featurizer.

Train → process → persist → load → same entities; batch equals one-by-one; others' entities
are kept; a missing model fails loudly; frames fill rare entity types; a served model's
parse-only work is done while the encoder works, and only for the parse it came from.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.constants import SPACY_DOCS, TOKENS_NAMES
from rasa.nlu.tokenizers.spacy_tokenizer import SpacyTokenizer
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader
from rasa.shared.nlu.training_data.message import Message

from nlu_components.encoder_featurizer import TransformerEncoderFeaturizer
from nlu_components.errors import ComponentConfigError, ModelLoadError
from nlu_components.roles import find_values
from nlu_components.semantic_role_extractor import (
    META_FILE,
    PARSED_AHEAD,
    ParsedAhead,
    SemanticRoleEntityExtractor,
)
from nlu_components.spacy_parser import (
    NER_PENDING,
    ParsingSpacyNLP,
    catch_up_entities,
    declare_entity_use,
    ensure_entities,
)

NLU_YAML = """
version: "3.1"
nlu:
- intent: transfer_money
  examples: |
    - send [50](amount) [euros](currency) to [Anna]{"entity": "person", "role": "recipient"}
    - transfer [20](amount) [dollars](currency) to [Ben]{"entity": "person", "role": "recipient"} [tomorrow](date)
    - please pay [Olga]{"entity": "person", "role": "recipient"} [100](amount) [pounds](currency)
    - I want to send [75](amount) [EUR](currency) to [Kwame]{"entity": "person", "role": "recipient"} on [Friday](date)
    - wire [300](amount) [francs](currency) to [Sofia]{"entity": "person", "role": "recipient"}
    - can I send [15](amount) [euros](currency) to [Emma]{"entity": "person", "role": "recipient"} [today](date)?
    - move [40](amount) [GBP](currency) to [Lukas]{"entity": "person", "role": "recipient"} [next Monday](date)
    - send money to [Priya]{"entity": "person", "role": "recipient"}
    - transfer [60](amount) [USD](currency) to [Marco]{"entity": "person", "role": "recipient"}
    - I'd like to send [Chloe]{"entity": "person", "role": "recipient"} [25](amount) [euros](currency) [tomorrow](date)
- intent: correct_slot
  examples: |
    - no, to [Emma]{"entity": "person", "role": "recipient"}, not [Anna]{"entity": "person", "role": "excluded"}
    - not [Ben]{"entity": "person", "role": "excluded"}, [Tom]{"entity": "person", "role": "recipient"}
    - actually send it to [Zoe]{"entity": "person", "role": "recipient"} instead of [Mia]{"entity": "person", "role": "excluded"}
- intent: block_card
  examples: |
    - block my [visa card](card)
    - freeze the [virtual card](card)
    - please block my [credit card](card)
    - lock the [card ending in 4321](card)
- intent: greet
  examples: |
    - hello
    - hi there
"""

#: Loads the real spaCy pipeline and MiniLM and trains a (small) CRF.
pytestmark = pytest.mark.slow

#: Quick settings: the tiny data set needs few CRF iterations and small codebooks.
QUICK: dict[str, Any] = {
    "max_iterations": 40,
    "encoder_clusters": [4, 8],
    "sentence_clusters": 2,
    "encoder_dims": 8,
}


class Pipeline:
    """ParsingSpacyNLP → SpacyTokenizer → TransformerEncoderFeaturizer, created once."""

    def __init__(self, root: Path) -> None:
        self.storage = LocalModelStorage(root)
        self.context = ExecutionContext(GraphSchema({}), "test-model")
        self.nlp = ParsingSpacyNLP.create({}, self.storage, Resource("nlp"), self.context)
        self.tokenizer = SpacyTokenizer.create(
            SpacyTokenizer.get_default_config(), self.storage, Resource("tok"), self.context
        )
        # node name as Rasa's recipe gives it (the features' origin)
        node = dataclasses.replace(
            self.context, node_name="run_nlu_components.TransformerEncoderFeaturizer2"
        )
        self.featurizer = TransformerEncoderFeaturizer.create(
            {}, self.storage, Resource("enc"), node
        )
        self.spacy_model = self.nlp.provide()

    def prepare(self, messages: list[Message]) -> list[Message]:
        messages = self.nlp.process(messages, self.spacy_model)
        for component in (self.tokenizer, self.featurizer):
            messages = component.process(messages)
        return messages

    def training_data(self):  # type: ignore[no-untyped-def]
        data = RasaYAMLReader().reads(NLU_YAML)
        data = self.nlp.process_training_data(data, self.spacy_model)
        for component in (self.tokenizer, self.featurizer):
            data = component.process_training_data(data)
        return data


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return Pipeline(tmp_path_factory.mktemp("storage"))


@pytest.fixture(scope="module")
def trained(pipeline: Pipeline) -> tuple[SemanticRoleEntityExtractor, Resource]:
    resource = Resource("semantic_roles")
    extractor = SemanticRoleEntityExtractor.create(
        {**SemanticRoleEntityExtractor.get_default_config(), **QUICK},
        pipeline.storage,
        resource,
        pipeline.context,
    )
    extractor.train(pipeline.training_data())
    return extractor, resource


TEXTS = [
    "send 30 euros to Anna tomorrow",
    "transfer 80 dollars to Ben",
    "no, to Emma, not Anna",
    "please block my visa card",
    "hello",
]


def entities_of(
    extractor: SemanticRoleEntityExtractor, pipeline: Pipeline, texts: list[str]
) -> list[list[dict[str, Any]]]:
    messages = pipeline.prepare([Message(data={TEXT: t}) for t in texts])
    extractor.process(messages)
    return [m.get(ENTITIES) or [] for m in messages]


def simple(entities: list[dict[str, Any]]) -> set[tuple[str, str, str | None]]:
    return {(e["entity"], e["value"], e.get("role")) for e in entities}


def test_train_process_persist_load_same_entities(
    trained: tuple[SemanticRoleEntityExtractor, Resource], pipeline: Pipeline
) -> None:
    extractor, resource = trained
    first = entities_of(extractor, pipeline, TEXTS)
    assert ("person", "Anna", "recipient") in simple(first[0])
    assert ("amount", "30", None) in simple(first[0])
    assert ("currency", "euros", None) in simple(first[0])
    assert ("person", "Emma", "recipient") in simple(first[2])
    assert ("person", "Anna", "excluded") in simple(first[2])
    assert ("card", "visa card", None) in simple(first[3])
    assert first[4] == []
    for entity in first[0]:
        assert entity["extractor"] == "SemanticRoleEntityExtractor"
        assert 0.0 < entity["confidence"] <= 1.0
        assert TEXTS[0][entity["start"] : entity["end"]] == entity["value"]

    loaded = SemanticRoleEntityExtractor.load(
        {**SemanticRoleEntityExtractor.get_default_config(), **QUICK},
        pipeline.storage,
        resource,
        pipeline.context,
    )
    assert entities_of(loaded, pipeline, TEXTS) == first


def test_batch_equals_one_by_one(
    trained: tuple[SemanticRoleEntityExtractor, Resource], pipeline: Pipeline
) -> None:
    extractor, _ = trained
    batch = entities_of(extractor, pipeline, TEXTS)
    single = [entities_of(extractor, pipeline, [t])[0] for t in TEXTS]
    assert batch == single


def test_entities_of_other_extractors_are_kept(
    trained: tuple[SemanticRoleEntityExtractor, Resource], pipeline: Pipeline
) -> None:
    extractor, _ = trained
    text = "send 30 euros to Anna tomorrow"
    (message,) = pipeline.prepare([Message(data={TEXT: text})])
    theirs = {
        "entity": "money",
        "value": "30 euros",
        "start": 5,
        "end": 13,
        "extractor": "RegexEntityExtractor",
    }
    message.set(ENTITIES, [dict(theirs)])
    extractor.process([message])
    entities = message.get(ENTITIES)
    assert entities[0] == theirs
    ours = [e for e in entities if e["extractor"] == "SemanticRoleEntityExtractor"]
    assert ours and all(e["start"] >= 13 for e in ours)  # nothing overlapping "30 euros"
    assert ("person", "Anna", "recipient") in simple(ours)


def test_bad_input_never_crashes(
    trained: tuple[SemanticRoleEntityExtractor, Resource], pipeline: Pipeline
) -> None:
    extractor, _ = trained
    texts = ["", "   ", "🙂🙂🙂", "card " * 2000, "\x00\x01 binary \x7f", "¿Dónde está mi tarjeta?"]
    results = entities_of(extractor, pipeline, texts)
    assert len(results) == len(texts)
    for text, entities in zip(texts, results, strict=True):
        for e in entities:
            assert text[e["start"] : e["end"]] == e["value"]


def test_missing_model_fails_loudly(pipeline: Pipeline) -> None:
    with pytest.raises(ModelLoadError, match="rasa train"):
        SemanticRoleEntityExtractor.load(
            SemanticRoleEntityExtractor.get_default_config(),
            pipeline.storage,
            Resource("never_trained"),
            pipeline.context,
        )


def test_frames_fill_rare_entity_types_without_a_tagger(pipeline: Pipeline) -> None:
    # no tagger at all; "amount" and "person" have a few examples, "currency" none
    extractor = SemanticRoleEntityExtractor(
        {**SemanticRoleEntityExtractor.get_default_config(), "token_vectors": "none"},
        pipeline.storage,
        Resource("frames_only"),
        tagger=None,
        entity_counts={"amount": 2, "person": 3},
        roled_entities={"person"},
    )
    (message,) = pipeline.prepare([Message(data={TEXT: "send 75 dollars to Ben and Kwame"})])
    extractor.process([message])
    found = simple(message.get(ENTITIES))
    assert ("amount", "75", None) in found
    assert ("person", "Ben", "recipient") in found and ("person", "Kwame", "recipient") in found
    assert not any(kind == "currency" for kind, _, _ in found)  # no examples: not filled
    assert all(e["confidence"] == 0.5 for e in message.get(ENTITIES))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"token_vectors": "bert"}, "token_vectors"),
        ({"window": 9}, "window"),
        ({"min_confidence": 2}, "min_confidence"),
        ({"role_mapping": [{"entity": "x", "frame_role": "goal"}]}, "frame_role"),
        ({"colour": "red"}, "unknown"),
    ],
)
def test_bad_config_names_the_key(change: dict[str, Any], message: str, tmp_path: Path) -> None:
    config = {**SemanticRoleEntityExtractor.get_default_config(), **change}
    with pytest.raises(ComponentConfigError, match=message):
        SemanticRoleEntityExtractor(config, LocalModelStorage(tmp_path), Resource("x"))


def test_stacked_neural_tagger_trains_persists_and_loads(pipeline: Pipeline) -> None:
    # use_neural_features (off by default): the CNN's guesses feed the CRF through Rasa too
    config = {
        **SemanticRoleEntityExtractor.get_default_config(),
        **QUICK,
        "use_neural_features": True,
        "neural_epochs": 4,
    }
    resource = Resource("semantic_roles_neural")
    extractor = SemanticRoleEntityExtractor.create(
        config, pipeline.storage, resource, pipeline.context
    )
    extractor.train(pipeline.training_data())
    assert extractor.tagger is not None and extractor.tagger.neural is not None
    first = entities_of(extractor, pipeline, TEXTS)
    assert ("person", "Anna", "recipient") in simple(first[0])
    assert ("amount", "30", None) in simple(first[0])
    assert first[4] == []
    loaded = SemanticRoleEntityExtractor.load(config, pipeline.storage, resource, pipeline.context)
    assert loaded.tagger is not None and loaded.tagger.neural is not None
    assert entities_of(loaded, pipeline, TEXTS) == first
    assert [entities_of(loaded, pipeline, [t])[0] for t in TEXTS] == first


def _entities(doc: Any) -> list[tuple[int, int, str, str]]:
    return [(t.i, t.idx, t.ent_iob_, t.ent_type_) for t in doc]


def test_training_parse_defers_ner_until_the_slot_filler_needs_it(pipeline: Pipeline) -> None:
    data = pipeline.nlp.process_training_data(
        RasaYAMLReader().reads(NLU_YAML), pipeline.spacy_model
    )
    docs = [m.get(SPACY_DOCS[TEXT]) for m in data.training_examples]
    assert docs and all(d.user_data.get(NER_PENDING) for d in docs)
    transfer = next(d for d in docs if d.text.startswith("transfer 20 dollars"))
    assert not transfer.ents and transfer.has_annotation("DEP")  # parsed, NER not run yet
    ensure_entities(docs)
    nlp = pipeline.spacy_model.model
    for doc in docs:
        assert NER_PENDING not in doc.user_data
        assert _entities(doc) == _entities(nlp(doc.text))  # exactly what a full parse gives
    assert transfer.ents  # "20 dollars", "Ben", "tomorrow"
    ensure_entities(docs)  # a second call changes nothing
    assert all(_entities(d) == _entities(nlp(d.text)) for d in docs)
    # incoming messages of a model whose entity readers are unknown get the full parse
    doc = _parse(_parser_for(pipeline, "undeclared-model"), pipeline, "send 50 euros to Anna")
    assert NER_PENDING not in doc.user_data and doc.ents


def test_ner_is_deferred_only_when_it_is_last_and_enabled(pipeline: Pipeline) -> None:
    import spacy

    assert pipeline.nlp._deferred_ner(pipeline.spacy_model.model)
    off = ParsingSpacyNLP.create(
        {"defer_ner": False}, pipeline.storage, Resource("nlp_off"), pipeline.context
    )
    assert not off._deferred_ner(pipeline.spacy_model.model)
    data = off.process_training_data(RasaYAMLReader().reads(NLU_YAML), pipeline.spacy_model)
    docs = [m.get(SPACY_DOCS[TEXT]) for m in data.training_examples]
    assert all(NER_PENDING not in d.user_data for d in docs)
    assert any(d.ents for d in docs)
    followed = spacy.blank("en")
    followed.add_pipe("ner")
    followed.add_pipe("sentencizer")  # a component after the NER may depend on it
    assert not pipeline.nlp._deferred_ner(followed)


def _parser_for(pipeline: Pipeline, model_id: str, schema: GraphSchema | None = None) -> Any:
    context = ExecutionContext(schema or GraphSchema({}), model_id)
    return ParsingSpacyNLP.create({}, pipeline.storage, Resource(f"nlp-{model_id}"), context)


def _parse(parser: Any, pipeline: Pipeline, text: str) -> Any:
    (message,) = parser.process([Message(data={TEXT: text})], pipeline.spacy_model)
    return message.get(SPACY_DOCS[TEXT])


def test_incoming_messages_get_the_ner_only_where_entities_are_read(
    pipeline: Pipeline,
) -> None:
    text = "send 50 euros to Anna tomorrow"
    full = _entities(pipeline.spacy_model.model(text))
    # a loaded model whose only entity reader declared it finds nothing: the NER never runs
    declare_entity_use("model-without-entities", False)
    parser = _parser_for(pipeline, "model-without-entities")
    (message,) = parser.process([Message(data={TEXT: text})], pipeline.spacy_model)
    doc = message.get(SPACY_DOCS[TEXT])
    assert doc.user_data.get(NER_PENDING) and not doc.ents and doc.has_annotation("DEP")
    catch_up_entities([message], "model-without-entities")
    assert doc.user_data.get(NER_PENDING) and not doc.ents
    ensure_entities([doc])  # a reader that wants them after all still gets the same ones
    assert _entities(doc) == full
    # one reader that needs entities is enough: the parse leaves the NER for later, and the
    # encoder featurizer catches up on it while it waits for the transformer
    declare_entity_use("model-with-entities", False)
    declare_entity_use("model-with-entities", True)
    parser = _parser_for(pipeline, "model-with-entities")
    (message,) = parser.process([Message(data={TEXT: text})], pipeline.spacy_model)
    doc = message.get(SPACY_DOCS[TEXT])
    assert doc.user_data.get(NER_PENDING) and not doc.ents
    catch_up_entities([message], "model-with-entities")
    assert NER_PENDING not in doc.user_data and _entities(doc) == full
    # nobody declared anything (another pipeline, or the model is not loaded by Rasa)
    doc = _parse(_parser_for(pipeline, "model-nobody-declared"), pipeline, text)
    assert NER_PENDING not in doc.user_data and _entities(doc) == full
    # Rasa's SpacyEntityExtractor reads doc.ents itself: never skip the NER beside it
    from rasa.engine.graph import SchemaNode
    from rasa.nlu.extractors.spacy_entity_extractor import SpacyEntityExtractor

    schema = GraphSchema(
        {
            "ents": SchemaNode(
                needs={},
                uses=SpacyEntityExtractor,
                constructor_name="load",
                fn="process",
                config={},
            )
        }
    )
    declare_entity_use("model-with-spacy-extractor", False)
    doc = _parse(_parser_for(pipeline, "model-with-spacy-extractor", schema), pipeline, text)
    assert NER_PENDING not in doc.user_data and _entities(doc) == full


def test_a_slot_filler_trained_without_annotations_reads_nothing(pipeline: Pipeline) -> None:
    data = RasaYAMLReader().reads(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hello\n    - hi there\n'
        "- intent: card_arrival\n  examples: |\n    - where is my card?\n"
        "    - my card from Berlin has not arrived after 5 days\n"
    )
    data = pipeline.nlp.process_training_data(data, pipeline.spacy_model)
    resource = Resource("semantic_roles_empty")
    extractor = SemanticRoleEntityExtractor.create(
        SemanticRoleEntityExtractor.get_default_config(),
        pipeline.storage,
        resource,
        pipeline.context,
    )
    extractor.train(data)
    assert extractor.tagger is None and not extractor.finds_entities
    context = ExecutionContext(GraphSchema({}), "model-trained-without-entities")
    loaded = SemanticRoleEntityExtractor.load(
        SemanticRoleEntityExtractor.get_default_config(), pipeline.storage, resource, context
    )
    assert not loaded.finds_entities
    parser = _parser_for(pipeline, "model-trained-without-entities")
    (message,) = parser.process(
        [Message(data={TEXT: "send 50 euros to Anna tomorrow"})], pipeline.spacy_model
    )
    assert message.get(SPACY_DOCS[TEXT]).user_data.get(NER_PENDING)  # the parse skipped it
    loaded.process([message])
    assert not message.get(ENTITIES)
    assert message.get(SPACY_DOCS[TEXT]).user_data.get(NER_PENDING)  # and nobody ran it


def _load_as(pipeline: Pipeline, resource: Resource, model_id: str, **config: Any) -> Any:
    context = ExecutionContext(GraphSchema({}), model_id)
    defaults = SemanticRoleEntityExtractor.get_default_config()
    return SemanticRoleEntityExtractor.load(
        {**defaults, **QUICK, **config}, pipeline.storage, resource, context
    )


def _serve(pipeline: Pipeline, model_id: str, text: str) -> Message:
    """`text` through the parser, tokenizer and featurizer of the served model `model_id`."""
    (message,) = _parser_for(pipeline, model_id).process(
        [Message(data={TEXT: text})], pipeline.spacy_model
    )
    node = ExecutionContext(
        GraphSchema({}), model_id, node_name="run_nlu_components.TransformerEncoderFeaturizer2"
    )
    featurizer = TransformerEncoderFeaturizer.create({}, pipeline.storage, Resource("enc"), node)
    for component in (pipeline.tokenizer, featurizer):
        (message,) = component.process([message])
    return message


def test_by_default_spacy_entities_are_not_read_and_the_ner_never_runs(
    trained: tuple[SemanticRoleEntityExtractor, Resource], pipeline: Pipeline
) -> None:
    extractor, resource = trained
    assert not extractor.reads_spacy_entities  # the default: the tagger learns the types
    loaded = _load_as(pipeline, resource, "model-without-spacy-entities")
    assert loaded.finds_entities and not loaded.reads_spacy_entities
    message = _serve(pipeline, "model-without-spacy-entities", TEXTS[0])
    loaded.process([message])
    doc = message.get(SPACY_DOCS[TEXT])
    assert doc.user_data.get(NER_PENDING) and not doc.ents  # nobody ran the NER
    deferred = message.get(ENTITIES)
    assert ("person", "Anna", "recipient") in simple(deferred)
    # where another component made spaCy run the NER, the extractor ignores its entities, so
    # it finds the same as on the deferred parse, and the shared doc keeps its entities
    (full,) = pipeline.prepare([Message(data={TEXT: TEXTS[0]})])
    ensure_entities([full.get(SPACY_DOCS[TEXT])])
    named = list(full.get(SPACY_DOCS[TEXT]).ents)
    assert named  # "30", "Anna", "tomorrow"
    (seen_full,), _ = loaded._inputs([full])
    (seen_deferred,), _ = loaded._inputs([message])
    assert not seen_full.doc.ents  # the tagger's view of the doc has no NER entities
    assert loaded.tagger.featurize(seen_full) == loaded.tagger.featurize(seen_deferred)
    loaded.process([full])
    assert full.get(ENTITIES) == deferred
    assert list(full.get(SPACY_DOCS[TEXT]).ents) == named


def test_frames_take_proper_nouns_for_people_without_the_ner(pipeline: Pipeline) -> None:
    declare_entity_use("frames-without-ner", False)
    doc = _parse(
        _parser_for(pipeline, "frames-without-ner"), pipeline, "send 75 dollars to Ben Okafor"
    )
    assert not doc.has_annotation("ENT_IOB")
    kinds = {(v.kind, v.text) for v in find_values(doc)}
    assert ("person", "Ben Okafor") in kinds and ("amount", "75") in kinds
    ensure_entities([doc])
    assert ("person", "Ben Okafor") in {(v.kind, v.text) for v in find_values(doc)}


def test_spacy_entities_when_configured_and_for_models_saved_before_the_setting(
    pipeline: Pipeline,
) -> None:
    resource = Resource("semantic_roles_ner")
    extractor = SemanticRoleEntityExtractor.create(
        {**SemanticRoleEntityExtractor.get_default_config(), **QUICK, "use_spacy_entities": True},
        pipeline.storage,
        resource,
        pipeline.context,
    )
    extractor.train(pipeline.training_data())
    assert extractor.reads_spacy_entities
    loaded = _load_as(pipeline, resource, "model-with-spacy-entities", use_spacy_entities=True)
    assert loaded.reads_spacy_entities
    message = _serve(pipeline, "model-with-spacy-entities", TEXTS[0])
    loaded.process([message])
    doc = message.get(SPACY_DOCS[TEXT])
    assert NER_PENDING not in doc.user_data and doc.ents  # the NER ran for this model
    assert ("person", "Anna", "recipient") in simple(message.get(ENTITIES))
    # a model saved before `use_spacy_entities` existed was trained with spaCy's entities:
    # it keeps reading them whatever today's default says
    with pipeline.storage.read_from(resource) as directory:
        meta_file = directory / META_FILE
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        assert meta.pop("use_spacy_entities") is True
        meta_file.write_text(json.dumps(meta), encoding="utf-8")
    assert _load_as(pipeline, resource, "model-from-before").reads_spacy_entities


def test_a_served_model_reads_the_parse_while_the_encoder_works(
    trained: tuple[SemanticRoleEntityExtractor, Resource],
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, resource = trained
    loaded = _load_as(pipeline, resource, "model-parsing-ahead")
    calls: list[str] = []
    parse_features = loaded.tagger.parse_features

    def counted(tagger_input: Any, lexicon: Any = None) -> Any:
        calls.append(tagger_input.doc.text)
        return parse_features(tagger_input, lexicon)

    monkeypatch.setattr(loaded.tagger, "parse_features", counted)
    message = _serve(pipeline, "model-parsing-ahead", TEXTS[0])
    # the featurizer's wait ran the extractor's parse-only work on the message
    ahead = message.get(PARSED_AHEAD)
    assert isinstance(ahead, ParsedAhead)
    assert ahead.source is message.get(SPACY_DOCS[TEXT]) and ahead.features is not None
    assert calls == [TEXTS[0]]
    calls.clear()
    loaded.process([message])
    assert calls == [] and message.get(PARSED_AHEAD) is None  # taken, not recomputed
    assert ("person", "Anna", "recipient") in simple(message.get(ENTITIES))
    # the same entities as a message whose parse is analysed only in `process`
    (plain,) = pipeline.prepare([Message(data={TEXT: TEXTS[0]})])
    loaded.process([plain])
    assert calls == [TEXTS[0]] and plain.get(ENTITIES) == message.get(ENTITIES)
    # work done ahead on another parse than the message's current one is not used
    calls.clear()
    stale = _serve(pipeline, "model-parsing-ahead", TEXTS[1])
    (other,) = pipeline.prepare([Message(data={TEXT: TEXTS[0]})])
    stale.set(SPACY_DOCS[TEXT], other.get(SPACY_DOCS[TEXT]))
    stale.set(TEXT, TEXTS[0])
    stale.features = other.features
    stale.set(TOKENS_NAMES[TEXT], other.get(TOKENS_NAMES[TEXT]))
    loaded.process([stale])
    assert calls == [TEXTS[1], TEXTS[0]]  # ahead for TEXTS[1], then recomputed for TEXTS[0]
    assert stale.get(ENTITIES) == message.get(ENTITIES)
