"""`fusiondesk telegram`: run the polling forwarder, or check the bot's connection.

Only argparse at import time (python-telegram-bot and httpx load when the command runs), so
`fusiondesk --help` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import yaml

from bot.settings import PROJECT_ROOT, Settings

#: Key of the Telegram block in `credentials.yml` (the same as `telegram_core.CREDENTIALS_KEY`,
#: repeated here so that this module does not import python-telegram-bot).
_CREDENTIALS_KEY = "bot.channels.telegram.TelegramInput"


def polling_requested(credentials: Path) -> bool:
    """Whether `credentials` enables the Telegram channel in polling mode, i.e. whether
    `fusiondesk run` should start `fusiondesk telegram --polling` beside the Rasa server.

    Reads only the block's `mode`; an invalid configuration is reported by the Rasa server.
    """
    try:
        content = yaml.safe_load(credentials.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    block = content.get(_CREDENTIALS_KEY) if isinstance(content, dict) else None
    return isinstance(block, dict) and block.get("mode") == "polling"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    telegram = subparsers.add_parser(
        "telegram",
        help="Telegram channel: forward updates by polling, or check the bot's connection",
        description="Telegram channel tools (see README, Telegram).",
    )
    action = telegram.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--polling",
        action="store_true",
        help="long-poll Telegram and forward updates to the running Rasa server (no public URL "
        "needed; needs `mode: polling` in credentials.yml)",
    )
    action.add_argument(
        "--check", action="store_true", help="show the bot's name and its webhook status"
    )
    telegram.add_argument(
        "--credentials",
        type=Path,
        default=PROJECT_ROOT / "credentials.yml",
        help="credentials file with the Telegram block (default: the project's)",
    )
    telegram.add_argument(
        "--rasa-url",
        default=None,
        help="Rasa server to forward to (default: FUSIONDESK_RASA_URL, else from "
        "FUSIONDESK_HOST and FUSIONDESK_RASA_PORT)",
    )
    telegram.set_defaults(func=_cmd_telegram)


def _cmd_telegram(args: argparse.Namespace) -> int:
    from bot.channels.telegram_core import TelegramConfig, TelegramConfigError
    from bot.channels.telegram_poller import TelegramPoller, check

    config = TelegramConfig.from_file(args.credentials)
    if args.check:
        print(asyncio.run(check(config)))
        return 0
    if config.mode != "polling":
        raise TelegramConfigError(
            f"{args.credentials} sets the Telegram channel to webhook mode; set `mode: polling` "
            "there (and restart the bot) to use --polling"
        )
    rasa_url = (
        args.rasa_url or os.environ.get("FUSIONDESK_RASA_URL") or Settings.from_env().rasa_url
    )
    asyncio.run(TelegramPoller(config, rasa_url).run())
    return 0
