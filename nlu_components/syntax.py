"""Syntax features from a spaCy dependency parse (pure: no Rasa imports).

`syntax_cues(doc)` gives the sentence-level symbolic cues of one parsed message: the root
predicate and its objects and prepositional complements, negation, modality, question form,
subject person, tense, lexicalised dependency triples, dependency paths to the root and POS
patterns. They form the syntax group of the fused classifier's symbolic view, and its
explanations name them.
"""

from __future__ import annotations

from spacy.tokens import Doc, Token

OBJECT_DEPS = frozenset({"dobj", "attr", "oprd", "dative", "nsubjpass"})
WH_TAGS = frozenset({"WDT", "WP", "WP$", "WRB"})
NEGATION_LEMMAS = frozenset({"not", "never", "no", "n't", "nothing", "nobody", "none"})
_FIRST_PERSON = frozenset({"i", "we", "me", "us", "my", "our"})
_SECOND_PERSON = frozenset({"you", "your"})


def content_tokens(doc: Doc) -> list[Token]:
    """Tokens that carry text (Rasa's `SpacyTokenizer` drops whitespace tokens the same way)."""
    return [t for t in doc if t.text.strip()]


def _lemma(token: Token) -> str:
    return (token.lemma_ or token.text).lower()


def _is_negated(token: Token) -> bool:
    return any(c.dep_ == "neg" or _lemma(c) in NEGATION_LEMMAS for c in token.children)


def _roots(doc: Doc) -> list[Token]:
    return [t for t in doc if t.dep_ == "ROOT" and t.text.strip()]


def syntax_cues(doc: Doc) -> list[str]:
    """Sentence-level symbolic cues of a parsed message (deduplicated, in a stable order)."""
    cues: list[str] = []
    tokens = content_tokens(doc)
    if not tokens:
        return ["empty"]
    for root in _roots(doc):
        cues += [f"root={_lemma(root)}", f"root_pos={root.pos_}"]
        tense = root.morph.get("Tense", [])
        if tense:
            cues.append(f"tense={tense[0]}")
        if _is_negated(root):
            cues += ["negated_root", f"neg={_lemma(root)}"]
        for child in root.children:
            if child.dep_ in OBJECT_DEPS:
                cues += [f"obj={_lemma(child)}", f"pred_obj={_lemma(root)}>{_lemma(child)}"]
            elif child.dep_ == "prep":
                cues.append(f"prep={_lemma(child)}")
                cues += [
                    f"prep_obj={_lemma(child)}>{_lemma(grand)}"
                    for grand in child.children
                    if grand.dep_ == "pobj"
                ]
            elif child.dep_ in {"nsubj", "nsubjpass"}:
                cues.append(f"subj_person={_person(child)}")
            elif child.dep_ == "xcomp":
                cues.append(f"xcomp={_lemma(root)}>{_lemma(child)}")
    for token in tokens:
        lemma = _lemma(token)
        if token.dep_ == "neg" or lemma in NEGATION_LEMMAS:
            cues.append("negation")
        if token.tag_ == "MD":
            cues.append(f"modal={lemma}")
        if token.tag_ in WH_TAGS:
            cues.append(f"wh={lemma}")
        if token.dep_ not in {"ROOT", "punct", "det"}:
            cues.append(f"dep={lemma}<{token.dep_}<{_lemma(token.head)}")
            cues.append(f"path={_path(token)}")
    first = tokens[0]
    if first.pos_ == "AUX" or first.tag_ == "MD":
        if any(t.dep_ in {"nsubj", "expl"} for t in tokens[1:4]):
            cues.append("question=aux_inversion")
    if first.tag_ in WH_TAGS:
        cues.append("question=wh")
    if tokens[-1].text == "?":
        cues.append("question=mark")
    pos = [t.pos_ for t in tokens]
    cues += [f"pos2={a}_{b}" for a, b in zip(pos, pos[1:])]
    cues.append("pos_start=" + "_".join(pos[:3]))
    return list(dict.fromkeys(cues))


def _person(token: Token) -> str:
    lemma = token.text.lower()
    if lemma in _FIRST_PERSON:
        return "1"
    if lemma in _SECOND_PERSON:
        return "2"
    return "3"


def _path(token: Token, max_len: int = 3) -> str:
    labels = [token.dep_]
    current = token.head
    while current.dep_ != "ROOT" and len(labels) < max_len and current.head.i != current.i:
        labels.append(current.dep_)
        current = current.head
    return ">".join(labels)


def has_static_vectors(doc: Doc) -> bool:
    """Whether the pipeline has real word vectors (en_core_web_sm has none)."""
    return bool(doc.vocab.vectors.shape[0])
