"""Card numbers are masked to their last four digits; other numbers are left alone."""

from __future__ import annotations

import pytest

from bot.handoff.masking import mask_card_numbers, mask_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my card is 4111111111111111", "my card is ************1111"),
        ("4111 1111 1111 1111 was stolen", "**** **** **** 1111 was stolen"),
        ("card 5500-0000-0000-0004.", "card ****-****-****-0004."),
        ("amex 3782 822463 10005", "amex **** ****** *0005"),
        ("13 digits 4222222222222", "13 digits *********2222"),
        ("19 digits 6011000990139424123", "19 digits ***************4123"),
    ],
)
def test_card_numbers_are_masked(text: str, expected: str) -> None:
    assert mask_card_numbers(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "send 250.00 EUR on 2025-01-31",
        "my PIN is 1234 and my phone 0151 2345678",  # 11 digits: not a card
        "order 123456789012",  # 12 digits
        "reference 123456789012345678901234",  # 24 digits glued: not a card number
    ],
)
def test_other_numbers_are_kept(text: str) -> None:
    assert mask_card_numbers(text) == text


def test_two_cards_in_one_message() -> None:
    assert mask_card_numbers("old 4111111111111111 new 5500000000000004") == (
        "old ************1111 new ************0004"
    )


def test_mask_value_walks_json() -> None:
    value = {"entities": [{"entity": "card", "value": "4111 1111 1111 1111"}], "n": 3, "ok": None}
    assert mask_value(value) == {
        "entities": [{"entity": "card", "value": "**** **** **** 1111"}],
        "n": 3,
        "ok": None,
    }
