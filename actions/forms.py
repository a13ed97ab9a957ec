"""The bank's forms: transfer money, block a card, top up, dispute a charge.

Rasa fills the slots from the entities of `SemanticRoleEntityExtractor` (slot mappings in
`domain.yml`, using the `recipient` role); these actions validate them:

- `validate_<form>`: every value goes through `actions.form_values`; an impossible value gets
  a helpful re-prompt and the slot stays empty. When the customer answers the question in words
  the NLU did not tag ("fifty-ish"), the raw text is checked so they still get a clear reply.
  A filled slot is only replaced when the customer says so (a correction, the slot being asked,
  or an answer to "what should I change?"); otherwise the old value is kept and they are told
  how to change it.
- `action_ask_confirmed`: the summary to confirm (or, after a "no", what they can change).
- `action_submit_<form>`: performs the simulated operation, says so, clears the form's slots.
- `action_stop_form`: after `action_deactivate_loop` ("stop", "cancel"): clears the slots and
  says nothing was done; `action_form_abandoned` (actions/handoff.py) then counts it and hands
  the conversation to a person the second time.
"""

from __future__ import annotations

import inspect
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.form_values import (
    InvalidSlotValue,
    check_charge_date,
    check_transfer_date,
    describe_date,
    format_amount,
    parse_amount,
    parse_card,
    parse_currency,
    parse_date,
    parse_merchant,
    parse_past_date,
    parse_recipient,
    parse_top_up_method,
    vague_phrase,
)

CONFIRM_SLOT = "confirmed"
REQUESTED_SLOT = "requested_slot"
#: Intents that may change a slot that is already filled.
CORRECTION_INTENTS = frozenset({"correct_slot"})
#: Intents whose text is read as an answer to the question asked, even without entities.
ANSWER_INTENTS = frozenset({"inform", "correct_slot", "nlu_fallback"})
#: The (simulated) account's currency.
ACCOUNT_CURRENCY = "EUR"

MAX_TRANSFER = Decimal("10000")
MAX_TOP_UP = Decimal("5000")
MAX_DISPUTE = Decimal("100000")


def today() -> date:
    """Today's date (a function so tests can fix the day)."""
    return date.today()


@dataclass(frozen=True)
class FormSpec:
    """What the actions need to know about one form."""

    name: str
    #: Intent that starts the form (restating it may change filled slots).
    trigger_intent: str
    #: Slots the form fills, in order; `confirmed` comes last.
    slots: tuple[str, ...]
    #: Slot → words used in messages ("the recipient").
    labels: dict[str, str]
    summary_response: str
    done_response: str
    reference_prefix: str


FORMS: dict[str, FormSpec] = {
    spec.name: spec
    for spec in (
        FormSpec(
            "transfer_money_form",
            "transfer_money",
            ("amount", "currency", "recipient", "transfer_date", CONFIRM_SLOT),
            {
                "amount": "amount",
                "currency": "currency",
                "recipient": "recipient",
                "transfer_date": "date",
            },
            "utter_summary_transfer_money_form",
            "utter_done_transfer_money_form",
            "TR",
        ),
        FormSpec(
            "block_card_form",
            "block_card",
            ("card", CONFIRM_SLOT),
            {"card": "card"},
            "utter_summary_block_card_form",
            "utter_done_block_card_form",
            "BL",
        ),
        FormSpec(
            "top_up_form",
            "top_up_account",
            ("amount", "currency", "topup_method", CONFIRM_SLOT),
            {"amount": "amount", "topup_method": "payment method", "currency": "currency"},
            "utter_summary_top_up_form",
            "utter_done_top_up_form",
            "TU",
        ),
        FormSpec(
            "dispute_charge_form",
            "dispute_charge",
            ("merchant", "amount", "currency", "charge_date", CONFIRM_SLOT),
            {
                "merchant": "merchant",
                "amount": "amount",
                "charge_date": "date",
                "currency": "currency",
            },
            "utter_summary_dispute_charge_form",
            "utter_done_dispute_charge_form",
            "DS",
        ),
    )
}

#: Every slot a form may set (cleared when a form ends).
FORM_SLOTS: tuple[str, ...] = tuple(
    dict.fromkeys([s for spec in FORMS.values() for s in spec.slots] + ["currency", "charge_date"])
)


def previous_slot_value(tracker: Tracker, slot: str) -> Any:
    """The slot's value before the customer's latest message."""
    last_user = max(
        (i for i, e in enumerate(tracker.events) if e.get("event") == "user"), default=-1
    )
    value: Any = None
    for event in tracker.events[: max(last_user, 0)]:
        kind = event.get("event")
        if kind == "slot" and event.get("name") == slot:
            value = event.get("value")
        elif kind in {"restart", "reset_slots"}:
            value = None
    return value


def latest_intent(tracker: Tracker) -> str:
    return str((tracker.latest_message.get("intent") or {}).get("name") or "")


def latest_entities(tracker: Tracker, entity: str, roles: set[str | None]) -> list[str]:
    """Values of the latest message's entities of one type whose role is in `roles`."""
    return [
        str(e.get("value"))
        for e in tracker.latest_message.get("entities") or []
        if e.get("entity") == entity and e.get("role") in roles
    ]


Validator = Callable[[Any, CollectingDispatcher, Tracker, dict[str, Any]], Any]


class BankFormValidation(FormValidationAction, ABC):
    """Shared validation: keep filled slots unless changed on purpose, read raw answers."""

    #: Slots whose raw text is checked when the NLU tagged nothing (strict parsers only).
    RAW_TEXT_SLOTS: frozenset[str] = frozenset()

    @abstractmethod
    def name(self) -> str: ...

    @property
    def spec(self) -> FormSpec:
        return FORMS[self.form_name()]

    async def get_validation_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        required = await self.required_slots(self.domain_slots(domain), dispatcher, tracker, domain)
        candidates = {
            slot: value for slot, value in tracker.slots_to_validate().items() if slot in required
        }
        requested = tracker.get_slot(REQUESTED_SLOT)
        intent = latest_intent(tracker)
        if (
            requested in self.RAW_TEXT_SLOTS
            and not candidates
            and intent in ANSWER_INTENTS | {self.spec.trigger_intent}
        ):
            candidates[requested] = tracker.latest_message.get("text") or ""
        result: dict[str, Any] = {}
        for slot, value in candidates.items():
            previous = previous_slot_value(tracker, slot)
            if (
                slot != CONFIRM_SLOT
                and previous is not None
                and value != previous
                and not self._change_allowed(slot, requested, intent)
            ):
                quiet = await self._validate(slot, value, CollectingDispatcher(), tracker, domain)
                if quiet.get(slot) == previous:  # the same value said again ("50" = "50.00")
                    result[slot] = previous
                    continue
                label = self.spec.labels.get(slot, slot)
                dispatcher.utter_message(
                    text=f"I've kept the {label} as {self._display(slot, previous)}. To change "
                    f"it, say for example “change the {label} to …”."
                )
                result[slot] = previous
                continue
            if value is None:
                result[slot] = None
                continue
            validated = await self._validate(slot, value, dispatcher, tracker, domain)
            if (
                previous is not None
                and validated.get(slot) not in (None, previous)
                and slot != CONFIRM_SLOT
            ):
                label = self.spec.labels.get(slot, slot)
                dispatcher.utter_message(
                    text=f"Got it: the {label} is now {self._display(slot, validated[slot])} "
                    f"instead of {self._display(slot, previous)}."
                )
            result.update(validated)
        return [SlotSet(slot, value) for slot, value in result.items()]

    def _change_allowed(self, slot: str, requested: str | None, intent: str) -> bool:
        if intent in CORRECTION_INTENTS or intent == self.spec.trigger_intent:
            return True
        if slot == requested:
            return True
        # "No" to the summary was followed by what to change
        return requested == CONFIRM_SLOT and intent != "affirm"

    async def _validate(
        self,
        slot: str,
        value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
    ) -> dict[str, Any]:
        method: Validator | None = getattr(self, f"validate_{slot}", None)
        if method is None:
            return {slot: value}
        output = method(value, dispatcher, tracker, domain)
        if inspect.isawaitable(output):
            output = await output
        return dict(output or {})

    def _display(self, slot: str, value: Any) -> str:
        if slot in {"transfer_date", "charge_date"}:
            try:
                return describe_date(date.fromisoformat(str(value)), today())
            except ValueError:
                return str(value)
        if slot == "amount":
            try:
                return format_amount(Decimal(str(value)))
            except ArithmeticError:
                return str(value)
        return str(value)

    # -- shared validators -------------------------------------------------------------------

    @staticmethod
    def _rejected(
        slot: str, error: InvalidSlotValue, dispatcher: CollectingDispatcher
    ) -> dict[str, Any]:
        dispatcher.utter_message(text=str(error))
        return {slot: None}

    #: Currency assumed when the customer names none (None: ask for it).
    DEFAULT_CURRENCY: str | None = None

    def _amount(
        self, value: Any, maximum: Decimal, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        try:
            amount = parse_amount(_with_vague_context(tracker, str(value)), maximum)
        except InvalidSlotValue as e:
            return self._rejected("amount", e, dispatcher)
        result: dict[str, Any] = {"amount": f"{amount:.2f}"}
        currency_given = "currency" in tracker.slots_to_validate()
        if self.DEFAULT_CURRENCY and not currency_given and tracker.get_slot("currency") is None:
            result["currency"] = self.DEFAULT_CURRENCY
        return result

    def validate_currency(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            return {"currency": parse_currency(str(value))}
        except InvalidSlotValue as e:
            return self._rejected("currency", e, dispatcher)

    def validate_confirmed(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        # True: the form completes and the submit action runs. False: ask what to change
        # (action_ask_confirmed words it); the slot stays empty so the summary comes back.
        return {CONFIRM_SLOT: True if value is True else None}


class ValidateTransferMoneyForm(BankFormValidation):
    """Amount, currency, one recipient, a date from today on."""

    RAW_TEXT_SLOTS = frozenset({"amount", "currency", "transfer_date"})

    def name(self) -> str:
        return "validate_transfer_money_form"

    def validate_amount(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        return self._amount(value, MAX_TRANSFER, dispatcher, tracker)

    def validate_recipient(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        named = latest_entities(tracker, "person", {"recipient"})
        try:
            return {"recipient": parse_recipient(str(value), named)}
        except InvalidSlotValue as e:
            return self._rejected("recipient", e, dispatcher)

    def validate_transfer_date(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        day = today()
        try:
            when = check_transfer_date(_as_date(value, day, past=False), day)
        except InvalidSlotValue as e:
            return self._rejected("transfer_date", e, dispatcher)
        return {"transfer_date": when.isoformat()}


class ValidateBlockCardForm(BankFormValidation):
    """Which card to block or freeze."""

    RAW_TEXT_SLOTS = frozenset({"card"})

    def name(self) -> str:
        return "validate_block_card_form"

    def validate_card(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            return {"card": parse_card(str(value)).label}
        except InvalidSlotValue as e:
            return self._rejected("card", e, dispatcher)


class ValidateTopUpForm(BankFormValidation):
    """Top-up amount (account currency unless another is named) and how to pay."""

    RAW_TEXT_SLOTS = frozenset({"amount", "currency", "topup_method"})
    DEFAULT_CURRENCY = ACCOUNT_CURRENCY

    def name(self) -> str:
        return "validate_top_up_form"

    def validate_amount(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        return self._amount(value, MAX_TOP_UP, dispatcher, tracker)

    def validate_topup_method(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            return {"topup_method": parse_top_up_method(str(value))}
        except InvalidSlotValue as e:
            return self._rejected("topup_method", e, dispatcher)


class ValidateDisputeChargeForm(BankFormValidation):
    """Merchant, amount and the day of a recent charge."""

    RAW_TEXT_SLOTS = frozenset({"amount", "currency", "charge_date"})
    DEFAULT_CURRENCY = ACCOUNT_CURRENCY  # most charges are in the account's currency

    def name(self) -> str:
        return "validate_dispute_charge_form"

    def validate_merchant(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            return {"merchant": parse_merchant(str(value))}
        except InvalidSlotValue as e:
            return self._rejected("merchant", e, dispatcher)

    def validate_amount(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        return self._amount(value, MAX_DISPUTE, dispatcher, tracker)

    def validate_charge_date(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        day = today()
        try:
            when = check_charge_date(_as_date(value, day, past=True), day)
        except InvalidSlotValue as e:
            return self._rejected("charge_date", e, dispatcher)
        return {"charge_date": when.isoformat()}


def _with_vague_context(tracker: Tracker, value: str) -> str:
    """The amount with the vague words around it in the message ("fifty" → "fifty-ish")."""
    text = str(tracker.latest_message.get("text") or "")
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == "amount" and str(entity.get("value")) == value:
            start, end = entity.get("start"), entity.get("end")
            if isinstance(start, int) and isinstance(end, int):
                return vague_phrase(text, start, end) or value
    return value


def _as_date(value: Any, day: date, past: bool) -> date:
    text = str(value)
    try:
        return date.fromisoformat(text)  # already validated (e.g. re-validated on activation)
    except ValueError:
        return parse_past_date(text, day) if past else parse_date(text, day)


def _summary_values(spec: FormSpec, tracker: Tracker) -> dict[str, str]:
    day = today()
    values: dict[str, str] = {
        "currency": str(tracker.get_slot("currency") or ACCOUNT_CURRENCY),
    }
    amount = tracker.get_slot("amount")
    if amount is not None:
        values["amount"] = format_amount(Decimal(str(amount)))
    for slot in ("transfer_date", "charge_date"):
        raw = tracker.get_slot(slot)
        if raw:
            described = describe_date(date.fromisoformat(str(raw)), day)
            values[f"{slot}_text"] = described
    for slot in ("recipient", "card", "topup_method", "merchant"):
        if tracker.get_slot(slot) is not None:
            values[slot] = str(tracker.get_slot(slot))
    return values


class ActionAskConfirmed(Action):
    """Ask to confirm the summary, or — right after a "no" — what to change."""

    def name(self) -> str:
        return "action_ask_confirmed"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        spec = FORMS.get(tracker.active_loop_name or "")
        if spec is None:
            return []
        if latest_intent(tracker) == "deny" and tracker.get_slot(REQUESTED_SLOT) == CONFIRM_SLOT:
            dispatcher.utter_message(response="utter_ask_what_to_change")
            return []
        dispatcher.utter_message(response=spec.summary_response, **_summary_values(spec, tracker))
        return []


class ActionSubmitForm(Action, ABC):
    """Perform the form's (simulated) operation, say so, clear the form's slots."""

    @property
    @abstractmethod
    def form(self) -> str: ...

    def name(self) -> str:
        return f"action_submit_{self.form}"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        spec = FORMS[self.form]
        reference = f"{spec.reference_prefix}-{uuid.uuid4().hex[:8].upper()}"
        # The simulation: nothing leaves the bot; a real deployment calls the core banking API
        # here, with the validated slot values, and reports its reference instead.
        dispatcher.utter_message(
            response=spec.done_response, reference=reference, **_summary_values(spec, tracker)
        )
        return [SlotSet(slot, None) for slot in FORM_SLOTS]


class ActionSubmitTransferMoneyForm(ActionSubmitForm):
    form = "transfer_money_form"


class ActionSubmitBlockCardForm(ActionSubmitForm):
    form = "block_card_form"


class ActionSubmitTopUpForm(ActionSubmitForm):
    form = "top_up_form"


class ActionSubmitDisputeChargeForm(ActionSubmitForm):
    form = "dispute_charge_form"


class ActionStopForm(Action):
    """After the form was deactivated ("stop", or a person was asked for): clear its slots
    and say that nothing was done."""

    def name(self) -> str:
        return "action_stop_form"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if latest_intent(tracker) != "request_human":  # the handoff speaks for itself
            dispatcher.utter_message(response="utter_form_stopped")
        return [SlotSet(slot, None) for slot in FORM_SLOTS]
