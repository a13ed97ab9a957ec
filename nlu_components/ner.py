"""spaCy's named-entity recogniser run on a message's tokens alone.

The deferred NER (`spacy_parser`) runs after the parse, in training, in the serving process or
in the encoder process (`encoder_process`, while this process parses). To give the same
entities wherever it runs, it always sees the same input: a fresh doc of the message's text
from the pipeline's tokenizer, without the parse. (Run after the parser, spaCy's NER sees the
parser's sentence boundaries too: on 4,223 dev messages of four data sets the two differed in
one.) The entities are then set on the parsed doc by token index — the same tokenizer on the
same text gives the same tokens.

Only spaCy is imported here, so the encoder process can use it without loading Rasa.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Per message: (number of tokens, [(first token, end token, label), ...]).
NerResult = tuple[int, list[tuple[int, int, str]]]
#: Docs per NER batch.
NER_BATCH = 50


def entities_on_tokens(nlp: Any, texts: Sequence[str]) -> list[NerResult]:
    """The NER of the spaCy pipeline `nlp` on each text's tokens (see the module docstring)."""
    ner = nlp.get_pipe("ner")
    docs = [nlp.make_doc(text) for text in texts]
    return [
        (len(doc), [(e.start, e.end, e.label_) for e in doc.ents])
        for doc in ner.pipe(docs, batch_size=NER_BATCH)
    ]


def set_entities(doc: Any, result: NerResult) -> bool:
    """Put `result` (from `entities_on_tokens` on `doc.text`) on `doc`; every other token is
    outside an entity, as after the NER. False (and `doc` unchanged) if it does not fit."""
    from spacy.tokens import Span

    count, entities = result
    if count != len(doc) or any(not 0 <= s < e <= count for s, e, _ in entities):
        return False
    try:
        doc.set_ents([Span(doc, s, e, label=label) for s, e, label in entities], default="outside")
    except ValueError:  # overlapping spans: not an NER result
        return False
    return True
