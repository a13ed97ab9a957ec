"""The web chat's message shapes: agent marks, tracker events → transcript, input checks."""

from __future__ import annotations

import pytest

from bot.webchat.transcript import (
    MAX_AGENT_NAME_CHARS,
    MAX_HISTORY_ENTRIES,
    bot_payloads,
    human_marker,
    is_valid_session_id,
    is_webchat_conversation,
    new_session_id,
    parse_metadata,
    text_parts,
    transcript,
    user_entry,
)


def test_new_session_ids_are_valid_and_distinct() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_valid_session_id(i) for i in ids)


@pytest.mark.parametrize(
    "value",
    ["", "123456789", "alice", "0123456789ABCDEF0123456789ABCDEF", "0" * 31, "0" * 33,
     "../" + "0" * 29, None, 42, ["0" * 32]],
)  # fmt: skip
def test_other_session_ids_are_refused(value: object) -> None:
    assert not is_valid_session_id(value)


def test_human_marker_only_for_from_human_true() -> None:
    assert human_marker({}) is None
    assert human_marker({"from_human": "true"}) is None  # only the JSON boolean counts
    assert human_marker({"from_human": True, "agent_name": "  Alice \n Smith "}) == {
        "from_human": True,
        "agent_name": "Alice Smith",
    }
    assert human_marker({"from_human": True})["agent_name"] == "Agent"
    assert human_marker({"from_human": True, "agent_name": 7})["agent_name"] == "Agent"
    long = human_marker({"from_human": True, "agent_name": "x" * 500})
    assert long is not None and len(long["agent_name"]) == MAX_AGENT_NAME_CHARS


def test_text_parts_split_on_blank_lines_like_rasa() -> None:
    assert text_parts("one\n\ntwo\nlines\n\n\n\nthree ") == ["one", "two\nlines", "three"]
    assert text_parts("single") == ["single"]


def test_bot_event_with_buttons_becomes_quick_replies_on_the_last_bubble() -> None:
    event = {
        "event": "bot",
        "text": "Sorry.\n\nTry this:",
        "data": {"buttons": [{"title": "Talk to a person", "payload": "/request_human"}]},
        "metadata": {},
    }
    assert bot_payloads(event) == [
        {"text": "Sorry."},
        {
            "text": "Try this:",
            "quick_replies": [
                {"content_type": "text", "title": "Talk to a person", "payload": "/request_human"}
            ],
        },
    ]


def test_agent_event_is_marked_and_image_follows_text() -> None:
    event = {
        "event": "bot",
        "text": "Here is your card",
        "data": {
            "image": "https://example.com/card.png",
            "attachment": "https://example.com/card.png",
        },
        "metadata": {"from_human": True, "agent_name": "Bob"},
    }
    marker = {"from_human": True, "agent_name": "Bob"}
    assert bot_payloads(event) == [
        {"text": "Here is your card", "metadata": marker},
        {
            "attachment": {"type": "image", "payload": {"src": "https://example.com/card.png"}},
            "metadata": marker,
        },
    ]


def test_user_entries_show_button_titles_and_hide_the_initial_payload() -> None:
    assert user_entry({"event": "user", "text": "<b>hi</b>"}) == {
        "role": "user",
        "text": "<b>hi</b>",
    }
    clicked = {
        "event": "user",
        "text": "/request_human",
        "metadata": {"webchat": {"display": "Talk to a person"}},
    }
    assert user_entry(clicked) == {"role": "user", "text": "Talk to a person"}
    assert (
        user_entry({"event": "user", "text": "/greet", "metadata": {"webchat": {"hidden": True}}})
        is None
    )
    assert user_entry({"event": "user", "text": None}) is None
    assert user_entry({"event": "user", "text": "x", "metadata": "junk"}) == {
        "role": "user",
        "text": "x",
    }


def test_transcript_starts_after_the_last_restart_and_keeps_the_newest() -> None:
    events = [
        {"event": "user", "text": "old"},
        {"event": "restart"},
        {"event": "action", "name": "action_listen"},
        {"event": "user", "text": "hi"},
        {"event": "bot", "text": "Hello!", "data": {}, "metadata": {}},
        {"event": "slot", "name": "x", "value": 1},
    ]
    assert transcript(events) == [
        {"role": "user", "text": "hi"},
        {"role": "bot", "payload": {"text": "Hello!"}},
    ]
    many = [{"event": "user", "text": str(i)} for i in range(MAX_HISTORY_ENTRIES + 10)]
    entries = transcript(many)
    assert len(entries) == MAX_HISTORY_ENTRIES
    assert entries[-1]["text"] == str(MAX_HISTORY_ENTRIES + 9)


def test_only_web_chat_conversations_count_as_such() -> None:
    web = [
        {"event": "user", "text": "hi", "input_channel": "socketio"},
        {"event": "bot", "text": "x"},
    ]
    assert is_webchat_conversation(web, "socketio")
    assert is_webchat_conversation([{"event": "session_started"}], "socketio")
    telegram = web + [{"event": "user", "text": "hi", "input_channel": "telegram"}]
    assert not is_webchat_conversation(telegram, "socketio")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"a": 1}, {"a": 1}),
        ('{"a": 1}', {"a": 1}),
        ("{not json", {}),
        ("[1]", {}),
        (None, {}),
        (3, {}),
    ],
)
def test_metadata_is_always_a_dict(raw: object, expected: dict) -> None:
    assert parse_metadata(raw) == expected
