"""Human handoff: tickets that move a conversation between the bot and a person.

Pure cores (`states`, `masking`, `hours`, `triggers`, `config`) import neither Rasa nor a
database; `models`, `db` and `repository` persist tickets through SQLAlchemy; `relay` copies the
customer's messages from Rasa's tracker store into tickets; `service` delivers agents' replies
through Rasa's HTTP API. The operator console (`bot.console`) is the HTTP layer on top.
"""
