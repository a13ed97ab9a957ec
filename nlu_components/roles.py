"""Predicate–argument frames from a spaCy dependency parse (PropBank-style roles).

Pure module (no Rasa imports). `extract_frames(doc)` finds predicates — verbs and nominal
predicates such as "a *transfer* of 50 euros to Anna" — and labels their arguments with the
roles `agent`, `theme`, `recipient`, `beneficiary`, `source`, `instrument`, `time`, `location`,
`manner` and `negation`. It handles passive voice ("50 euros were sent to Anna by Ben"),
coordination ("to Anna and Ben", "block and freeze my card"), negation ("don't send"),
questions ("can I send ...?") and elliptical answers ("no, to Emma, not Anna").

`find_values(doc)` finds typed values with spaCy's entities and small rules: amounts,
currencies, dates and card references (plus people and organisations from the NER).

Both work on any parsed `Doc`; the tests build Docs by hand
(`Doc(vocab, words=..., heads=..., deps=..., pos=...)`) instead of loading a model.
`token_annotations(doc)` flattens frames and values into per-token labels for the learned
tagger (`nlu_components.role_tagger`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from spacy.tokens import Doc, Span, Token

from nlu_components.currencies import AMBIGUOUS_WORDS, CURRENCIES

#: Every role an argument can carry.
ROLES: tuple[str, ...] = (
    "agent",
    "theme",
    "recipient",
    "beneficiary",
    "source",
    "instrument",
    "time",
    "location",
    "manner",
    "negation",
)

#: Kinds of typed values found by `find_values`.
VALUE_KINDS: tuple[str, ...] = ("amount", "currency", "date", "card", "person", "org", "place")

#: Nouns that head a nominal predicate ("a transfer of 50 euros to Anna").
NOMINAL_PREDICATES: frozenset[str] = frozenset(
    {
        "transfer", "payment", "top", "topup", "top-up", "refund", "withdrawal", "deposit",
        "purchase", "charge", "dispute", "transaction", "exchange", "remittance", "booking",
        "reservation", "delivery", "order", "cancellation", "block", "freeze", "replacement",
        "request", "reminder", "alarm", "meeting", "appointment", "trip", "flight", "ride",
    }
)  # fmt: skip

#: Verbs whose parse the small English model often gets wrong at the start of a command
#: ("Transfer Ben 100 GBP", "top up 30"): treated as predicates whatever their tag.
COMMAND_VERBS: frozenset[str] = frozenset(
    {
        "send", "transfer", "pay", "wire", "move", "top", "add", "load", "block", "freeze",
        "unblock", "unfreeze", "cancel", "stop", "dispute", "refund", "book", "play", "show", "find", "set", "remind", "give", "lock", "put", "rate", "tell",
    }
)  # fmt: skip

#: Preposition → role of its object (refined by the object's type in `_prep_role`).
PREP_ROLES: dict[str, str] = {
    "to": "recipient",
    "into": "recipient",
    "onto": "recipient",
    "toward": "recipient",
    "towards": "recipient",
    "for": "beneficiary",
    "from": "source",
    "out": "source",
    "off": "source",
    "with": "instrument",
    "using": "instrument",
    "via": "instrument",
    "through": "instrument",
    "by": "instrument",
    "of": "theme",
    "about": "theme",
    "on": "time",
    "at": "location",
    "in": "location",
    "near": "location",
    "around": "location",
    "inside": "location",
    "within": "time",
    "during": "time",
    "before": "time",
    "after": "time",
    "until": "time",
    "till": "time",
    "since": "time",
}

#: Adverbs and nouns that mark time on their own ("send it tomorrow").
TIME_WORDS: frozenset[str] = frozenset(
    {
        "today", "tomorrow", "yesterday", "tonight", "now", "later", "soon", "asap",
        "immediately", "currently", "monday", "tuesday", "wednesday", "thursday", "friday",
        "saturday", "sunday", "weekend", "morning", "evening", "afternoon", "night",
        "week", "month", "year", "daily", "weekly", "monthly", "annually", "noon",
    }
)  # fmt: skip

#: Words that make a noun phrase a card reference.
CARD_WORDS: frozenset[str] = frozenset(
    {"card", "cards", "visa", "mastercard", "amex", "maestro", "debit", "credit", "virtual"}
)

_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)([.,]\d+)?$")
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy "
    "eighty ninety hundred thousand million half k".split()
)
_FOUR_DIGITS = re.compile(r"^\d{4}$")
_SUBJECTS = frozenset({"nsubj", "csubj", "expl"})
_PASSIVE_SUBJECTS = frozenset({"nsubjpass", "csubjpass"})
_OBJECTS = frozenset({"dobj", "obj", "attr", "oprd"})
#: Children that never belong to the span of the argument they attach to.
_SPAN_EXCLUDED = frozenset(
    {"conj", "cc", "punct", "appos", "relcl", "advcl", "parataxis", "prep", "neg", "preconj"}
)
_WH_WORDS = frozenset({"what", "which", "who", "whom", "whose", "when", "where", "why", "how"})


@dataclass(frozen=True)
class Argument:
    """One argument of a frame: a contiguous token span with a role."""

    role: str
    #: Index of the argument's head token in the Doc.
    head: int
    #: Token span [start, end) in the Doc.
    start: int
    end: int
    #: Character span [start_char, end_char) in the text.
    start_char: int
    end_char: int
    text: str
    #: The preposition that introduced it ("to" in "to Anna"), if any.
    marker: str | None = None
    #: True when the argument itself is negated ("not Anna").
    negated: bool = False


@dataclass(frozen=True)
class Frame:
    """A predicate with its arguments."""

    #: Lemma of the predicate, or "" for an elliptical fragment ("to Emma, not Anna").
    predicate: str
    #: Index of the predicate token (the fragment's root for elliptical frames).
    predicate_index: int
    #: "verbal", "nominal" or "elliptical".
    kind: str
    voice: str = "active"
    negated: bool = False
    question: bool = False
    arguments: tuple[Argument, ...] = field(default_factory=tuple)

    def with_role(self, role: str) -> list[Argument]:
        """The arguments that carry `role`, in text order."""
        return [a for a in self.arguments if a.role == role]


@dataclass(frozen=True)
class Value:
    """A typed value found by `find_values`: amount, currency, date, card, person, org, place."""

    kind: str
    start: int
    end: int
    start_char: int
    end_char: int
    text: str
    #: Canonical form where one is known (ISO currency code, number as "1234.5").
    normalized: str | None = None


@dataclass(frozen=True)
class TokenAnnotation:
    """Per-token view of frames and values, the input of the tagger's role features."""

    #: Role of the innermost argument covering the token, or "".
    role: str
    #: "B" / "I" inside that argument, "O" outside.
    role_iob: str
    #: Lemma of the predicate the covering argument belongs to ("" when none).
    predicate: str
    #: True for a predicate token.
    is_predicate: bool
    #: True when the covering frame (or the argument) is negated.
    negated: bool
    #: True when the covering frame is a question.
    question: bool
    #: Kind of the value covering the token, or "".
    value_kind: str
    value_iob: str


# ---------------------------------------------------------------------------------------------
# frames


def extract_frames(doc: Doc) -> list[Frame]:
    """Predicate–argument frames of every sentence in a parsed `doc`.

    Raises:
        ValueError: `doc` has no dependency parse.
    """
    if len(doc) and not doc.has_annotation("DEP"):
        raise ValueError("extract_frames needs a Doc with a dependency parse (spaCy parser)")
    values = find_values(doc)
    kinds = _kinds_by_token(doc, values)
    question = _is_question(doc)
    frames: list[Frame] = []
    predicates = [t for t in doc if _is_verbal_predicate(t)]
    for token in predicates:
        frames.append(_verbal_frame(token, kinds, question))
    for token in doc:
        if _is_nominal_predicate(token) and token.i not in {f.predicate_index for f in frames}:
            frames.append(_nominal_frame(token, kinds, question))
    # sentences without any predicate ("no, to Emma, not Anna", "50 euros to Anna")
    for sent in doc.sents:
        if not any(sent.start <= f.predicate_index < sent.end for f in frames):
            frame = _elliptical_frame(sent, kinds, question)
            if frame.arguments:
                frames.append(frame)
    frames = _share_coordinated_arguments(frames, doc, kinds)
    return sorted(frames, key=lambda f: f.predicate_index)


def _is_verbal_predicate(token: Token) -> bool:
    if token.pos_ == "VERB" and token.dep_ not in {"amod", "compound"}:
        return not _is_light_acl(token)
    if (
        token.pos_ == "AUX"
        and token.dep_ == "ROOT"
        and not any(c.pos_ in {"VERB"} for c in token.children)
    ):
        return True  # copula root: "is my card blocked" has its predicate elsewhere
    # the small model tags sentence-initial commands as nouns ("Transfer Ben 100 GBP")
    return (
        token.i == token.sent.start
        and token.lower_ in COMMAND_VERBS
        and token.pos_
        in {
            "NOUN",
            "PROPN",
            "ADJ",
        }
    )


def _is_light_acl(token: Token) -> bool:
    # "card ending in 4321": a participle describing its noun, part of the noun's span
    return token.dep_ == "acl" and token.lemma_.lower() in {"end", "start", "begin", "finish"}


def _is_nominal_predicate(token: Token) -> bool:
    if token.pos_ not in {"NOUN", "PROPN"} or _is_verbal_predicate(token):
        return False
    lemma = token.lemma_.lower()
    has_args = any(c.dep_ == "prep" and c.lower_ in PREP_ROLES for c in token.children)
    if lemma in NOMINAL_PREDICATES:
        return has_args or any(c.dep_ in {"nummod", "compound", "poss"} for c in token.children)
    return has_args and lemma.endswith(("tion", "ment", "sal", "ance", "ence"))


def _is_question(doc: Doc) -> bool:
    words = [t for t in doc if not t.is_punct]
    if not words:
        return False
    if doc[-1].text.endswith("?"):
        return True
    first = words[0]
    if first.lower_ in _WH_WORDS:
        return True
    # subject–auxiliary inversion: "can I send", "do you support"
    if first.pos_ == "AUX" and first.dep_ in {"aux", "ROOT", "auxpass"}:
        head = first.head if first.dep_ != "ROOT" else first
        subjects = [c for c in head.children if c.dep_ in _SUBJECTS | _PASSIVE_SUBJECTS]
        return any(s.i > first.i for s in subjects)
    return False


def _verbal_frame(token: Token, kinds: dict[int, str], question: bool) -> Frame:
    passive = any(c.dep_ in {"auxpass", "nsubjpass", "csubjpass"} for c in token.children)
    negated = _negated(token)
    arguments: list[Argument] = []
    lemma = _predicate_lemma(token)
    for child in token.children:
        arguments.extend(_arguments_of_child(token, child, passive, kinds))
    # control verbs: "I want to send ..." → the agent of send is I
    if not any(a.role == "agent" for a in arguments) and token.dep_ in {"xcomp", "ccomp"}:
        for sibling in token.head.children:
            if sibling.dep_ in _SUBJECTS:
                arguments.extend(_expand("agent", sibling, kinds))
    for child in token.children:
        if child.dep_ == "neg":
            arguments.append(_argument("negation", child, child.i, child.i + 1))
    if (
        not arguments
        and token.pos_ != "VERB"
        and token.i == token.sent.start
        and token.lower_ in COMMAND_VERBS
    ):
        arguments = _flat_arguments(token, kinds)
    # particle verbs ("top up") keep the particle out of the arguments
    if any(c.dep_ == "prt" and c.lower_ == "up" for c in token.children) and lemma == "top":
        lemma = "top up"
    elif lemma == "top" and any(c.lower_ == "up" and c.i == token.i + 1 for c in token.children):
        lemma = "top up"
    return Frame(
        predicate=lemma,
        predicate_index=token.i,
        kind="verbal",
        voice="passive" if passive else "active",
        negated=negated,
        question=question,
        arguments=tuple(_dedupe(arguments)),
    )


def _flat_arguments(predicate: Token, kinds: dict[int, str]) -> list[Argument]:
    """Roles from word order and value kinds when the parse of a command is broken.

    "Transfer Ben 100 GBP next friday" is parsed as a noun phrase by the small model; here a
    person right after the verb is the recipient, amounts are the theme, dates the time.
    """
    sent = predicate.sent
    arguments: list[Argument] = []
    i = predicate.i + 1
    while i < sent.end:
        kind = kinds.get(i, "")
        j = i + 1
        while j < sent.end and kinds.get(j, "") == kind and kind:
            j += 1
        previous = predicate.doc[i - 1].lower_
        if kind in {"amount", "currency"}:
            arguments.append(_argument("theme", predicate.doc[i], i, j))
        elif kind == "date":
            arguments.append(_argument("time", predicate.doc[i], i, j))
        elif kind == "person" and (i == predicate.i + 1 or previous in PREP_ROLES):
            role = PREP_ROLES.get(previous, "recipient") if i > predicate.i + 1 else "recipient"
            marker = previous if i > predicate.i + 1 else None
            arguments.append(_argument(role, predicate.doc[i], i, j, marker))
        elif kind == "card":
            arguments.append(_argument("theme", predicate.doc[i], i, j))
        i = j if kind else i + 1
    # merge amount + currency into one theme ("100 GBP")
    merged: list[Argument] = []
    for arg in arguments:
        last = merged[-1] if merged else None
        if last is not None and last.role == arg.role == "theme" and last.end == arg.start:
            merged[-1] = _argument("theme", predicate.doc[last.head], last.start, arg.end)
        else:
            merged.append(arg)
    return merged


def _predicate_lemma(token: Token) -> str:
    lemma = token.lemma_.lower() or token.lower_
    return lemma


def _negated(token: Token) -> bool:
    if any(c.dep_ == "neg" or c.lower_ in {"never", "not", "n't"} for c in token.children):
        return True
    # "don't want to send": negation on the governing verb covers its xcomp
    if token.dep_ in {"xcomp", "conj"} and token.head is not token:
        return any(c.dep_ == "neg" for c in token.head.children)
    return False


def _arguments_of_child(
    predicate: Token, child: Token, passive: bool, kinds: dict[int, str]
) -> list[Argument]:
    dep = child.dep_
    if dep in _SUBJECTS:
        return _expand("agent", child, kinds)
    if dep in _PASSIVE_SUBJECTS:
        return _expand("theme", child, kinds)
    if dep == "agent":  # passive "by Ben"
        return [a for obj in _prep_objects(child) for a in _expand("agent", obj, kinds, "by")]
    if dep in _OBJECTS:
        if predicate.pos_ == "AUX":
            return _expand("theme", child, kinds)
        return _expand(_object_role(child, kinds), child, kinds)
    if dep == "dative":
        if child.pos_ == "ADP":  # "to" labelled dative
            return [
                a
                for obj in _prep_objects(child)
                for a in _expand(_prep_role(child, obj, kinds, passive), obj, kinds, child.lower_)
            ]
        return _expand("recipient", child, kinds)
    if (
        dep in {"prt", "advmod"}
        and child.lower_ in {"up", "off", "in"}
        and not list(_prep_objects(child))
    ):
        # "top up 30": the amount hangs off the particle
        return [
            a
            for c in child.children
            if c.dep_ in {"npadvmod", "nummod", "dobj", "obj"}
            for a in _expand("theme", c, kinds)
        ]
    if dep in {"prep", "prt"} and child.pos_ in {"ADP", "ADV", "PART"}:
        objects = _prep_objects(child)
        return [
            a
            for obj in objects
            for a in _expand(_prep_role(child, obj, kinds, passive), obj, kinds, child.lower_)
        ]
    if dep in {"npadvmod", "tmod", "obl"}:
        role = "time" if _is_time(child, kinds) else _object_role(child, kinds)
        return _expand(role, child, kinds)
    if dep == "advmod":
        if child.lower_ in TIME_WORDS or kinds.get(child.i) == "date":
            return _expand("time", child, kinds)
        if child.lower_.endswith("ly") or child.lower_ in {"fast", "quickly", "asap", "together"}:
            return _expand("manner", child, kinds)
    if dep == "nummod" or (dep == "compound" and kinds.get(child.i) in {"amount", "currency"}):
        return _expand("theme", child, kinds)
    return []


def _object_role(token: Token, kinds: dict[int, str]) -> str:
    if _is_time(token, kinds) and kinds.get(token.i) == "date":
        return "time"
    return "theme"


def _prep_objects(prep: Token) -> list[Token]:
    objects = [c for c in prep.children if c.dep_ in {"pobj", "pcomp", "dobj", "obj"}]
    # "top up 30": a particle without an object is no argument; "from 4 to 5": nested preps
    return objects


def _prep_role(prep: Token, obj: Token, kinds: dict[int, str], passive: bool) -> str:
    word = prep.lower_
    role = PREP_ROLES.get(word, "location" if prep.pos_ == "ADP" else "manner")
    kind = kinds.get(obj.i, "")
    time_like = kind == "date" or _is_time(obj, kinds)
    if word in {"in", "on", "at", "by", "for", "within", "before", "after"} and time_like:
        return "time"
    if word == "on" and not time_like:
        return "location"
    if kind in {"amount", "currency"} and word not in {"to", "into", "from"}:
        return "theme"  # "top up by 20 pounds", "a charge for 30 euros"
    if word == "by" and passive:
        return "agent"
    if word == "at" and kind in {"org", "place", "person"}:
        return "location"
    return role


def _is_time(token: Token, kinds: dict[int, str]) -> bool:
    if kinds.get(token.i) == "date" or token.ent_type_ in {"DATE", "TIME"}:
        return True
    return token.lower_ in TIME_WORDS


def _nominal_frame(token: Token, kinds: dict[int, str], question: bool) -> Frame:
    arguments: list[Argument] = []
    for child in token.children:
        dep = child.dep_
        if dep == "prep":
            for obj in _prep_objects(child):
                role = "theme" if child.lower_ == "of" else _prep_role(child, obj, kinds, False)
                arguments.extend(_expand(role, obj, kinds, child.lower_))
        elif dep == "poss":
            arguments.extend(_expand("agent", child, kinds))
        elif dep in {"nummod", "compound", "amod"} and kinds.get(child.i) in {
            "amount",
            "currency",
        }:
            arguments.extend(_expand("theme", child, kinds))
        elif dep in {"compound", "npadvmod"} and kinds.get(child.i) == "date":
            arguments.extend(_expand("time", child, kinds))
    lemma = _predicate_lemma(token)
    if lemma in {"top", "up"}:
        lemma = "top up"
    return Frame(
        predicate=lemma,
        predicate_index=token.i,
        kind="nominal",
        negated=any(c.dep_ == "neg" for c in token.children),
        question=question,
        arguments=tuple(_dedupe(arguments)),
    )


def _elliptical_frame(sent: Span, kinds: dict[int, str], question: bool) -> Frame:
    """Arguments of a fragment: a bare prepositional phrase or noun phrase answer."""
    root = sent.root
    arguments: list[Argument] = []
    if root.pos_ == "ADP":
        for obj in _prep_objects(root):
            arguments.extend(_expand(_prep_role(root, obj, kinds, False), obj, kinds, root.lower_))
    for token in sent:
        if token.dep_ == "prep" and token.head.pos_ not in {"VERB", "AUX"}:
            if token.head.i in {a.head for a in arguments} or token.head == root:
                for obj in _prep_objects(token):
                    role = _prep_role(token, obj, kinds, False)
                    arguments.extend(_expand(role, obj, kinds, token.lower_))
    if not arguments and root.pos_ in {"NOUN", "PROPN", "NUM", "PRON"}:
        kind = kinds.get(root.i, "")
        role = "time" if kind == "date" else "recipient" if kind == "person" else "theme"
        arguments.extend(_expand(role, root, kinds))
    # "not Anna" / "Ben, not Anna" appositions and conjuncts of the fragment's objects
    extra: list[Argument] = []
    for arg in arguments:
        for child in sent.doc[arg.head].children:
            if child.dep_ == "appos":
                extra.extend(_expand(arg.role, child, kinds, arg.marker))
    arguments.extend(extra)
    return Frame(
        predicate="",
        predicate_index=root.i,
        kind="elliptical",
        negated=any(a.negated for a in arguments),
        question=question,
        arguments=tuple(_dedupe(arguments)),
    )


def _expand(
    role: str, head: Token, kinds: dict[int, str], marker: str | None = None
) -> list[Argument]:
    """The argument headed by `head` plus one argument per coordinated conjunct."""
    out: list[Argument] = []
    for conjunct in _conjuncts(head):
        start, end = _span_bounds(conjunct)
        negated = _argument_negated(conjunct)
        out.append(_argument(role, conjunct, start, end, marker, negated))
        # prepositional phrases inside a noun argument often belong to the predicate:
        # "send the money to Emma" parsed with "to Emma" under "money"
        if conjunct.pos_ in {"NOUN", "PROPN", "NUM", "PRON", "SYM"}:
            for child in conjunct.children:
                if child.dep_ == "prep" and child.lower_ in PREP_ROLES and child.lower_ != "of":
                    for obj in _prep_objects(child):
                        lifted = _prep_role(child, obj, kinds, False)
                        out.extend(_expand(lifted, obj, kinds, child.lower_))
                elif _lifted_clause(child):
                    for obj in child.children:
                        if obj.dep_ in _OBJECTS:
                            out.extend(_expand("instrument", obj, kinds, child.lower_))
    return out


def _conjuncts(head: Token) -> list[Token]:
    result = [head]
    stack = [c for c in head.children if c.dep_ == "conj"]
    while stack:
        token = stack.pop(0)
        if token.pos_ in {"VERB", "AUX"} and head.pos_ not in {"VERB", "AUX"}:
            continue
        result.append(token)
        stack.extend(c for c in token.children if c.dep_ == "conj")
    return result


def _argument_negated(token: Token) -> bool:
    # a negation before the word ("not Anna"); one after it negates a later apposition
    # ("Emma, not Anna" is often parsed with "not" under "Emma")
    if any(c.dep_ == "neg" and c.i < token.i for c in token.children):
        return True
    edge = token.left_edge.i
    before = [t.lower_ for t in token.doc[max(0, edge - 2) : edge]]
    if before and before[-1] in {"not", "n't", "never"}:
        return True
    return before in (["instead", "of"], ["rather", "than"])


def _span_bounds(head: Token) -> tuple[int, int]:
    indices = [head.i]
    stack = [head]
    while stack:
        token = stack.pop()
        if token is not head:
            indices.append(token.i)
        stack.extend(
            c
            for c in token.children
            if (c.dep_ not in _SPAN_EXCLUDED or _keeps_prep(token, c)) and not _lifted_clause(c)
        )
    return min(indices), max(indices) + 1


def _lifted_clause(child: Token) -> bool:
    # "20 pounds using Apple Pay": the participle is the predicate's instrument, not a modifier
    return child.dep_ == "acl" and child.lemma_.lower() in {"use", "via"}


def _keeps_prep(head: Token, child: Token) -> bool:
    # "the balance of my account", "card ending in 4321" stay whole
    return child.dep_ == "prep" and (child.lower_ == "of" or head.dep_ == "acl")


def _argument(
    role: str,
    head: Token,
    start: int,
    end: int,
    marker: str | None = None,
    negated: bool = False,
) -> Argument:
    doc = head.doc
    span = doc[start:end]
    return Argument(
        role=role,
        head=head.i,
        start=start,
        end=end,
        start_char=span.start_char,
        end_char=span.end_char,
        text=span.text,
        marker=marker,
        negated=negated,
    )


def _dedupe(arguments: Iterable[Argument]) -> list[Argument]:
    seen: dict[tuple[int, int], Argument] = {}
    for arg in arguments:
        key = (arg.start, arg.end)
        if key not in seen:
            seen[key] = arg
    return sorted(seen.values(), key=lambda a: (a.start, a.end))


def _share_coordinated_arguments(
    frames: list[Frame], doc: Doc, kinds: dict[int, str]
) -> list[Frame]:
    """Coordinated verbs share what only one of them has: "block and freeze my card"."""
    by_index = {f.predicate_index: f for f in frames}
    out = []
    for frame in frames:
        token = doc[frame.predicate_index]
        partners = [by_index[t.i] for t in _coordinated_verbs(token) if t.i in by_index]
        arguments = list(frame.arguments)
        for partner in partners:
            for role in ("agent", "theme"):
                if not frame.with_role(role):
                    arguments.extend(partner.with_role(role))
        out.append(
            Frame(
                predicate=frame.predicate,
                predicate_index=frame.predicate_index,
                kind=frame.kind,
                voice=frame.voice,
                negated=frame.negated or any(p.negated for p in partners if _shares_neg(p, token)),
                question=frame.question,
                arguments=tuple(_dedupe(arguments)),
            )
        )
    return out


def _shares_neg(partner: Frame, token: Token) -> bool:
    # "don't block or freeze my card": the negation sits on the first verb only
    return partner.predicate_index < token.i and token.dep_ == "conj"


def _coordinated_verbs(token: Token) -> list[Token]:
    if token.pos_ not in {"VERB", "AUX"} and token.lower_ not in COMMAND_VERBS:
        return []
    partners = [c for c in token.children if c.dep_ == "conj"]
    if token.dep_ == "conj":
        partners.append(token.head)
    return partners


# ---------------------------------------------------------------------------------------------
# typed values


def find_values(doc: Doc) -> list[Value]:
    """Amounts, currencies, dates, card references, people, organisations and places.

    Rules over spaCy's entities and the tokens; spans never overlap (longest first). On a doc
    the NER has not run on, people are runs of proper nouns, and there are no organisations
    or places.
    """
    found: list[Value] = []
    tokens = list(doc)
    used: set[int] = set()

    def add(kind: str, start: int, end: int, normalized: str | None = None) -> None:
        if start >= end or any(i in used for i in range(start, end)):
            return
        span = doc[start:end]
        found.append(Value(kind, start, end, span.start_char, span.end_char, span.text, normalized))
        used.update(range(start, end))

    # card references: "my visa card ending in 4321", "card ending 1234", "the virtual card"
    for token in tokens:
        if token.lower_ in {"card", "cards"} or token.lower_ in {"visa", "mastercard", "amex"}:
            start = token.i
            while start > 0 and (
                doc[start - 1].lower_ in CARD_WORDS
                or doc[start - 1].dep_ in {"compound", "amod"}
                and doc[start - 1].head.i in range(start, token.i + 1)
                and not _is_amount_token(doc[start - 1])
            ):
                start -= 1
            end = token.i + 1
            if end < len(doc) and doc[end].lower_ in {"card", "cards"}:
                end += 1
            end = _card_suffix_end(doc, end)
            add("card", start, end)
    # amounts and currencies
    for token in tokens:
        if token.i in used:
            continue
        code = CURRENCIES.get(token.lower_)
        if code is not None and (
            token.lower_ in {"€", "$", "£", "¥"}
            or token.text.isupper()
            or _next_to_amount(doc, token.i)
            or len(token.text) > 3
        ):
            if token.lower_ in AMBIGUOUS_WORDS and not _next_to_amount(doc, token.i):
                continue  # ordinary English words unless they follow a number
            add("currency", token.i, token.i + 1, code)
    for token in tokens:
        if token.i in used or not _is_amount_token(token):
            continue
        end = token.i + 1
        while end < len(doc) and end not in used and _is_amount_token(doc[end]):
            end += 1
        near_currency = _currency_near(doc, token.i, end)
        money_entity = token.ent_type_ == "MONEY"
        if near_currency or money_entity:
            add("amount", token.i, end, _normalize_number(doc[token.i : end].text))
    # dates and times from the NER, minus card digits ("ending in 4321") and bare amounts
    for ent in doc.ents:
        if ent.label_ in {"DATE", "TIME"} and not _card_digits(ent):
            add("date", ent.start, ent.end)
    for token in tokens:
        if token.lower_ in TIME_WORDS and token.i not in used and token.pos_ != "VERB":
            if token.lower_ in {"week", "month", "year", "morning", "evening", "night"}:
                continue  # only as part of an entity ("next week")
            add("date", token.i, token.i + 1)
    for ent in doc.ents:
        if ent.label_ == "PERSON":
            add("person", ent.start, ent.end)
        elif ent.label_ in {"ORG", "PRODUCT", "FAC", "WORK_OF_ART"}:
            add("org", ent.start, ent.end)
        elif ent.label_ in {"GPE", "LOC", "NORP"}:
            add("place", ent.start, ent.end)
    if not doc.has_annotation("ENT_IOB"):
        # no NER ran (the slot filler's default): a run of proper nouns is taken for a
        # person, as the tagger's per-token view does; organisations and places then come
        # from the learned tagger alone
        run: list[int] = []
        for i in range(len(doc) + 1):
            if i < len(doc) and doc[i].pos_ == "PROPN" and i not in used:
                run.append(i)
            elif run:
                add("person", run[0], run[-1] + 1)
                run = []
    return sorted(found, key=lambda v: v.start)


def _card_suffix_end(doc: Doc, end: int) -> int:
    # "ending in 4321", "ending with 4321", "ending 4321", "that ends in 4321"
    i = end
    if i < len(doc) and doc[i].lower_ in {"that", "which"}:
        i += 1
    if i < len(doc) and doc[i].lemma_.lower() in {"end", "ending", "ends"}:
        j = i + 1
        if j < len(doc) and doc[j].lower_ in {"in", "with", "on", "by"}:
            j += 1
        if j < len(doc) and doc[j].text.isdigit():
            return j + 1
    return end


def _card_digits(ent: Span) -> bool:
    if not all(_FOUR_DIGITS.match(t.text) for t in ent):
        return False
    before = [t.lower_ for t in ent.doc[max(0, ent.start - 3) : ent.start]]
    return any(w in {"ending", "ends", "end", "card", "digits"} for w in before)


def _is_amount_token(token: Token) -> bool:
    text = token.lower_
    return (
        bool(_NUMBER.match(text))
        or text in _NUMBER_WORDS
        or (token.like_num and not text.isalpha())
    )


def _next_to_amount(doc: Doc, i: int) -> bool:
    return (i > 0 and _is_amount_token(doc[i - 1])) or (
        i + 1 < len(doc) and _is_amount_token(doc[i + 1])
    )


def _currency_near(doc: Doc, start: int, end: int) -> bool:
    before = doc[start - 1].lower_ if start > 0 else ""
    after = doc[end].lower_ if end < len(doc) else ""
    return before in CURRENCIES or after in CURRENCIES


def _normalize_number(text: str) -> str | None:
    compact = text.replace(" ", "")
    if not _NUMBER.match(compact):
        return None
    if re.match(r"^\d{1,3}(,\d{3})+(\.\d+)?$", compact):
        compact = compact.replace(",", "")
    elif re.match(r"^\d+,\d{1,2}$", compact):  # decimal comma: "12,50"
        compact = compact.replace(",", ".")
    try:
        return f"{float(compact):g}"
    except ValueError:
        return None


def _kinds_by_token(doc: Doc, values: Sequence[Value]) -> dict[int, str]:
    kinds: dict[int, str] = {}
    for value in values:
        for i in range(value.start, value.end):
            kinds[i] = value.kind
    for token in doc:
        if token.i not in kinds and token.pos_ == "PROPN" and token.ent_type_ in {"", "PERSON"}:
            kinds[token.i] = "person"
    return kinds


# ---------------------------------------------------------------------------------------------
# per-token view for the tagger


def token_annotations(
    doc: Doc, frames: Sequence[Frame] | None = None, values: Sequence[Value] | None = None
) -> list[TokenAnnotation]:
    """Flatten frames and values into one `TokenAnnotation` per token of `doc`."""
    frames = extract_frames(doc) if frames is None else frames
    values = find_values(doc) if values is None else values
    n = len(doc)
    role = [""] * n
    role_iob = ["O"] * n
    width = [n + 1] * n
    predicate = [""] * n
    negated = [False] * n
    question = [False] * n
    is_predicate = [False] * n
    for frame in frames:
        if frame.kind != "elliptical":
            is_predicate[frame.predicate_index] = True
            predicate[frame.predicate_index] = frame.predicate
            question[frame.predicate_index] = frame.question
            negated[frame.predicate_index] = frame.negated
        for arg in frame.arguments:
            size = arg.end - arg.start
            for i in range(arg.start, arg.end):
                if size < width[i]:  # the innermost argument wins
                    width[i] = size
                    role[i] = arg.role
                    role_iob[i] = "B" if i == arg.start else "I"
                    predicate[i] = frame.predicate
                    negated[i] = frame.negated or arg.negated
                    question[i] = frame.question
    value_kind = [""] * n
    value_iob = ["O"] * n
    for value in values:
        for i in range(value.start, value.end):
            value_kind[i] = value.kind
            value_iob[i] = "B" if i == value.start else "I"
    return [
        TokenAnnotation(
            role=role[i],
            role_iob=role_iob[i],
            predicate=predicate[i],
            is_predicate=is_predicate[i],
            negated=negated[i],
            question=question[i],
            value_kind=value_kind[i],
            value_iob=value_iob[i],
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# role → entity mapping (fills slots in a new domain before it has many annotated examples)


@dataclass(frozen=True)
class RoleMappingRule:
    """Turns a frame argument (or a typed value inside one) into an entity with a role.

    A rule matches a value of kind `value` (any kind when None) that lies inside an argument
    with role `frame_role` (any role when None) of a predicate in `predicates` (any when
    empty). Without `value`, the whole argument (minus leading determiners) is the entity.
    """

    entity: str
    role: str | None = None
    frame_role: str | None = None
    value: str | None = None
    predicates: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RoleMappingRule:
        """Build a rule from config; raise ValueError naming the bad key."""
        allowed = {"entity", "role", "frame_role", "value", "predicates"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} in a role_mapping rule; known: {sorted(allowed)}"
            )
        entity = data.get("entity")
        if not isinstance(entity, str) or not entity:
            raise ValueError(f"a role_mapping rule needs an `entity` name: {data}")
        frame_role = data.get("frame_role")
        if frame_role is not None and frame_role not in ROLES:
            raise ValueError(f"frame_role {frame_role!r} is not one of {list(ROLES)}")
        value = data.get("value")
        if value is not None and value not in VALUE_KINDS:
            raise ValueError(f"value {value!r} is not one of {list(VALUE_KINDS)}")
        predicates = data.get("predicates") or ()
        if not isinstance(predicates, list | tuple) or not all(
            isinstance(p, str) for p in predicates
        ):
            raise ValueError(f"predicates must be a list of lemmas: {predicates!r}")
        role = data.get("role")
        return cls(
            entity=entity,
            role=str(role) if role else None,
            frame_role=str(frame_role) if frame_role else None,
            value=str(value) if value else None,
            predicates=tuple(str(p) for p in predicates),
        )

    def matches(self, argument: Argument | None, frame: Frame | None, kind: str | None) -> bool:
        if self.value is not None and kind != self.value:
            return False
        if self.frame_role is not None and (argument is None or argument.role != self.frame_role):
            return False
        if self.predicates and (frame is None or frame.predicate not in self.predicates):
            return False
        return self.value is not None or argument is not None


@dataclass(frozen=True)
class MappedEntity:
    """An entity produced from frames by a `RoleMappingRule`."""

    start_char: int
    end_char: int
    text: str
    entity: str
    role: str | None
    #: Role of the frame argument it came from ("" outside any argument).
    frame_role: str
    negated: bool


def covering_argument(
    frames: Sequence[Frame], start_char: int, end_char: int
) -> tuple[Argument | None, Frame | None]:
    """The innermost argument (and its frame) that contains the character span."""
    best: tuple[Argument | None, Frame | None] = (None, None)
    width = 10**9
    for frame in frames:
        for arg in frame.arguments:
            if arg.role == "negation":
                continue
            if arg.start_char <= start_char and end_char <= arg.end_char:
                if arg.end_char - arg.start_char < width:
                    width = arg.end_char - arg.start_char
                    best = (arg, frame)
    return best


def map_frames(
    doc: Doc,
    rules: Sequence[RoleMappingRule],
    frames: Sequence[Frame] | None = None,
    values: Sequence[Value] | None = None,
) -> list[MappedEntity]:
    """Entities from frames and typed values by the first matching rule; no overlaps."""
    frames = extract_frames(doc) if frames is None else frames
    values = find_values(doc) if values is None else values
    out: list[MappedEntity] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    for value in values:
        argument, frame = covering_argument(frames, value.start_char, value.end_char)
        for rule in rules:
            if rule.value is not None and rule.matches(argument, frame, value.kind):
                if free(value.start_char, value.end_char):
                    out.append(
                        MappedEntity(
                            value.start_char,
                            value.end_char,
                            value.text,
                            rule.entity,
                            rule.role,
                            argument.role if argument else "",
                            bool(argument and argument.negated),
                        )
                    )
                    taken.append((value.start_char, value.end_char))
                break
    for frame in frames:
        for arg in frame.arguments:
            for rule in rules:
                if rule.value is None and rule.matches(arg, frame, None):
                    start = arg.start
                    while start < arg.end - 1 and doc[start].dep_ in {"det", "poss", "predet"}:
                        start += 1
                    span = doc[start : arg.end]
                    if free(span.start_char, span.end_char):
                        out.append(
                            MappedEntity(
                                span.start_char,
                                span.end_char,
                                span.text,
                                rule.entity,
                                rule.role,
                                arg.role,
                                arg.negated,
                            )
                        )
                        taken.append((span.start_char, span.end_char))
                    break
    return sorted(out, key=lambda m: m.start_char)
