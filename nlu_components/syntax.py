"""Syntax features from a spaCy dependency parse (pure: no Rasa imports).

Two views of one parsed message:

* `syntax_cues(doc)` — sentence-level symbolic cues: the root predicate and its objects and
  prepositional complements, negation, modality, question form, subject person, tense,
  lexicalised dependency triples, dependency paths to the root and POS patterns. The fused
  classifier embeds them and its explanations name them.
* `token_syntax_matrix(doc)` — one row per non-space token: dependency label, universal POS and
  structural flags (root, child of root, negated, wh-word, depth). The classifier's attention
  uses it to weight tokens ("predicate and objects over filler").
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from spacy.tokens import Doc, Token

#: Dependency labels of spaCy's English parser (ClearNLP style); others share one slot.
DEP_LABELS: tuple[str, ...] = (
    "ROOT", "acl", "acomp", "advcl", "advmod", "agent", "amod", "appos", "attr", "aux",
    "auxpass", "case", "cc", "ccomp", "compound", "conj", "csubj", "csubjpass", "dative",
    "dep", "det", "dobj", "expl", "intj", "mark", "meta", "neg", "nmod", "npadvmod",
    "nsubj", "nsubjpass", "nummod", "oprd", "parataxis", "pcomp", "pobj", "poss",
    "preconj", "predet", "prep", "prt", "punct", "quantmod", "relcl", "xcomp",
)  # fmt: skip
#: Universal POS tags.
POS_TAGS: tuple[str, ...] = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
    "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
_FLAGS: tuple[str, ...] = (
    "is_root",
    "root_child",
    "negated",
    "wh",
    "modal",
    "object",
    "depth_2",
    "depth_3plus",
    "stop",
    "entity",
)
TOKEN_FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"dep={d}" for d in DEP_LABELS)
    + ("dep=other",)
    + tuple(f"pos={p}" for p in POS_TAGS)
    + ("pos=other",)
    + _FLAGS
)
TOKEN_FEATURE_DIM = len(TOKEN_FEATURE_NAMES)
_DEP_INDEX = {d: i for i, d in enumerate(DEP_LABELS)}
_POS_INDEX = {p: i for i, p in enumerate(POS_TAGS)}
_POS_OFFSET = len(DEP_LABELS) + 1
_FLAG_OFFSET = _POS_OFFSET + len(POS_TAGS) + 1
_FLAG_INDEX = {f: _FLAG_OFFSET + i for i, f in enumerate(_FLAGS)}

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


def _depth(token: Token) -> int:
    depth = 0
    while token.head.i != token.i and depth < 10:
        token = token.head
        depth += 1
    return depth


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


def token_syntax_matrix(doc: Doc, tokens: Iterable[Token] | None = None) -> np.ndarray:
    """(n_tokens, TOKEN_FEATURE_DIM) float32 one-hot rows for the non-space tokens."""
    tokens = list(tokens) if tokens is not None else content_tokens(doc)
    matrix = np.zeros((len(tokens), TOKEN_FEATURE_DIM), dtype=np.float32)
    for row, token in enumerate(tokens):
        matrix[row, _DEP_INDEX.get(token.dep_, len(DEP_LABELS))] = 1.0
        matrix[row, _POS_OFFSET + _POS_INDEX.get(token.pos_, len(POS_TAGS))] = 1.0
        depth = _depth(token)
        flags = {
            "is_root": token.dep_ == "ROOT",
            "root_child": depth == 1,
            "negated": _is_negated(token) or _is_negated(token.head),
            "wh": token.tag_ in WH_TAGS,
            "modal": token.tag_ == "MD",
            "object": token.dep_ in OBJECT_DEPS or token.dep_ == "pobj",
            "depth_2": depth == 2,
            "depth_3plus": depth >= 3,
            "stop": token.is_stop,
            "entity": bool(token.ent_type_),
        }
        for name, on in flags.items():
            if on:
                matrix[row, _FLAG_INDEX[name]] = 1.0
    return matrix


def has_static_vectors(doc: Doc) -> bool:
    """Whether the pipeline has real word vectors (en_core_web_sm has none)."""
    return bool(doc.vocab.vectors.shape[0])
