"""`fusiondesk operator add|list|remove`: manage the people who sign in to the console."""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from datetime import datetime

from bot.handoff.db import get_engine
from bot.handoff.errors import InvalidPasswordError
from bot.handoff.repository import HandoffRepository
from bot.settings import Settings

MIN_PASSWORD_CHARS = 10
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    operator = subparsers.add_parser("operator", help="manage operator accounts of the console")
    commands = operator.add_subparsers(dest="operator_command", metavar="ACTION")
    commands.required = True
    add = commands.add_parser("add", help="create an operator (asks for the password)")
    add.add_argument("name", help="sign-in name: letters, digits, . _ @ -")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (for scripts)",
    )
    add.set_defaults(func=_cmd_add)
    listing = commands.add_parser("list", help="list operators")
    listing.set_defaults(func=_cmd_list)
    remove = commands.add_parser("remove", help="disable an operator and end their sessions")
    remove.add_argument("name")
    remove.set_defaults(func=_cmd_remove)


def _repository() -> HandoffRepository:
    return HandoffRepository(get_engine(Settings.from_env().db_url))


def check_password(password: str) -> str:
    """Return the password if it is acceptable, else raise `InvalidPasswordError`."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidPasswordError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    if password.strip() != password:
        raise InvalidPasswordError("the password must not start or end with spaces")
    return password


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return check_password(sys.stdin.readline().rstrip("\r\n"))
    first = getpass.getpass("Password: ")
    check_password(first)
    if getpass.getpass("Repeat password: ") != first:
        raise InvalidPasswordError("the two passwords differ; nothing was changed")
    return first


def _cmd_add(args: argparse.Namespace) -> int:
    from argon2 import PasswordHasher

    if not _NAME_RE.match(args.name):
        raise InvalidPasswordError(
            f"{args.name!r} is not a valid name: use up to 64 letters, digits, '.', '_', '@' or '-'"
        )
    password_hash = PasswordHasher().hash(_read_password(args.password_stdin))
    operator = _repository().add_operator(args.name, password_hash)
    print(f"operator {operator.name!r} created; they can sign in at /console/")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    operators = _repository().list_operators()
    if not operators:
        print("no operators yet: create one with `fusiondesk operator add NAME`")
        return 0
    print(f"{'name':<24} {'active':<7} {'created':<17} last sign-in")
    for operator in operators:
        created = datetime.fromtimestamp(operator.created_at).strftime("%Y-%m-%d %H:%M")
        last = (
            datetime.fromtimestamp(operator.last_login_at).strftime("%Y-%m-%d %H:%M")
            if operator.last_login_at
            else "never"
        )
        print(f"{operator.name:<24} {'yes' if operator.active else 'no':<7} {created:<17} {last}")
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    _repository().deactivate_operator(args.name)
    print(f"operator {args.name!r} disabled; their open tickets went back to the queue")
    return 0
