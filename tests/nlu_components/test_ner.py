"""spaCy's NER on a message's tokens alone, and putting its result on a parsed doc."""

from __future__ import annotations

from nlu_components.ner import entities_on_tokens, set_entities
from nlu_components.spacy_parser import DEFAULT_SPACY_MODEL, load_parsing_pipeline


def test_entities_found_on_the_tokens_go_onto_the_parsed_doc() -> None:
    nlp = load_parsing_pipeline(DEFAULT_SPACY_MODEL)
    text = "send 50 euros to Anna tomorrow from my Visa card"
    (result,) = entities_on_tokens(nlp, [text])
    count, spans = result
    assert count == len(nlp.make_doc(text)) and spans
    doc = nlp(text, disable=["ner"])
    assert not doc.ents and doc.has_annotation("DEP")
    assert set_entities(doc, result)
    assert [(e.start, e.end, e.label_) for e in doc.ents] == spans
    assert {t.ent_iob_ for t in doc} <= {"B", "I", "O"}  # every token decided, as after a NER
    assert "Anna" in {e.text for e in doc.ents}


def test_a_result_that_does_not_fit_is_refused_and_changes_nothing() -> None:
    nlp = load_parsing_pipeline(DEFAULT_SPACY_MODEL)
    doc = nlp("pay Anna", disable=["ner"])
    assert not set_entities(doc, (5, [(0, 1, "PERSON")]))  # another tokenization
    assert not set_entities(doc, (2, [(1, 3, "PERSON")]))  # past the end
    assert not set_entities(doc, (2, [(0, 2, "ORG"), (1, 2, "PERSON")]))  # overlapping
    assert not doc.ents and all(t.ent_iob_ == "" for t in doc)
    assert set_entities(doc, (2, []))  # no entities: every token outside
    assert all(t.ent_iob_ == "O" for t in doc)
