"""Parsing and checking the values customers give in the banking forms."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from actions.form_values import (
    InvalidSlotValue,
    check_charge_date,
    check_transfer_date,
    describe_date,
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

TODAY = date(2026, 11, 29)  # a Sunday


@pytest.mark.parametrize(
    "text, expected",
    [
        ("50", "50.00"),
        ("1,000.50", "1000.50"),
        ("1.000,50", "1000.50"),
        ("12,50", "12.50"),
        ("€20", "20.00"),
        ("50 euros", "50.00"),
        ("fifty", "50.00"),
        ("fifty five", "55.00"),
        ("two hundred and twenty", "220.00"),
        ("2k", "2000.00"),
    ],
)
def test_amounts_in_many_spellings(text: str, expected: str) -> None:
    assert parse_amount(text) == Decimal(expected)


@pytest.mark.parametrize(
    "text, message",
    [
        ("fifty-ish", "exact amount"),
        ("about 50", "exact amount"),
        ("1,000.000.5", "couldn't read"),
        ("12.345", "could mean 12,345"),
        ("0", "more than zero"),
        ("-5", "more than zero"),
        ("12.505", "could mean"),
        ("50 or 60", "more than one number"),
        ("lots", "couldn't read"),
        ("", "How much"),
    ],
)
def test_bad_amounts_get_a_reprompt(text: str, message: str) -> None:
    with pytest.raises(InvalidSlotValue, match=message):
        parse_amount(text)


def test_amount_above_the_limit() -> None:
    with pytest.raises(InvalidSlotValue, match="above the limit of 10,000.00"):
        parse_amount("20000", maximum=Decimal("10000"))
    assert parse_amount("10000", maximum=Decimal("10000")) == Decimal("10000.00")


def test_currencies() -> None:
    assert parse_currency("euros") == "EUR"
    assert parse_currency("£") == "GBP"
    assert parse_currency("chf") == "CHF"
    with pytest.raises(InvalidSlotValue, match="don't know the currency “doubloons”"):
        parse_currency("doubloons")
    with pytest.raises(InvalidSlotValue, match="can't send RUB"):
        parse_currency("RUB")


@pytest.mark.parametrize(
    "text, future, past",
    [
        ("today", "2026-11-29", "2026-11-29"),
        ("tomorrow", "2026-11-30", "2026-11-30"),
        ("yesterday", "2026-11-28", "2026-11-28"),
        ("next Friday", "2026-12-04", "2026-12-04"),
        ("Friday", "2026-12-04", "2026-11-27"),
        ("on Monday", "2026-11-30", "2026-11-23"),
        ("last Monday", "2026-11-23", "2026-11-23"),
        ("in two days", "2026-12-01", "2026-12-01"),
        ("two days ago", "2026-11-27", "2026-11-27"),
        ("12 May", "2027-05-12", "2026-05-12"),
        ("the 3rd of June", "2027-06-03", "2026-06-03"),
        ("June 30", "2027-06-30", "2026-06-30"),
        ("the 15th", "2026-12-15", "2026-11-15"),
        ("12/05", "2027-05-12", "2026-05-12"),
        ("2026-07-01", "2026-07-01", "2026-07-01"),
    ],
)
def test_dates(text: str, future: str, past: str) -> None:
    assert parse_date(text, TODAY).isoformat() == future
    assert parse_past_date(text, TODAY).isoformat() == past


def test_impossible_and_unreadable_dates() -> None:
    with pytest.raises(InvalidSlotValue, match="isn't a date in the calendar"):
        parse_date("31 February", TODAY)
    with pytest.raises(InvalidSlotValue, match="didn't understand the date"):
        parse_date("whenever", TODAY)


def test_transfer_dates_cannot_be_in_the_past_or_too_far_ahead() -> None:
    assert check_transfer_date(TODAY, TODAY) == TODAY
    with pytest.raises(InvalidSlotValue, match="Friday 20 November 2026 is in the past"):
        check_transfer_date(date(2026, 11, 20), TODAY)
    with pytest.raises(InvalidSlotValue, match="Yesterday is in the past"):
        check_transfer_date(date(2026, 11, 28), TODAY)
    with pytest.raises(InvalidSlotValue, match="up to a year ahead"):
        check_transfer_date(date(2028, 1, 1), TODAY)


def test_charge_dates_are_recent_and_not_in_the_future() -> None:
    assert check_charge_date(date(2026, 11, 1), TODAY) == date(2026, 11, 1)
    with pytest.raises(InvalidSlotValue, match="in the future"):
        check_charge_date(date(2026, 12, 4), TODAY)
    with pytest.raises(InvalidSlotValue, match="older than 120 days"):
        check_charge_date(date(2026, 1, 1), TODAY)


def test_describe_date() -> None:
    assert describe_date(TODAY, TODAY) == "today"
    assert describe_date(date(2026, 11, 30), TODAY) == "tomorrow"
    assert describe_date(date(2026, 12, 4), TODAY) == "Friday 4 December 2026"


def test_one_recipient_per_transfer() -> None:
    assert parse_recipient("Anna") == "Anna"
    assert parse_recipient("to Emma") == "Emma"
    assert parse_recipient("Li Wei", ["Li Wei"]) == "Li Wei"
    with pytest.raises(InvalidSlotValue, match="you named Anna and Ben"):
        parse_recipient("Ben", ["Anna", "Ben"])
    with pytest.raises(InvalidSlotValue, match="you named Anna and Ben"):
        parse_recipient("Anna and Ben")
    names = ["Grace", "Noah", "Carlos", "Mohammed", "Kwame", "Ava", "Tom"]
    with pytest.raises(InvalidSlotValue, match="list of 7 people"):
        parse_recipient("Tom", names)


@pytest.mark.parametrize(
    "text, message",
    [("me", "person's name"), ("R2D2", "digits"), ("x" * 61, "longer than 60"), ("!!", "name")],
)
def test_bad_recipients(text: str, message: str) -> None:
    with pytest.raises(InvalidSlotValue, match=message):
        parse_recipient(text)


@pytest.mark.parametrize(
    "text, label",
    [
        ("visa card", "Visa card"),
        ("Visa debit card", "Visa debit card"),
        ("Mastercard", "Mastercard"),
        ("virtual card", "virtual card"),
        ("card ending 9876", "card ending in 9876"),
        ("my Mastercard ending in 1122", "Mastercard ending in 1122"),
        ("card that ends in 5566", "card ending in 5566"),
    ],
)
def test_cards(text: str, label: str) -> None:
    assert parse_card(text).label == label


@pytest.mark.parametrize(
    "text, message",
    [
        ("4111 1111 1111 1111", "never send your full card number"),
        ("card ending in 123", "last four digits"),
        ("my library card", "cards with us"),
        ("the blue one", "Which card"),
    ],
)
def test_bad_cards(text: str, message: str) -> None:
    with pytest.raises(InvalidSlotValue, match=message):
        parse_card(text)


def test_top_up_methods() -> None:
    assert parse_top_up_method("Apple Pay") == "Apple Pay"
    assert parse_top_up_method("a bank transfer") == "bank transfer"
    assert parse_top_up_method("my credit card") == "credit card"
    assert parse_top_up_method("card ending in 7788") == "card ending in 7788"
    with pytest.raises(InvalidSlotValue, match="with cash aren't possible"):
        parse_top_up_method("with cash")
    with pytest.raises(InvalidSlotValue, match="Which would you like"):
        parse_top_up_method("dunno")


def test_merchants() -> None:
    assert parse_merchant("at Starbucks") == "Starbucks"
    assert parse_merchant("H&M") == "H&M"
    with pytest.raises(InvalidSlotValue, match="Which shop"):
        parse_merchant("123")
    with pytest.raises(InvalidSlotValue, match="longer than 80"):
        parse_merchant("A" * 81)


@pytest.mark.parametrize(
    "text, start, end, phrase",
    [
        ("fifty-ish", 0, 5, "fifty-ish"),
        ("about 50 euros", 6, 8, "about 50"),
        ("send roughly €20 to Ben", 14, 16, "roughly €20"),
        ("50 or so", 0, 2, "50 or so"),
        ("send 50 euros to Anna, maybe tomorrow", 5, 7, None),
        ("50", 0, 2, None),
    ],
)
def test_vague_phrase_around_an_amount(text: str, start: int, end: int, phrase: str | None) -> None:
    assert vague_phrase(text, start, end) == phrase
