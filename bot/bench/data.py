"""Read, validate and relabel utterance data in the shared JSONL format (no Rasa here).

One object per line: `{"text": ..., "intent": ..., "entities": [{"start", "end", "entity",
"value"}]}` with code-point offsets and `end` exclusive. Labels are mapped to names that are
safe inside Rasa (letters, digits, `_`) so that an intent such as `reverted_card_payment?` or
`faq/fees` (a `/` would make Rasa treat it as a retrieval intent) trains and parses the same
way; the same `LabelMap` maps predictions back to the original names.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from bot.bench.errors import BenchDataError

#: Characters Rasa handles in intent and entity names without special meaning.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Span:
    """A gold entity: character offsets (end exclusive), type and surface value."""

    start: int
    end: int
    entity: str
    value: str


@dataclass(frozen=True)
class Example:
    """One utterance with its intent and entity spans."""

    text: str
    intent: str
    entities: tuple[Span, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "intent": self.intent,
            "entities": [
                {"start": s.start, "end": s.end, "entity": s.entity, "value": s.value}
                for s in self.entities
            ],
        }


def _fail(path: Path, line_no: int, problem: str) -> BenchDataError:
    return BenchDataError(
        f"{path}:{line_no}: {problem}. Each line must be a JSON object "
        '{"text": str, "intent": str, "entities": [{"start", "end", "entity", "value"}]}'
    )


def _parse_span(path: Path, line_no: int, text: str, raw: object) -> Span:
    if not isinstance(raw, dict):
        raise _fail(path, line_no, f"an entity is {type(raw).__name__}, not an object")
    start, end, entity = raw.get("start"), raw.get("end"), raw.get("entity")
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool):
        raise _fail(path, line_no, f"entity {raw!r} needs integer 'start' and 'end'")
    if not 0 <= start < end <= len(text):
        raise _fail(
            path, line_no, f"entity span {start}..{end} is outside the text (length {len(text)})"
        )
    if not isinstance(entity, str) or not entity.strip():
        raise _fail(path, line_no, f"entity {raw!r} needs a non-empty 'entity' type")
    value = raw.get("value", text[start:end])
    if value != text[start:end]:
        raise _fail(
            path,
            line_no,
            f"entity value {value!r} differs from text[{start}:{end}] = {text[start:end]!r}",
        )
    return Span(start, end, entity, text[start:end])


def read_examples(path: Path) -> list[Example]:
    """Read and validate a JSONL utterance file.

    Blank lines are skipped; a missing `entities` key means no entities.

    Raises:
        BenchDataError: the file is missing, empty, or a line is not a valid utterance (the
            message names the file and line).
    """
    try:
        raw_text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise BenchDataError(f"data file {path} does not exist") from e
    except UnicodeDecodeError as e:
        raise BenchDataError(f"data file {path} is not UTF-8 text: {e}") from e
    except OSError as e:
        raise BenchDataError(f"cannot read data file {path}: {e}") from e
    examples: list[Example] = []
    for line_no, line in enumerate(raw_text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise _fail(path, line_no, f"not valid JSON ({e.msg})") from e
        if not isinstance(obj, dict):
            raise _fail(path, line_no, f"a {type(obj).__name__}, not an object")
        text, intent = obj.get("text"), obj.get("intent")
        if not isinstance(text, str) or not text.strip():
            raise _fail(path, line_no, "'text' must be a non-empty string")
        if not isinstance(intent, str) or not intent.strip():
            raise _fail(path, line_no, "'intent' must be a non-empty string")
        raw_entities = obj.get("entities", [])
        if not isinstance(raw_entities, list):
            raise _fail(path, line_no, "'entities' must be a list")
        spans = sorted(
            (_parse_span(path, line_no, text, e) for e in raw_entities),
            key=lambda s: (s.start, s.end),
        )
        for left, right in zip(spans, spans[1:], strict=False):
            if right.start < left.end:
                raise _fail(
                    path,
                    line_no,
                    f"entities {left.value!r} and {right.value!r} overlap; Rasa needs "
                    "non-overlapping spans",
                )
        examples.append(Example(text=text, intent=intent, entities=tuple(spans)))
    if not examples:
        raise BenchDataError(f"data file {path} has no utterances")
    return examples


def limit_per_intent(examples: Sequence[Example], limit: int | None) -> list[Example]:
    """Keep the first `limit` examples of each intent, in file order (`None`: keep all)."""
    if limit is None:
        return list(examples)
    if limit < 1:
        raise BenchDataError(f"--limit-per-intent must be at least 1, not {limit}")
    seen: dict[str, int] = {}
    kept = []
    for example in examples:
        if seen.get(example.intent, 0) < limit:
            seen[example.intent] = seen.get(example.intent, 0) + 1
            kept.append(example)
    return kept


def _safe_names(names: Iterable[str]) -> dict[str, str]:
    """Map each name to a Rasa-safe one; names that are already safe stay as they are."""
    unique = sorted(set(names))
    mapping = {name: name for name in unique if _SAFE_NAME.fullmatch(name)}
    taken = set(mapping.values())
    for name in unique:
        if name in mapping:
            continue
        base = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "label"
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        mapping[name] = candidate
        taken.add(candidate)
    return mapping


@dataclass(frozen=True)
class LabelMap:
    """Original ↔ Rasa-safe intent and entity names, built from train and test together."""

    intents: dict[str, str] = field(default_factory=dict)
    entities: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, *datasets: Sequence[Example]) -> LabelMap:
        all_examples = [e for data in datasets for e in data]
        return cls(
            intents=_safe_names(e.intent for e in all_examples),
            entities=_safe_names(s.entity for e in all_examples for s in e.entities),
        )

    def to_rasa(self, example: Example) -> Example:
        """The example with Rasa-safe intent and entity names."""
        return Example(
            text=example.text,
            intent=self.intents[example.intent],
            entities=tuple(
                Span(s.start, s.end, self.entities[s.entity], s.value) for s in example.entities
            ),
        )

    def intent_from_rasa(self, name: str) -> str:
        """Original intent name of a predicted one (unknown names, e.g. `nlu_fallback`, pass)."""
        return self._intents_back.get(name, name)

    def entity_from_rasa(self, name: str) -> str:
        """Original entity type of a predicted one (types the data never had pass through)."""
        return self._entities_back.get(name, name)

    @cached_property
    def _intents_back(self) -> dict[str, str]:
        return {safe: original for original, safe in self.intents.items()}

    @cached_property
    def _entities_back(self) -> dict[str, str]:
        return {safe: original for original, safe in self.entities.items()}


def write_examples(path: Path, examples: Iterable[Example]) -> None:
    """Write examples as JSONL (the format `read_examples` reads)."""
    with path.open("w", encoding="utf-8") as f:
        for example in examples:
            f.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")


def examples_digest(examples: Iterable[Example]) -> str:
    """SHA-256 of the examples' canonical JSON (what a trained model actually depends on)."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example.to_json(), sort_keys=True).encode("utf-8") + b"\n")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
