"""The banking forms' validation, confirmation, submit and stop actions (rasa_sdk, no server)."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions import forms
from actions.forms import (
    FORM_SLOTS,
    ActionAskConfirmed,
    ActionStopForm,
    ActionSubmitTransferMoneyForm,
    ValidateBlockCardForm,
    ValidateDisputeChargeForm,
    ValidateTopUpForm,
    ValidateTransferMoneyForm,
)

ROOT = Path(__file__).resolve().parents[2]
DOMAIN: dict[str, Any] = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))
TODAY = date(2026, 11, 29)


@pytest.fixture(autouse=True)
def fixed_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forms, "today", lambda: TODAY)


def user(text: str, intent: str, entities: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "event": "user",
        "text": text,
        "parse_data": {"intent": {"name": intent}, "entities": entities or []},
    }


def slot(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "name": name, "value": value}


def tracker(
    form: str,
    before: dict[str, Any],
    message: dict[str, Any],
    candidates: dict[str, Any],
    requested: str | None,
) -> Tracker:
    """A tracker as Rasa sends it to validate_<form>: old slots, the message, candidates."""
    events = [{"event": "action", "name": "action_listen"}]
    events += [slot(k, v) for k, v in before.items()]
    events += [slot("requested_slot", requested), message]
    events += [slot(k, v) for k, v in candidates.items()]
    slots = {
        **{s: None for s in DOMAIN["slots"]},
        **before,
        **candidates,
        "requested_slot": requested,
    }
    latest = {
        "text": message["text"],
        "intent": message["parse_data"]["intent"],
        "entities": message["parse_data"]["entities"],
    }
    return Tracker("c1", slots, latest, events, False, None, {"name": form}, "action_listen")


def run(action: Action, t: Tracker) -> tuple[dict[str, Any], list[str]]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, t, DOMAIN))
    slots = {e["name"]: e["value"] for e in events if e.get("event") == "slot"}
    said = [m.get("text") or m.get("response") for m in dispatcher.messages]
    return slots, [s for s in said if s]


def person(name: str, role: str) -> dict[str, Any]:
    return {"entity": "person", "value": name, "role": role}


def test_prefilled_transfer_is_normalised() -> None:
    t = tracker(
        "transfer_money_form",
        {},
        user(
            "send 1,000.50 euros to Anna tomorrow", "transfer_money", [person("Anna", "recipient")]
        ),
        {
            "amount": "1,000.50",
            "currency": "euros",
            "recipient": "Anna",
            "transfer_date": "tomorrow",
        },
        None,
    )
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert slots["amount"] == "1000.50"
    assert slots["currency"] == "EUR"
    assert slots["recipient"] == "Anna"
    assert slots["transfer_date"] == "2026-11-30"
    assert said == []


@pytest.mark.parametrize(
    "value, message",
    [("fifty-ish", "exact amount"), ("1,000.000.5", "couldn't read"), ("20000", "above the limit")],
)
def test_bad_amounts_are_rejected_with_a_reprompt(value: str, message: str) -> None:
    t = tracker(
        "transfer_money_form",
        {"recipient": "Anna"},
        user(value, "inform"),
        {"amount": value},
        "amount",
    )
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert slots["amount"] is None
    assert any(message in s for s in said)


def test_untagged_answer_is_still_checked() -> None:
    # the NLU found no entity in "roughly fifty": the raw text is read for the asked slot
    t = tracker(
        "transfer_money_form", {"recipient": "Anna"}, user("roughly fifty", "inform"), {}, "amount"
    )
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert slots == {"amount": None} or slots.get("amount") is None
    assert any("exact amount" in s for s in said)
    # an untagged but clear answer is accepted
    t = tracker("transfer_money_form", {"recipient": "Anna"}, user("75", "inform"), {}, "amount")
    assert run(ValidateTransferMoneyForm(), t)[0]["amount"] == "75.00"


def test_untagged_text_of_other_intents_is_not_read_as_an_answer() -> None:
    t = tracker(
        "transfer_money_form", {}, user("what are your fees?", "transfer_fee_charged"), {}, "amount"
    )
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert "amount" not in slots and said == []


def test_unknown_currency_and_past_date() -> None:
    t = tracker(
        "transfer_money_form",
        {"amount": "20.00"},
        user("in doubloons yesterday", "inform"),
        {"currency": "doubloons", "transfer_date": "yesterday"},
        "currency",
    )
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert slots["currency"] is None and slots["transfer_date"] is None
    assert any("don't know the currency “doubloons”" in s for s in said)
    assert any("Yesterday is in the past" in s for s in said)


def test_a_long_list_of_names_gets_a_clear_reprompt() -> None:
    names = ["Grace", "Noah", "Carlos", "Mohammed", "Kwame"]
    t = tracker(
        "transfer_money_form",
        {"amount": "20.00"},
        user(", ".join(names), "inform", [person(n, "recipient") for n in names]),
        {"recipient": "Kwame"},
        "recipient",
    )
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert slots["recipient"] is None
    assert any("list of 5 people" in s for s in said)


def test_a_filled_slot_is_kept_unless_the_customer_corrects_it() -> None:
    before = {"amount": "50.00", "currency": "EUR", "recipient": "Anna"}
    mention = user("tomorrow, it's for Ben's birthday", "inform", [person("Ben", "recipient")])
    t = tracker(
        "transfer_money_form",
        before,
        mention,
        {"recipient": "Ben", "transfer_date": "tomorrow"},
        "transfer_date",
    )
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert slots["recipient"] == "Anna"
    assert slots["transfer_date"] == "2026-11-30"
    assert any("kept the recipient as Anna" in s for s in said)

    correction = user(
        "no, to Emma, not Anna",
        "correct_slot",
        [person("Emma", "recipient"), person("Anna", "excluded")],
    )
    t = tracker("transfer_money_form", before, correction, {"recipient": "Emma"}, "transfer_date")
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert slots["recipient"] == "Emma"
    assert any("Emma instead of Anna" in s for s in said)


def test_the_same_value_said_again_is_not_a_change() -> None:
    before = {
        "amount": "50.00",
        "currency": "EUR",
        "recipient": "Anna",
        "transfer_date": "2026-11-30",
    }
    t = tracker(
        "transfer_money_form",
        before,
        user("yes, 50 euros", "affirm"),
        {"amount": "50", "confirmed": True},
        "confirmed",
    )
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert slots["amount"] == "50.00" and slots["confirmed"] is True
    assert said == []


def test_after_no_to_the_summary_a_new_value_replaces_the_old() -> None:
    before = {
        "amount": "100.00",
        "currency": "GBP",
        "recipient": "Ben",
        "transfer_date": "2026-11-29",
    }
    t = tracker(
        "transfer_money_form", before, user("make it 120", "inform"), {"amount": "120"}, "confirmed"
    )
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert slots["amount"] == "120.00"
    assert any("120.00 instead of 100.00" in s for s in said)


def test_deny_keeps_the_form_open() -> None:
    before = {
        "amount": "100.00",
        "currency": "GBP",
        "recipient": "Ben",
        "transfer_date": "2026-11-29",
    }
    t = tracker(
        "transfer_money_form", before, user("no", "deny"), {"confirmed": False}, "confirmed"
    )
    slots, _ = run(ValidateTransferMoneyForm(), t)
    assert slots["confirmed"] is None


def test_ask_confirmed_shows_the_summary_or_asks_what_to_change() -> None:
    before = {
        "amount": "1000.00",
        "currency": "EUR",
        "recipient": "Anna",
        "transfer_date": "2026-12-04",
    }
    t = tracker("transfer_money_form", before, user("on Friday", "inform"), {}, "confirmed")
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionAskConfirmed().run(dispatcher, t, DOMAIN))
    (message,) = dispatcher.messages
    assert message["response"] == "utter_summary_transfer_money_form"
    assert message["amount"] == "1,000.00"
    assert message["transfer_date_text"] == "Friday 4 December 2026"
    t = tracker("transfer_money_form", before, user("no", "deny"), {}, "confirmed")
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionAskConfirmed().run(dispatcher, t, DOMAIN))
    assert [m["response"] for m in dispatcher.messages] == ["utter_ask_what_to_change"]


def test_submit_performs_the_simulated_operation_and_clears_the_form() -> None:
    before = {
        "amount": "50.00",
        "currency": "EUR",
        "recipient": "Anna",
        "transfer_date": "2026-11-29",
        "confirmed": True,
    }
    t = tracker("transfer_money_form", before, user("yes", "affirm"), {}, None)
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ActionSubmitTransferMoneyForm().run(dispatcher, t, DOMAIN))
    (message,) = dispatcher.messages
    assert message["response"] == "utter_done_transfer_money_form"
    assert message["reference"].startswith("TR-") and message["recipient"] == "Anna"
    assert message["transfer_date_text"] == "today"
    assert {e["name"] for e in events} == set(FORM_SLOTS)
    assert all(e["value"] is None for e in events)


def test_stop_clears_the_slots_and_says_nothing_was_done() -> None:
    t = tracker("transfer_money_form", {"amount": "50.00"}, user("stop", "stop"), {}, None)
    slots, said = run(ActionStopForm(), t)
    assert said == ["utter_form_stopped"]
    assert set(slots) == set(FORM_SLOTS) and not any(slots.values())
    t = tracker(
        "transfer_money_form",
        {"amount": "50.00"},
        user("a human please", "request_human"),
        {},
        None,
    )
    assert run(ActionStopForm(), t)[1] == []


def test_block_card_rejects_a_full_card_number() -> None:
    t = tracker(
        "block_card_form",
        {},
        user("4111 1111 1111 1111", "inform"),
        {"card": "4111 1111 1111 1111"},
        "card",
    )
    slots, said = run(ValidateBlockCardForm(), t)
    assert slots["card"] is None
    assert any("never send your full card number" in s for s in said)
    t = tracker(
        "block_card_form",
        {},
        user("my visa debit card", "inform"),
        {"card": "visa debit card"},
        "card",
    )
    assert run(ValidateBlockCardForm(), t)[0]["card"] == "Visa debit card"


def test_top_up_method_cash_is_refused_card_is_accepted() -> None:
    t = tracker(
        "top_up_form", {"amount": "200.00"}, user("with cash", "inform"), {}, "topup_method"
    )
    slots, said = run(ValidateTopUpForm(), t)
    assert slots["topup_method"] is None
    assert any("cash aren't possible" in s for s in said)
    t = tracker(
        "top_up_form",
        {"amount": "200.00"},
        user(
            "with my credit card",
            "inform",
            [{"entity": "card", "value": "credit card", "role": "instrument"}],
        ),
        {"topup_method": "credit card"},
        "topup_method",
    )
    assert run(ValidateTopUpForm(), t)[0]["topup_method"] == "credit card"


def test_dispute_dates_must_be_recent_and_not_in_the_future() -> None:
    base = {"merchant": "Amazon", "amount": "45.99"}
    t = tracker(
        "dispute_charge_form",
        base,
        user("next Friday", "inform"),
        {"charge_date": "next Friday"},
        "charge_date",
    )
    slots, said = run(ValidateDisputeChargeForm(), t)
    assert slots["charge_date"] is None and any("in the future" in s for s in said)
    t = tracker(
        "dispute_charge_form",
        base,
        user("last Monday", "inform"),
        {"charge_date": "last Monday"},
        "charge_date",
    )
    assert run(ValidateDisputeChargeForm(), t)[0]["charge_date"] == "2026-11-23"
    t = tracker(
        "dispute_charge_form",
        base,
        user("1 March", "inform"),
        {"charge_date": "1 March"},
        "charge_date",
    )
    slots, said = run(ValidateDisputeChargeForm(), t)
    assert slots["charge_date"] is None and any("older than 120 days" in s for s in said)


def test_top_up_assumes_the_account_currency_unless_one_is_named() -> None:
    t = tracker("top_up_form", {}, user("200", "inform"), {"amount": "200"}, "amount")
    assert run(ValidateTopUpForm(), t)[0] == {"amount": "200.00", "currency": "EUR"}
    t = tracker(
        "top_up_form",
        {},
        user("200 dollars", "inform"),
        {"amount": "200", "currency": "dollars"},
        "amount",
    )
    assert run(ValidateTopUpForm(), t)[0] == {"amount": "200.00", "currency": "USD"}
    t = tracker(
        "top_up_form",
        {},
        user("200 doubloons", "inform"),
        {"amount": "200", "currency": "doubloons"},
        "amount",
    )
    slots, said = run(ValidateTopUpForm(), t)
    assert slots == {"amount": "200.00", "currency": None}
    assert any("doubloons" in s for s in said)


def test_fifty_ish_is_rejected_although_the_nlu_marked_only_fifty() -> None:
    message = user(
        "fifty-ish", "inform", [{"entity": "amount", "value": "fifty", "start": 0, "end": 5}]
    )
    t = tracker(
        "transfer_money_form", {"recipient": "Anna"}, message, {"amount": "fifty"}, "amount"
    )
    slots, said = run(ValidateTransferMoneyForm(), t)
    assert slots["amount"] is None
    assert any("not “fifty-ish”" in s for s in said)


def test_the_second_abandoned_form_hands_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """stop → action_stop_form → action_form_abandoned (rules); twice → handoff."""
    from actions.handoff import ActionFormAbandoned

    config = tmp_path / "fusiondesk.yml"
    config.write_text("handoff:\n  forms_abandoned: 2\n", encoding="utf-8")
    monkeypatch.setenv("FUSIONDESK_CONFIG", str(config))
    first = tracker("top_up_form", {"forms_abandoned": 0}, user("stop", "stop"), {}, None)
    slots, _ = run(ActionFormAbandoned(), first)
    assert slots == {"forms_abandoned": 1.0}
    second = tracker(
        "block_card_form", {"forms_abandoned": 1.0}, user("cancel that", "stop"), {}, None
    )
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ActionFormAbandoned().run(dispatcher, second, DOMAIN))
    assert {"event": "slot", "name": "handoff_reason", "value": "form_abandoned"} in [
        {k: e.get(k) for k in ("event", "name", "value")} for e in events
    ]
    assert any(e.get("event") == "followup" and e.get("name") == "action_handoff" for e in events)
