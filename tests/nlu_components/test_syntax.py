"""Syntax cues from hand-built parses (no model needed)."""

from __future__ import annotations

import pytest
from spacy.tokens import Doc
from spacy.vocab import Vocab

from nlu_components.syntax import (
    syntax_cues,
)


def make_doc(words, heads, deps, pos, lemmas=None, tags=None) -> Doc:
    return Doc(
        Vocab(),
        words=words,
        heads=heads,
        deps=deps,
        pos=pos,
        lemmas=lemmas or [w.lower() for w in words],
        tags=tags or [""] * len(words),
    )


@pytest.fixture()
def negated() -> Doc:
    # "I did not get my card"
    return make_doc(
        ["I", "did", "not", "get", "my", "card"],
        heads=[3, 3, 3, 3, 5, 3],
        deps=["nsubj", "aux", "neg", "ROOT", "poss", "dobj"],
        pos=["PRON", "AUX", "PART", "VERB", "PRON", "NOUN"],
        lemmas=["I", "do", "not", "get", "my", "card"],
    )


def test_root_object_negation_and_person(negated: Doc) -> None:
    cues = syntax_cues(negated)
    assert "root=get" in cues
    assert "obj=card" in cues and "pred_obj=get>card" in cues
    assert "negated_root" in cues and "negation" in cues
    assert "subj_person=1" in cues
    assert "dep=card<dobj<get" in cues


def test_question_by_aux_inversion_and_prepositional_complement() -> None:
    # "Can I send money to Anna ?"
    doc = make_doc(
        ["Can", "I", "send", "money", "to", "Anna", "?"],
        heads=[2, 2, 2, 2, 2, 4, 2],
        deps=["aux", "nsubj", "ROOT", "dobj", "prep", "pobj", "punct"],
        pos=["AUX", "PRON", "VERB", "NOUN", "ADP", "PROPN", "PUNCT"],
        tags=["MD", "PRP", "VB", "NN", "IN", "NNP", "."],
    )
    cues = syntax_cues(doc)
    assert "question=aux_inversion" in cues
    assert "question=mark" in cues
    assert "modal=can" in cues
    assert "prep_obj=to>anna" in cues
    assert "negation" not in cues


def test_wh_question() -> None:
    # "Why was I charged ?"
    doc = make_doc(
        ["Why", "was", "I", "charged", "?"],
        heads=[3, 3, 3, 3, 3],
        deps=["advmod", "auxpass", "nsubjpass", "ROOT", "punct"],
        pos=["SCONJ", "AUX", "PRON", "VERB", "PUNCT"],
        lemmas=["why", "be", "I", "charge", "?"],
        tags=["WRB", "VBD", "PRP", "VBN", "."],
    )
    cues = syntax_cues(doc)
    assert "question=wh" in cues and "wh=why" in cues
    assert "root=charge" in cues


def test_empty_doc_gives_a_cue() -> None:
    doc = Doc(Vocab(), words=[])
    assert syntax_cues(doc) == ["empty"]
