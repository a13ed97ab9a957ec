"""The knowledge base: articles in the bot's database, found by hybrid retrieval.

Modules: `article` (the record and its validation), `yaml_io` (import/export files), `models`,
`db` and `migrations` (SQLAlchemy tables and their alembic history), `repository` (queries),
`text`, `bm25`, `dense`, `ranking` and `encoding` (retrieval, pure), `decision` (answer /
choices / nothing), `service` (`KnowledgeBase`, what the actions and the CLI use), `cli`
(`fusiondesk kb ...`).
"""
