"""`action_answer_question` and `action_out_of_scope`: real SQLite, real trackers, and (slow)
the real action server over HTTP and the whole bot over Rasa's REST channel."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

import actions.answers as answers
from actions.answers import ActionAnswerQuestion, choice_payload
from actions.fallback import ActionOutOfScope
from actions.kb.article import Article
from actions.kb.decision import choose_reply
from actions.kb.ranking import RetrievalConfig, SearchHit
from actions.kb.service import KnowledgeBase
from tests.actions.kb.conftest import SMALL_KB
from tests.actions.kb.fakes import HashingEncoder
from tests.support import action_server, child_env, free_port, rasa_server


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "bank.yml").write_text(SMALL_KB, encoding="utf-8")
    return folder


def _use_kb(monkeypatch: pytest.MonkeyPatch, kb: KnowledgeBase) -> KnowledgeBase:
    monkeypatch.setattr(answers, "get_knowledge_base", lambda: kb)
    return kb


def _tracker(
    intent: str,
    text: str = "",
    entities: list[dict[str, Any]] | None = None,
    fallback_count: float = 0,
) -> Tracker:
    return Tracker(
        sender_id="customer-1",
        slots={"fallback_count": fallback_count, "handoff_reason": None},
        latest_message={
            "intent": {"name": intent, "confidence": 0.9},
            "text": text,
            "entities": entities or [],
        },
        events=[],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


def _run(action: Any, tracker: Tracker) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, {}))
    return dispatcher.messages, events


def _slots(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def _hit(article_id: str, confidence: float) -> SearchHit:
    return SearchHit(
        Article(id=article_id, title=article_id.title(), answer="A."), confidence, confidence
    )


def test_choose_reply_follows_the_thresholds() -> None:
    config = RetrievalConfig(answer_threshold=0.6, choice_threshold=0.2, min_choice_confidence=0.05)
    assert choose_reply([], config).kind == "none"
    assert choose_reply([_hit("a", 0.9), _hit("b", 0.1)], config).kind == "answer"
    reply = choose_reply([_hit("a", 0.4), _hit("b", 0.3), _hit("c", 0.01)], config)
    assert reply.kind == "choose" and [h.article.id for h in reply.choices] == ["a", "b"]
    assert choose_reply([_hit("a", 0.1)], config).kind == "none"


def test_faq_intent_is_answered_from_its_article_in_the_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kb_dir: Path
) -> None:
    _use_kb(
        monkeypatch,
        KnowledgeBase(
            f"sqlite:///{tmp_path / 'bot.db'}", encoder=HashingEncoder(), seed_dir=kb_dir
        ),
    )
    messages, events = _run(
        ActionAnswerQuestion(), _tracker("lost_or_stolen_card", "my card is gone")
    )
    assert messages[0]["text"].startswith("Freeze the card in the app")
    assert messages[0]["text"].endswith("(from: I lost my card or it was stolen)")
    assert messages[0]["custom"]["kb_article"]["id"] == "lost_card"
    assert events == []


def test_confident_retrieval_answers_and_resets_the_fallback_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kb_dir: Path
) -> None:
    config = RetrievalConfig(
        answer_threshold=0.5, choice_threshold=0.1, calibration=(-6.0, 6.0, 8.0)
    )
    _use_kb(
        monkeypatch,
        KnowledgeBase(
            f"sqlite:///{tmp_path / 'bot.db'}",
            encoder=HashingEncoder(),
            seed_dir=kb_dir,
            config=config,
        ),
    )
    messages, events = _run(
        ActionAnswerQuestion(),
        _tracker("nlu_fallback", "which exchange rate do you use", fallback_count=1),
    )
    assert "(from: Which exchange rate do you use?)" in messages[0]["text"]
    assert _slots(events) == {"fallback_count": 0.0}


def test_close_candidates_become_buttons(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kb_dir: Path
) -> None:
    config = RetrievalConfig(answer_threshold=1.0, choice_threshold=0.0, min_choice_confidence=0.0)
    _use_kb(
        monkeypatch,
        KnowledgeBase(
            f"sqlite:///{tmp_path / 'bot.db'}",
            encoder=HashingEncoder(),
            seed_dir=kb_dir,
            config=config,
        ),
    )
    messages, _ = _run(ActionAnswerQuestion(), _tracker("out_of_scope", "my card"))
    assert messages[0]["response"] == "utter_kb_choose"
    payloads = [b["payload"] for b in messages[0]["buttons"]]
    assert len(payloads) == 4 and payloads[-1] == "/request_human"
    assert payloads[0] == choice_payload(
        json.loads(payloads[0][len("/kb_article") :])["article_id"]
    )


def test_a_button_press_answers_the_chosen_article(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kb_dir: Path
) -> None:
    _use_kb(
        monkeypatch,
        KnowledgeBase(
            f"sqlite:///{tmp_path / 'bot.db'}", encoder=HashingEncoder(), seed_dir=kb_dir
        ),
    )
    entities = [{"entity": "article_id", "value": "change_pin"}]
    messages, _ = _run(
        ActionAnswerQuestion(),
        _tracker("kb_article", '/kb_article{"article_id":"change_pin"}', entities),
    )
    assert "(from: Changing your PIN)" in messages[0]["text"]
    missing = [{"entity": "article_id", "value": "deleted_article"}]
    messages, events = _run(ActionAnswerQuestion(), _tracker("kb_article", "", missing))
    assert messages[0]["response"] == "utter_kb_rephrase"


def test_nothing_fits_asks_to_rephrase_once_then_hands_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kb_dir: Path
) -> None:
    strict = RetrievalConfig(answer_threshold=0.999, choice_threshold=0.99)  # nothing is close
    _use_kb(
        monkeypatch,
        KnowledgeBase(
            f"sqlite:///{tmp_path / 'bot.db'}",
            encoder=HashingEncoder(),
            seed_dir=kb_dir,
            config=strict,
        ),
    )
    messages, events = _run(
        ActionAnswerQuestion(), _tracker("out_of_scope", "what's the weather like on mars")
    )
    assert messages[0]["response"] == "utter_kb_rephrase"
    assert _slots(events) == {"fallback_count": 1.0}
    messages, events = _run(
        ActionAnswerQuestion(),
        _tracker("out_of_scope", "tell me a joke about penguins", fallback_count=1),
    )
    assert messages[0]["response"] == "utter_kb_no_answer"
    assert _slots(events) == {"fallback_count": 0.0, "handoff_reason": "kb_no_answer"}
    assert {"event": "followup", "name": "action_handoff"} in [
        {k: e.get(k) for k in ("event", "name")} for e in events
    ]


def test_fallbacks_in_a_row_comes_from_the_handoff_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from actions.fallback import nothing_fits

    config = tmp_path / "fusiondesk.yml"
    monkeypatch.setenv("FUSIONDESK_CONFIG", str(config))
    config.write_text("handoff:\n  fallbacks_in_a_row: 3\n", encoding="utf-8")
    responses = []
    for count in range(3):
        dispatcher = CollectingDispatcher()
        events = nothing_fits(dispatcher, _tracker("out_of_scope", "hm", fallback_count=count))
        responses.append(dispatcher.messages[0]["response"])
    assert responses == ["utter_kb_rephrase", "utter_kb_rephrase", "utter_kb_no_answer"]
    assert {"event": "followup", "name": "action_handoff"} in [
        {k: e.get(k) for k in ("event", "name")} for e in events
    ]
    # 0 = never hand over; a broken file falls back to the default (rephrase once)
    config.write_text("handoff:\n  fallbacks_in_a_row: 0\n", encoding="utf-8")
    dispatcher = CollectingDispatcher()
    nothing_fits(dispatcher, _tracker("out_of_scope", "hm", fallback_count=7))
    assert dispatcher.messages[0]["response"] == "utter_kb_rephrase"
    config.write_text("handoff: [not, a, mapping\n", encoding="utf-8")
    dispatcher = CollectingDispatcher()
    nothing_fits(dispatcher, _tracker("out_of_scope", "hm", fallback_count=1))
    assert dispatcher.messages[0]["response"] == "utter_kb_no_answer"


@pytest.mark.parametrize(
    "text", ["", "x" * 50_000, "'; DROP TABLE kb_articles; --", "<img src=x onerror=alert(1)>"]
)
def test_bad_input_gets_a_reply_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kb_dir: Path, text: str
) -> None:
    kb = _use_kb(
        monkeypatch,
        KnowledgeBase(
            f"sqlite:///{tmp_path / 'bot.db'}", encoder=HashingEncoder(), seed_dir=kb_dir
        ),
    )
    messages, _ = _run(ActionAnswerQuestion(), _tracker("nlu_fallback", text))
    assert messages and all("onerror" not in (m.get("text") or "") for m in messages)
    assert len(kb.articles()) == 4


def test_database_down_apologises_and_hands_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kb_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _use_kb(
        monkeypatch,
        KnowledgeBase(
            f"sqlite:///{tmp_path / 'gone' / 'bot.db'}", encoder=HashingEncoder(), seed_dir=kb_dir
        ),
    )
    for intent in ("card_arrival", "nlu_fallback"):
        messages, events = _run(ActionAnswerQuestion(), _tracker(intent, "where is my card"))
        assert messages[0]["response"] == "utter_kb_unavailable"
        assert _slots(events)["handoff_reason"] == "kb_no_answer"
        assert any(
            e.get("event") == "followup" and e.get("name") == "action_handoff" for e in events
        )
    assert "knowledge base unavailable" in caplog.text


def test_out_of_scope_action_uses_the_same_rephrase_then_handoff_policy() -> None:
    messages, events = _run(ActionOutOfScope(), _tracker("out_of_scope", "sing a song"))
    assert messages[0]["response"] == "utter_kb_rephrase" and _slots(events) == {
        "fallback_count": 1.0
    }
    messages, events = _run(
        ActionOutOfScope(), _tracker("out_of_scope", "sing a song", fallback_count=1)
    )
    assert _slots(events)["handoff_reason"] == "nlu_fallback_twice"


# -- real servers ------------------------------------------------------------------------------


def _post(url: str, payload: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _webhook_call(
    intent: str, text: str, entities: list[dict[str, Any]] | None = None, fallback_count: float = 0
) -> dict[str, Any]:
    return {
        "next_action": "action_answer_question",
        "sender_id": "customer-http",
        "version": "3.6.21",
        "domain": {},
        "tracker": {
            "sender_id": "customer-http",
            "slots": {"fallback_count": fallback_count},
            "latest_message": {
                "intent": {"name": intent},
                "text": text,
                "entities": entities or [],
            },
            "events": [],
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": "action_listen",
        },
    }


@pytest.mark.slow
@pytest.mark.integration
def test_action_server_answers_over_http_from_sqlite(tmp_path: Path, kb_dir: Path) -> None:
    """The real rasa_sdk server, the real MiniLM, a real SQLite file, seeded on first use."""
    db = tmp_path / "bot.db"
    env = child_env(FUSIONDESK_DB_URL=f"sqlite:///{db}", FUSIONDESK_KB_DIR=str(kb_dir))
    root = Path(__file__).resolve().parents[2]
    with action_server(root, free_port(), env) as url:
        faq = _post(url, _webhook_call("card_arrival", "where is my card"))
        assert faq["responses"][0]["text"].endswith("(from: When will my new card arrive?)")
        retrieved = _post(url, _webhook_call("nlu_fallback", "somebody has stolen my card"))
        assert retrieved["responses"][0]["custom"]["kb_article"]["id"] == "lost_card"
        assert "(from: I lost my card or it was stolen)" in retrieved["responses"][0]["text"]
        picked = _post(
            url,
            _webhook_call("kb_article", "", [{"entity": "article_id", "value": "exchange_rate"}]),
        )
        assert "interbank" in picked["responses"][0]["text"]
        first = _post(url, _webhook_call("out_of_scope", "recommend a good pizza topping"))
        assert first["responses"][0]["response"] == "utter_kb_rephrase"
        second = _post(
            url, _webhook_call("out_of_scope", "what is the capital of peru", fallback_count=1)
        )
        assert {"event": "followup", "name": "action_handoff"} in [
            {k: e.get(k) for k in ("event", "name")} for e in second["events"]
        ]
    # the articles and their vectors are in the database for the next start
    import sqlalchemy as sa

    with sa.create_engine(f"sqlite:///{db}").connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM kb_articles")).scalar() == 4
        assert connection.execute(sa.text("SELECT count(*) FROM kb_vectors")).scalar() == 4


@pytest.mark.slow
@pytest.mark.integration
def test_action_server_survives_a_database_that_is_down(tmp_path: Path, kb_dir: Path) -> None:
    env = child_env(
        FUSIONDESK_DB_URL=f"sqlite:///{tmp_path / 'missing' / 'bot.db'}",
        FUSIONDESK_KB_DIR=str(kb_dir),
    )
    root = Path(__file__).resolve().parents[2]
    with action_server(root, free_port(), env) as url:
        reply = _post(url, _webhook_call("nlu_fallback", "where is my card"))
        assert reply["responses"][0]["response"] == "utter_kb_unavailable"
        assert any(e.get("event") == "followup" for e in reply["events"])
        again = _post(url, _webhook_call("card_arrival", "where is my card"))  # still serving
        assert again["responses"][0]["response"] == "utter_kb_unavailable"


def _say(base: str, sender: str, text: str) -> list[dict[str, Any]]:
    return _post(f"{base}/webhooks/rest/webhook", {"sender": sender, "message": text}, timeout=120)  # type: ignore[return-value]


@pytest.mark.slow
@pytest.mark.integration
def test_choice_button_payload_through_rasa_rest(
    fast_bot: tuple[Path, Path], tmp_path: Path, kb_dir: Path
) -> None:
    """A `/kb_article{...}` button payload goes through Rasa (domain, rule) to the article."""
    project, model = fast_bot
    env = child_env(
        FUSIONDESK_DB_URL=f"sqlite:///{tmp_path / 'bot.db'}", FUSIONDESK_KB_DIR=str(kb_dir)
    )
    with action_server(project, free_port(), env) as actions_url:
        with rasa_server(
            project, model, free_port(), actions_url, tmp_path / "bot.db", env
        ) as base:
            reply = _say(base, "customer-buttons", choice_payload("change_pin"))
            texts = " ".join(m.get("text", "") for m in reply)
            assert "(from: Changing your PIN)" in texts
            assert any(
                m.get("custom", {}).get("kb_article", {}).get("id") == "change_pin" for m in reply
            )


def test_rasa_sdk_registers_the_actions_without_touching_a_database() -> None:
    """rasa_sdk imports every module under `actions/` (the KB's migrations must not run)."""
    from rasa_sdk.executor import ActionExecutor

    executor = ActionExecutor()
    executor.register_package("actions")
    assert {"action_answer_question", "action_out_of_scope"} <= set(executor.actions)
