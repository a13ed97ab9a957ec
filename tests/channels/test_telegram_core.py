"""Pure logic of the Telegram channel: configuration, splitting, keyboards, classification."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from telegram import Update

from bot.channels.telegram_core import (
    CALLBACK_DATA_LIMIT,
    CREDENTIALS_KEY,
    TEXT_LIMIT,
    CallbackPayloads,
    TelegramConfig,
    TelegramConfigError,
    agent_label,
    classify_update,
    decorate,
    inline_keyboard,
    protect_secrets_in_logs,
    split_text,
    utf16_len,
)
from tests.channels.bot_api_stub import (
    CUSTOMER,
    SECRET,
    TOKEN,
    callback_update,
    edited_update,
    my_chat_member_update,
    photo_update,
    sticker_update,
    text_update,
    voice_update,
)

WEBHOOK = "https://bot.example.com/webhooks/telegram/webhook"

# -- configuration -----------------------------------------------------------------------------


def test_config_reads_the_environment_when_the_file_has_no_values() -> None:
    env = {"TELEGRAM_TOKEN": TOKEN, "TELEGRAM_SECRET": SECRET, "TELEGRAM_WEBHOOK_URL": WEBHOOK}
    config = TelegramConfig.from_credentials(None, env)
    assert (config.access_token, config.secret_token, config.webhook_url) == (
        TOKEN,
        SECRET,
        WEBHOOK,
    )
    assert config.mode == "webhook"
    assert config.base_url == "https://api.telegram.org/bot"


def test_values_in_the_file_win_over_the_environment() -> None:
    env = {"TELEGRAM_TOKEN": "1:env", "TELEGRAM_SECRET": "env", "TELEGRAM_WEBHOOK_URL": WEBHOOK}
    config = TelegramConfig.from_credentials(
        {"access_token": TOKEN, "secret_token": SECRET, "mode": "polling"}, env
    )
    assert (config.access_token, config.secret_token, config.mode) == (TOKEN, SECRET, "polling")


def test_repr_never_shows_the_token_or_secret() -> None:
    config = TelegramConfig.from_credentials(
        {"access_token": TOKEN, "secret_token": SECRET, "webhook_url": WEBHOOK}, {}
    )
    assert TOKEN not in repr(config) and SECRET not in repr(config)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"secret_token": SECRET, "webhook_url": WEBHOOK}, "TELEGRAM_TOKEN"),
        (
            {"access_token": "not a token", "secret_token": SECRET, "webhook_url": WEBHOOK},
            "@BotFather",
        ),
        ({"access_token": TOKEN, "webhook_url": WEBHOOK}, "TELEGRAM_SECRET"),
        ({"access_token": TOKEN, "mode": "polling"}, "TELEGRAM_SECRET"),
        ({"access_token": TOKEN, "secret_token": "has spaces!", "webhook_url": WEBHOOK}, "A-Z"),
        ({"access_token": TOKEN, "secret_token": SECRET}, "TELEGRAM_WEBHOOK_URL"),
        (
            {"access_token": TOKEN, "secret_token": SECRET, "webhook_url": "http://x.example/hook"},
            "https://",
        ),
        ({"access_token": TOKEN, "secret_token": SECRET, "mode": "push"}, "mode"),
        ({"access_token": TOKEN, "secret_token": SECRET, "mode": "polling", "tokn": 1}, "tokn"),
    ],
)
def test_invalid_settings_are_refused_with_what_to_do(block: dict, message: str) -> None:
    with pytest.raises(TelegramConfigError, match=message) as error:
        TelegramConfig.from_credentials(block, {})
    assert TOKEN not in str(error.value)


def test_a_local_bot_api_may_use_plain_http_webhooks() -> None:
    config = TelegramConfig.from_credentials(
        {
            "access_token": TOKEN,
            "secret_token": SECRET,
            "webhook_url": "http://127.0.0.1:5005/webhooks/telegram/webhook",
            "base_url": "http://127.0.0.1:8081/bot",
        },
        {},
    )
    assert config.custom_api
    assert config.base_file_url == "http://127.0.0.1:8081/file/bot"


def test_from_file_expands_variables_and_requires_the_block(tmp_path: Path) -> None:
    path = tmp_path / "credentials.yml"
    path.write_text(
        f"rest:\n{CREDENTIALS_KEY}:\n  access_token: ${{MY_TOKEN}}\n  mode: polling\n",
        encoding="utf-8",
    )
    config = TelegramConfig.from_file(path, {"MY_TOKEN": TOKEN, "TELEGRAM_SECRET": SECRET})
    assert config.access_token == TOKEN and config.mode == "polling"
    with pytest.raises(TelegramConfigError, match="MY_TOKEN"):
        TelegramConfig.from_file(path, {"TELEGRAM_SECRET": SECRET})
    path.write_text("rest:\n# bot.channels.telegram.TelegramInput:\n", encoding="utf-8")
    with pytest.raises(TelegramConfigError, match="uncomment"):
        TelegramConfig.from_file(path, {})


def test_the_projects_credentials_file_keeps_telegram_off_by_default() -> None:
    root = Path(__file__).resolve().parents[2]
    with pytest.raises(TelegramConfigError, match="uncomment"):
        TelegramConfig.from_file(root / "credentials.yml", {})


# -- text --------------------------------------------------------------------------------------


def test_short_text_is_one_message() -> None:
    assert split_text("  Hello there!  ") == ["Hello there!"]
    assert split_text("   ") == []


def test_long_text_splits_at_paragraphs_first() -> None:
    first, second = "a" * 3000, "b" * 3000
    assert split_text(f"{first}\n\n{second}") == [first, second]


def test_long_text_splits_at_sentences_then_words() -> None:
    sentence = "This sentence is about cards and payments. "
    text = sentence * 200  # ~8,600 characters, no line breaks
    chunks = split_text(text)
    assert len(chunks) == 3
    assert all(utf16_len(c) <= TEXT_LIMIT for c in chunks)
    assert all(c.endswith(".") for c in chunks)
    assert " ".join(chunks) == text.strip()

    words = "word " * 2000  # no sentence ends
    chunks = split_text(words)
    assert all(utf16_len(c) <= TEXT_LIMIT and c.endswith("word") for c in chunks)
    assert " ".join(chunks) == words.strip()


def test_a_word_longer_than_the_limit_is_cut_hard_without_losing_characters() -> None:
    text = "x" * 10_000
    chunks = split_text(text)
    assert [len(c) for c in chunks] == [4096, 4096, 1808]
    assert "".join(chunks) == text


def test_limit_counts_utf16_units_like_telegram() -> None:
    text = "😀" * 3000  # 6,000 UTF-16 units
    chunks = split_text(text)
    assert [utf16_len(c) for c in chunks] == [4096, 1904]
    assert "".join(chunks) == text


def test_agent_messages_are_marked_and_bot_messages_are_not() -> None:
    assert decorate("Hi", {"from_human": True, "agent_name": "Anna"}) == "👤 Anna (agent): Hi"
    assert decorate("Hi", {"from_human": True, "agent_name": "  "}) == "👤 Agent: Hi"
    assert decorate("Hi", {"from_human": "yes", "agent_name": "Anna"}) == "Hi"
    assert decorate("Hi", {"timestamp": 1.0}) == "Hi"
    assert agent_label({"from_human": False, "agent_name": "Anna"}) is None


# -- buttons -----------------------------------------------------------------------------------


def test_buttons_become_an_inline_keyboard_with_payloads() -> None:
    markup = inline_keyboard(
        [{"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}],
        CallbackPayloads(),
    )
    assert markup is not None
    assert markup.to_dict() == {
        "inline_keyboard": [
            [
                {"text": "Yes", "callback_data": "/affirm"},
                {"text": "No", "callback_data": "/deny"},
            ]
        ]
    }


def test_many_or_long_buttons_get_a_row_each_and_urls_stay_links() -> None:
    markup = inline_keyboard(
        [
            {"title": "Report a lost or stolen card", "payload": "/lost_or_stolen_card"},
            {"title": "Help centre", "url": "https://example.com/help"},
        ],
        CallbackPayloads(),
    )
    assert markup is not None
    rows = markup.to_dict()["inline_keyboard"]
    assert rows == [
        [{"text": "Report a lost or stolen card", "callback_data": "/lost_or_stolen_card"}],
        [{"text": "Help centre", "url": "https://example.com/help"}],
    ]
    assert inline_keyboard([{"title": ""}], CallbackPayloads()) is None


def test_long_payloads_travel_as_tokens_and_come_back() -> None:
    payloads = CallbackPayloads(capacity=2)
    long_payload = '/inform{"amount": "1500", "currency": "EUR", "recipient": "Ada Lovelace"}'
    data = payloads.encode(long_payload)
    assert len(data.encode()) <= CALLBACK_DATA_LIMIT and data != long_payload
    assert payloads.decode(data) == long_payload
    assert payloads.decode("/affirm") == "/affirm"
    payloads.encode(long_payload + "1")
    payloads.encode(long_payload + "2")  # evicts the oldest
    assert payloads.decode(data) is None


# -- updates -----------------------------------------------------------------------------------


def _classify(data: dict, username: str | None = "fusiondesk_test_bot"):
    return classify_update(Update.de_json(data, None), username)


def test_a_text_message_goes_to_rasa_from_its_chat() -> None:
    inbound = _classify(text_update("my card has not arrived", chat_id=42))
    assert (inbound.kind, inbound.chat_id, inbound.text) == ("text", 42, "my card has not arrived")
    assert inbound.metadata["telegram"]["user"]["first_name"] == CUSTOMER["first_name"]


@pytest.mark.parametrize(
    ("text", "meaning", "after"),
    [
        ("/start", "/greet", ()),
        ("/start ref-campaign", "/greet", ()),
        ("/restart", "/restart", ("/greet",)),
        ("/start@fusiondesk_test_bot", "/greet", ()),
        ("/help me", "help me", ()),
        ('/request_human{"x": 1}', 'request_human{"x": 1}', ()),
    ],
)
def test_commands(text: str, meaning: str, after: tuple) -> None:
    inbound = _classify(text_update(text))
    assert (inbound.kind, inbound.text, inbound.texts_after) == ("text", meaning, after)


def test_commands_for_another_bot_are_ignored() -> None:
    assert _classify(text_update("/start@other_bot")).kind == "ignore"


def test_a_button_press_carries_its_payload_and_query_id() -> None:
    inbound = _classify(callback_update("/affirm", chat_id=77))
    assert (inbound.kind, inbound.chat_id, inbound.text) == ("callback", 77, "/affirm")
    assert inbound.callback_query_id == "4382bfdwdsb323b2d9"


@pytest.mark.parametrize(
    ("update", "kind"),
    [
        (edited_update("hello again"), "edited"),
        (sticker_update(), "unsupported"),
        (voice_update(), "unsupported"),
        (photo_update(), "unsupported"),
        (my_chat_member_update(), "ignore"),
    ],
)
def test_what_is_not_text(update: dict, kind: str) -> None:
    inbound = _classify(update)
    assert inbound.kind == kind
    if kind != "ignore":
        assert inbound.chat_id == CUSTOMER["id"]


def test_a_photo_caption_is_read_as_text() -> None:
    inbound = _classify(photo_update(caption="is this my card?"))
    assert (inbound.kind, inbound.text) == ("text", "is this my card?")


# -- logging -----------------------------------------------------------------------------------


def test_registered_secrets_are_redacted_from_records_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protect_secrets_in_logs(TOKEN)
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("telegram.Bot")
    log.info("Set Bot API URL: %s", f"https://api.telegram.org/bot{TOKEN}")
    try:
        raise ValueError(f"The token `{TOKEN}` was rejected by the server.")
    except ValueError:
        logging.getLogger("bot.channels.telegram").exception("start-up failed")
    assert "https://api.telegram.org/bot***" in caplog.text
    assert "start-up failed" in caplog.text and "rejected by the server" in caplog.text
    assert TOKEN not in caplog.text
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


def test_the_cli_knows_the_credentials_key() -> None:
    from bot.channels import telegram_cli

    assert telegram_cli._CREDENTIALS_KEY == CREDENTIALS_KEY
