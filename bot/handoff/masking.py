"""Mask payment card numbers before anything is stored or shown.

A card number is 13–19 digits, possibly grouped by single spaces or dashes. Every digit but the
last four becomes `*` and separators stay (`4111 1111 1111 1111` → `**** **** **** 1111`), which
is what PCI DSS allows to display. Applied to customers' messages, agents' replies and the NLU
data (entities, text) kept with each message.
"""

from __future__ import annotations

import re
from typing import Any

# 13–19 digits, each optionally followed by one space or dash, not glued to other digits.
_CARD_RE = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")


def _mask_match(match: re.Match[str]) -> str:
    raw = match.group(0)
    digits = sum(ch.isdigit() for ch in raw)
    keep_from = digits - 4
    out, seen = [], 0
    for ch in raw:
        if ch.isdigit():
            out.append(ch if seen >= keep_from else "*")
            seen += 1
        else:
            out.append(ch)
    return "".join(out)


def mask_card_numbers(text: str) -> str:
    """`text` with every card-number-like digit run masked except its last four digits."""
    return _CARD_RE.sub(_mask_match, text)


def mask_value(value: Any) -> Any:
    """Mask card numbers in every string inside a JSON-like value (dicts, lists, scalars)."""
    if isinstance(value, str):
        return mask_card_numbers(value)
    if isinstance(value, dict):
        return {key: mask_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item) for item in value]
    return value
