"""`fusiondesk kb import PATH | export [PATH] | list | search "question" | delete ID...`.

Works on the bot's database (`FUSIONDESK_DB_URL`) while the bot runs: the action server picks
up the change on its next question. Importing validates the whole file first and imports
nothing if any article is malformed (the error names file and line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

from actions.kb.errors import ArticleFormatError
from actions.kb.errors import KnowledgeBaseError as _KnowledgeBaseError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    kb = subparsers.add_parser(
        "kb", help="manage the knowledge base (import, export, list, search, delete)"
    )
    kb_sub = kb.add_subparsers(dest="kb_command", metavar="ACTION")
    kb_sub.required = True

    imp = kb_sub.add_parser(
        "import", help="add or update articles from a .yml/.jsonl file or folder"
    )
    imp.add_argument("path", type=Path)
    imp.add_argument(
        "--replace", action="store_true", help="also delete articles that are not in PATH"
    )
    imp.set_defaults(func=_cmd_import)

    exp = kb_sub.add_parser("export", help="write every article as YAML (stdout if no PATH)")
    exp.add_argument("path", type=Path, nargs="?")
    exp.set_defaults(func=_cmd_export)

    lst = kb_sub.add_parser("list", help="list the articles (id, intent, title)")
    lst.add_argument("--json", action="store_true", help="one JSON object per line")
    lst.set_defaults(func=_cmd_list)

    search = kb_sub.add_parser("search", help="show the best articles for a question")
    search.add_argument("question")
    search.add_argument("-k", type=int, default=3, help="how many articles (default 3)")
    search.add_argument("--mode", choices=("hybrid", "dense", "bm25"), default="hybrid")
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.set_defaults(func=_cmd_search)

    delete = kb_sub.add_parser("delete", help="delete articles by id")
    delete.add_argument("ids", nargs="+")
    delete.set_defaults(func=_cmd_delete)


def _kb():  # type: ignore[no-untyped-def]
    from actions.kb.service import get_knowledge_base

    return get_knowledge_base()


def _fail(error: Exception) -> NoReturn:
    """Knowledge-base errors become the CLI's error (exit status 2, message on stderr)."""
    from bot.errors import FusionDeskError

    raise FusionDeskError(str(error)) from error


def _cmd_import(args: argparse.Namespace) -> int:
    from actions.kb.yaml_io import load_path

    try:
        articles = load_path(args.path)  # validate everything before touching the database
        summary = _kb().import_articles(articles, replace_all=args.replace)
    except ArticleFormatError as e:
        return _fail(ArticleFormatError(f"{e} (nothing was imported)"))
    except _KnowledgeBaseError as e:
        return _fail(e)
    print(f"imported {args.path}: {summary}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from actions.kb.yaml_io import dump_yaml

    try:
        text = dump_yaml(_kb().articles())
    except _KnowledgeBaseError as e:
        return _fail(e)
    if args.path is None:
        sys.stdout.write(text)
    else:
        args.path.write_text(text, encoding="utf-8")
        print(f"exported {text.count(chr(10) + '- id: ')} articles to {args.path}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    try:
        articles = _kb().articles()
    except _KnowledgeBaseError as e:
        return _fail(e)
    for article in articles:
        if args.json:
            print(json.dumps({
                "id": article.id, "intent": article.intent, "title": article.title,
                "questions": len(article.questions), "language": article.language,
                "updated_at": article.updated_at.isoformat() if article.updated_at else None,
            }, ensure_ascii=False))  # fmt: skip
        else:
            print(f"{article.id:<45} {article.intent or '-':<40} {article.title}")
    if not args.json:
        print(f"{len(articles)} articles", file=sys.stderr)
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    if args.k < 1:
        return _fail(ValueError("-k must be at least 1"))
    try:
        kb = _kb()
        hits = kb.search(args.question, k=args.k, mode=args.mode)
    except _KnowledgeBaseError as e:
        return _fail(e)
    if args.json:
        print(json.dumps([{
            "id": h.article.id, "title": h.article.title, "score": round(h.score, 4),
            "confidence": round(h.confidence, 4), "dense": round(h.dense, 4),
            "bm25": round(h.bm25, 4),
        } for h in hits], ensure_ascii=False))  # fmt: skip
        return 0
    if not hits:
        print("no articles match")
        return 0
    for rank, hit in enumerate(hits, start=1):
        print(
            f"{rank}. {hit.article.title}  [{hit.article.id}]  confidence {hit.confidence:.2f}  score {hit.score:.3f}"
        )
    from actions.kb.decision import choose_reply

    reply = choose_reply(hits, kb.config)
    print(
        f"the bot would: {'answer with 1.' if reply.kind == 'answer' else 'offer choices' if reply.kind == 'choose' else 'ask to rephrase'}"
    )
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    try:
        removed = _kb().delete(args.ids)
    except _KnowledgeBaseError as e:
        return _fail(e)
    print(f"deleted {removed} article(s)")
    return 0
