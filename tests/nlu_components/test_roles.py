"""Frame rules on hand-built parses (no spaCy model is loaded)."""

from __future__ import annotations

import pytest
import spacy
from spacy.tokens import Doc

from nlu_components.roles import (
    RoleMappingRule,
    extract_frames,
    find_values,
    map_frames,
    token_annotations,
)

#: English vocabulary (lexical attributes such as `lower_`), no trained pipeline.
VOCAB = spacy.blank("en").vocab


def parse(
    tokens: list[tuple[str, int, str, str, str]],
    ents: list[str] | None = None,
    spaces: list[bool] | None = None,
) -> Doc:
    """Doc from (word, head index, dep, pos, lemma) rows."""
    words = [t[0] for t in tokens]
    return Doc(
        VOCAB,
        words=words,
        spaces=spaces,
        heads=[t[1] for t in tokens],
        deps=[t[2] for t in tokens],
        pos=[t[3] for t in tokens],
        lemmas=[t[4] for t in tokens],
        ents=ents,
    )


def roles(frame) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(a.role, a.text) for a in frame.arguments]


def only(frames, predicate):  # type: ignore[no-untyped-def]
    matching = [f for f in frames if f.predicate == predicate]
    assert len(matching) == 1, frames
    return matching[0]


def test_active_transfer_has_theme_recipient_and_time() -> None:
    doc = parse(
        [
            ("Send", 0, "ROOT", "VERB", "send"),
            ("50", 2, "nummod", "NUM", "50"),
            ("euros", 0, "dobj", "NOUN", "euro"),
            ("to", 0, "prep", "ADP", "to"),
            ("Anna", 3, "pobj", "PROPN", "Anna"),
            ("tomorrow", 0, "npadvmod", "NOUN", "tomorrow"),
        ],
        ents=["O", "O", "O", "O", "B-PERSON", "B-DATE"],
    )
    frame = only(extract_frames(doc), "send")
    assert frame.voice == "active" and not frame.negated and not frame.question
    assert roles(frame) == [("theme", "50 euros"), ("recipient", "Anna"), ("time", "tomorrow")]
    assert frame.with_role("recipient")[0].marker == "to"


def test_passive_voice_subject_is_theme_and_by_phrase_is_agent() -> None:
    doc = parse(
        [
            ("50", 1, "nummod", "NUM", "50"),
            ("euros", 3, "nsubjpass", "NOUN", "euro"),
            ("were", 3, "auxpass", "AUX", "be"),
            ("sent", 3, "ROOT", "VERB", "send"),
            ("to", 3, "prep", "ADP", "to"),
            ("Anna", 4, "pobj", "PROPN", "Anna"),
            ("by", 3, "agent", "ADP", "by"),
            ("Ben", 6, "pobj", "PROPN", "Ben"),
            ("yesterday", 3, "npadvmod", "NOUN", "yesterday"),
        ]
    )
    frame = only(extract_frames(doc), "send")
    assert frame.voice == "passive"
    assert roles(frame) == [
        ("theme", "50 euros"),
        ("recipient", "Anna"),
        ("agent", "Ben"),
        ("time", "yesterday"),
    ]


def test_coordinated_recipients_each_get_the_role() -> None:
    doc = parse(
        [
            ("send", 0, "ROOT", "VERB", "send"),
            ("20", 2, "nummod", "NUM", "20"),
            ("euros", 0, "dobj", "NOUN", "euro"),
            ("to", 0, "prep", "ADP", "to"),
            ("Anna", 3, "pobj", "PROPN", "Anna"),
            ("and", 4, "cc", "CCONJ", "and"),
            ("Ben", 4, "conj", "PROPN", "Ben"),
        ]
    )
    frame = only(extract_frames(doc), "send")
    assert [a.text for a in frame.with_role("recipient")] == ["Anna", "Ben"]
    # the conjunct is not swallowed into the first recipient's span
    assert frame.with_role("recipient")[0].end_char == doc[4].idx + 4


def test_coordinated_verbs_share_their_object() -> None:
    doc = parse(
        [
            ("block", 0, "ROOT", "VERB", "block"),
            ("and", 0, "cc", "CCONJ", "and"),
            ("freeze", 0, "conj", "VERB", "freeze"),
            ("my", 5, "poss", "PRON", "my"),
            ("virtual", 5, "amod", "ADJ", "virtual"),
            ("card", 2, "dobj", "NOUN", "card"),
        ]
    )
    frames = extract_frames(doc)
    assert roles(only(frames, "freeze")) == [("theme", "my virtual card")]
    assert roles(only(frames, "block")) == [("theme", "my virtual card")]


def test_negation_marks_the_frame_and_adds_a_negation_argument() -> None:
    doc = parse(
        [
            ("do", 2, "aux", "AUX", "do"),
            ("n't", 2, "neg", "PART", "not"),
            ("send", 2, "ROOT", "VERB", "send"),
            ("the", 4, "det", "DET", "the"),
            ("money", 2, "dobj", "NOUN", "money"),
            ("to", 2, "dative", "ADP", "to"),
            ("Emma", 5, "pobj", "PROPN", "Emma"),
        ],
        spaces=[False, True, True, True, True, True, False],
    )
    frame = only(extract_frames(doc), "send")
    assert frame.negated
    assert roles(frame) == [("negation", "n't"), ("theme", "the money"), ("recipient", "Emma")]


def test_question_with_subject_auxiliary_inversion() -> None:
    doc = parse(
        [
            ("can", 2, "aux", "AUX", "can"),
            ("I", 2, "nsubj", "PRON", "I"),
            ("send", 2, "ROOT", "VERB", "send"),
            ("money", 2, "dobj", "NOUN", "money"),
            ("to", 2, "prep", "ADP", "to"),
            ("Anna", 4, "pobj", "PROPN", "Anna"),
        ]
    )
    frame = only(extract_frames(doc), "send")
    assert frame.question
    assert roles(frame) == [("agent", "I"), ("theme", "money"), ("recipient", "Anna")]
    statement = parse(
        [
            ("I", 2, "nsubj", "PRON", "I"),
            ("can", 2, "aux", "AUX", "can"),
            ("send", 2, "ROOT", "VERB", "send"),
            ("money", 2, "dobj", "NOUN", "money"),
        ]
    )
    assert not only(extract_frames(statement), "send").question


def test_nominal_predicate_takes_of_and_to_arguments() -> None:
    doc = parse(
        [
            ("I", 1, "nsubj", "PRON", "I"),
            ("want", 1, "ROOT", "VERB", "want"),
            ("a", 3, "det", "DET", "a"),
            ("transfer", 1, "dobj", "NOUN", "transfer"),
            ("of", 3, "prep", "ADP", "of"),
            ("50", 6, "nummod", "NUM", "50"),
            ("euros", 4, "pobj", "NOUN", "euro"),
            ("to", 3, "prep", "ADP", "to"),
            ("Anna", 7, "pobj", "PROPN", "Anna"),
        ]
    )
    frame = only(extract_frames(doc), "transfer")
    assert frame.kind == "nominal"
    assert roles(frame) == [("theme", "50 euros"), ("recipient", "Anna")]


def test_elliptical_correction_negates_only_the_rejected_name() -> None:
    # "no, to Emma, not Anna" as the small English model parses it (neg under Emma)
    doc = parse(
        [
            ("no", 2, "intj", "INTJ", "no"),
            (",", 2, "punct", "PUNCT", ","),
            ("to", 2, "ROOT", "ADP", "to"),
            ("Emma", 2, "pobj", "PROPN", "Emma"),
            (",", 3, "punct", "PUNCT", ","),
            ("not", 3, "neg", "PART", "not"),
            ("Anna", 3, "appos", "PROPN", "Anna"),
        ],
        spaces=[False, True, True, False, True, True, False],
    )
    (frame,) = extract_frames(doc)
    assert frame.kind == "elliptical"
    recipients = {a.text: a.negated for a in frame.with_role("recipient")}
    assert recipients == {"Emma": False, "Anna": True}


def test_broken_command_parse_falls_back_to_word_order() -> None:
    # "Transfer Ben 100 GBP" parsed as one noun phrase
    doc = parse(
        [
            ("Transfer", 3, "compound", "PROPN", "Transfer"),
            ("Ben", 3, "nmod", "PROPN", "Ben"),
            ("100", 3, "nummod", "NUM", "100"),
            ("GBP", 3, "ROOT", "PROPN", "GBP"),
        ]
    )
    frame = only(extract_frames(doc), "transfer")
    assert roles(frame) == [("recipient", "Ben"), ("theme", "100 GBP")]


def test_frames_need_a_parse() -> None:
    doc = Doc(VOCAB, words=["send", "money"])
    with pytest.raises(ValueError, match="dependency parse"):
        extract_frames(doc)


def test_values_amounts_currencies_cards_and_dates() -> None:
    doc = parse(
        [
            ("send", 0, "ROOT", "VERB", "send"),
            ("€", 2, "nmod", "SYM", "€"),
            ("1,000.50", 0, "dobj", "NUM", "1,000.50"),
            ("with", 0, "prep", "ADP", "with"),
            ("my", 5, "poss", "PRON", "my"),
            ("card", 3, "pobj", "NOUN", "card"),
            ("ending", 5, "acl", "VERB", "end"),
            ("in", 6, "prep", "ADP", "in"),
            ("4321", 7, "pobj", "NUM", "4321"),
            ("tomorrow", 0, "npadvmod", "NOUN", "tomorrow"),
        ],
        ents=["O", "O", "O", "O", "O", "O", "O", "O", "B-DATE", "B-DATE"],
        spaces=[True, False, True, True, True, True, True, True, True, False],
    )
    found = [(v.kind, v.text, v.normalized) for v in find_values(doc)]
    assert ("currency", "€", "EUR") in found
    assert ("amount", "1,000.50", "1000.5") in found
    assert ("card", "card ending in 4321", None) in found
    assert ("date", "tomorrow", None) in found
    # the card's last digits are not a date even though the NER said so
    assert not any(kind == "date" and "4321" in text for kind, text, _ in found)


def test_plain_words_are_not_currencies_without_a_number() -> None:
    doc = parse(
        [
            ("I", 1, "nsubj", "PRON", "I"),
            ("try", 1, "ROOT", "VERB", "try"),
            ("it", 1, "dobj", "PRON", "it"),
        ]
    )
    assert find_values(doc) == []


def test_token_annotations_mark_roles_predicates_and_values() -> None:
    doc = parse(
        [
            ("send", 0, "ROOT", "VERB", "send"),
            ("50", 2, "nummod", "NUM", "50"),
            ("euros", 0, "dobj", "NOUN", "euro"),
            ("to", 0, "prep", "ADP", "to"),
            ("Anna", 3, "pobj", "PROPN", "Anna"),
        ]
    )
    annotations = token_annotations(doc)
    assert annotations[0].is_predicate and annotations[0].predicate == "send"
    assert [(a.role, a.role_iob) for a in annotations[1:3]] == [("theme", "B"), ("theme", "I")]
    assert annotations[4].role == "recipient" and annotations[4].predicate == "send"
    assert annotations[1].value_kind == "amount" and annotations[2].value_kind == "currency"
    assert annotations[3].role == ""


def test_map_frames_gives_recipient_role_and_marks_rejected_names() -> None:
    doc = parse(
        [
            ("no", 2, "intj", "INTJ", "no"),
            (",", 2, "punct", "PUNCT", ","),
            ("to", 2, "ROOT", "ADP", "to"),
            ("Emma", 2, "pobj", "PROPN", "Emma"),
            (",", 3, "punct", "PUNCT", ","),
            ("not", 3, "neg", "PART", "not"),
            ("Anna", 3, "appos", "PROPN", "Anna"),
        ],
        ents=["O", "O", "O", "B-PERSON", "O", "O", "B-PERSON"],
        spaces=[False, True, True, False, True, True, False],
    )
    rules = [
        RoleMappingRule.from_dict(
            {"frame_role": "recipient", "value": "person", "entity": "person", "role": "recipient"}
        )
    ]
    mapped = [(m.text, m.entity, m.role, m.negated) for m in map_frames(doc, rules)]
    assert mapped == [("Emma", "person", "recipient", False), ("Anna", "person", "recipient", True)]


def test_map_frames_without_value_uses_the_argument_span() -> None:
    doc = parse(
        [
            ("block", 0, "ROOT", "VERB", "block"),
            ("the", 2, "det", "DET", "the"),
            ("account", 0, "dobj", "NOUN", "account"),
        ]
    )
    rules = [
        RoleMappingRule.from_dict(
            {"frame_role": "theme", "entity": "thing", "predicates": ["block"]}
        )
    ]
    assert [(m.text, m.entity) for m in map_frames(doc, rules)] == [("account", "thing")]
    other = [
        RoleMappingRule.from_dict({"frame_role": "theme", "entity": "x", "predicates": ["send"]})
    ]
    assert map_frames(doc, other) == []


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"value": "amount"}, "entity"),
        ({"entity": "x", "frame_role": "goal"}, "frame_role"),
        ({"entity": "x", "value": "money"}, "value"),
        ({"entity": "x", "colour": "red"}, "unknown"),
        ({"entity": "x", "predicates": "send"}, "predicates"),
    ],
)
def test_mapping_rules_are_validated(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RoleMappingRule.from_dict(bad)
