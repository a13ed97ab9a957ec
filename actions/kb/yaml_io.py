"""Import and export files of articles: YAML (`articles:` list) and JSON Lines.

YAML: the format of `data/knowledge_base/*.yml`:

    articles:
      - id: card_arrival
        intent: card_arrival          # optional: the NLU intent this article answers
        title: When will my card arrive?
        tags: [cards]
        language: en
        questions: [Where is my card?]
        answer: >-
          ...

JSON Lines: one article object per line, or the FAQ format `{"id", "question", "answer"}`
(the question becomes the title). A file is read completely and validated before anything
is written; an error names the file and line and nothing is imported.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from actions.kb.article import Article, article_from_mapping
from actions.kb.errors import ArticleFormatError

#: Larger files are refused before parsing (a knowledge base file is text, not a dump).
MAX_FILE_BYTES = 64 * 1024 * 1024
SUFFIXES = (".yml", ".yaml", ".jsonl")


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ArticleFormatError(
                f"file is larger than {MAX_FILE_BYTES // 2**20} MiB", str(path)
            )
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ArticleFormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", str(path)) from e
    except OSError as e:
        raise ArticleFormatError(f"cannot read file: {e.strerror or e}", str(path)) from e


def parse_yaml(text: str, source: str = "") -> list[Article]:
    """Articles of a YAML document with an `articles:` list.

    Raises:
        ArticleFormatError: invalid YAML or an invalid article (with its line).
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ArticleFormatError(
            f"not valid YAML: {e.problem or e}", source, mark.line + 1 if mark else None
        ) from e
    except yaml.YAMLError as e:
        raise ArticleFormatError(f"not valid YAML: {e}", source) from e
    finally:
        loader.dispose()
    if data is None:
        return []
    if not isinstance(data, dict) or "articles" not in data:
        raise ArticleFormatError("expected a mapping with an `articles:` list", source, 1)
    unknown = sorted(str(key) for key in data if key != "articles")
    if unknown:
        raise ArticleFormatError(f"unknown top-level key(s): {', '.join(unknown)}", source, 1)
    items = data["articles"] or []
    if not isinstance(items, list):
        raise ArticleFormatError(
            "`articles` must be a list", source, _line_of_key(root, "articles")
        )
    item_nodes = _sequence_items(root, "articles")
    articles = []
    for index, raw in enumerate(items):
        line = item_nodes[index].start_mark.line + 1 if index < len(item_nodes) else None
        articles.append(article_from_mapping(raw, source, line))
    _check_unique(articles, source, [n.start_mark.line + 1 for n in item_nodes])
    return articles


def _line_of_key(root: Any, key: str) -> int | None:
    for key_node, value_node in getattr(root, "value", []):
        if getattr(key_node, "value", None) == key:
            return int(value_node.start_mark.line) + 1
    return None


def _sequence_items(root: Any, key: str) -> list[Any]:
    for key_node, value_node in getattr(root, "value", []):
        if getattr(key_node, "value", None) == key and isinstance(value_node, yaml.SequenceNode):
            return list(value_node.value)
    return []


def _check_unique(articles: list[Article], source: str, lines: list[int]) -> None:
    first: dict[str, int] = {}
    for index, article in enumerate(articles):
        line = lines[index] if index < len(lines) else None
        if article.id in first:
            raise ArticleFormatError(
                f"duplicate article id {article.id!r} (first at article {first[article.id] + 1})",
                source,
                line,
            )
        first[article.id] = index


def parse_jsonl(text: str, source: str = "") -> list[Article]:
    """Articles of a JSON Lines file (article objects or FAQ `{"id","question","answer"}`)."""
    articles: list[Article] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise ArticleFormatError(f"not valid JSON: {e.msg}", source, number) from e
        if isinstance(raw, dict) and "question" in raw and "title" not in raw:
            raw = dict(raw)
            raw["title"] = raw.pop("question")
        articles.append(article_from_mapping(raw, source, number))
        lines.append(number)
    _check_unique(articles, source, lines)
    return articles


def load_path(path: str | Path) -> list[Article]:
    """Articles of a `.yml`/`.yaml`/`.jsonl` file, or of every such file in a folder.

    Raises:
        ArticleFormatError: the path does not exist, holds no such file, or any article is
            invalid (ids must be unique across all files).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise ArticleFormatError(f"no {', '.join(SUFFIXES)} files in this folder", str(path))
    elif path.is_file():
        files = [path]
    else:
        raise ArticleFormatError("no such file or folder", str(path))
    articles: list[Article] = []
    origin: dict[str, str] = {}
    for file in files:
        if file.suffix not in SUFFIXES:
            raise ArticleFormatError(f"unsupported file type; use {', '.join(SUFFIXES)}", str(file))
        text = _read(file)
        parsed = (
            parse_jsonl(text, str(file)) if file.suffix == ".jsonl" else parse_yaml(text, str(file))
        )
        for article in parsed:
            if article.id in origin:
                raise ArticleFormatError(
                    f"article id {article.id!r} is also defined in {origin[article.id]}", str(file)
                )
            origin[article.id] = str(file)
        articles.extend(parsed)
    return articles


class _BlockDumper(yaml.SafeDumper):
    """Writes long answers as folded blocks, like the hand-written seed files."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if len(value) > 80 and "\n" not in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=">")
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_BlockDumper.add_representer(str, _represent_str)


def dump_yaml(articles: Iterable[Article]) -> str:
    """YAML text that `parse_yaml` reads back to the same articles."""
    body = {"articles": [article.to_dict() for article in articles]}
    return yaml.dump(
        body, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )
