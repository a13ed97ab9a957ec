"""Parse and check the values customers give in the banking forms (pure, no Rasa imports).

Each `parse_*` function returns a canonical value or raises `InvalidSlotValue` whose message is
the re-prompt the customer sees ("fifty-ish" → "I need an exact amount, ..."). The form
validation actions in `actions.forms` are thin wrappers around these.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from actions.errors import ActionServerError
from nlu_components.currencies import currency_code

#: Currencies the (simulated) bank can send.
SUPPORTED_CURRENCIES: tuple[str, ...] = (
    "EUR", "USD", "GBP", "CHF", "PLN", "SEK", "NOK", "DKK", "CZK", "HUF", "RON", "JPY",
    "CAD", "AUD",
)  # fmt: skip

#: Most recipients one request may name before we stop listing them back.
MAX_LISTED_NAMES = 4
MAX_NAME_LENGTH = 60
MAX_MERCHANT_LENGTH = 80
#: How far ahead a transfer can be scheduled, and how old a charge can be disputed.
MAX_SCHEDULE_DAYS = 365
DISPUTE_WINDOW_DAYS = 120


class InvalidSlotValue(ActionServerError):
    """A value the customer gave cannot be used; the message says what to give instead."""


# ---------------------------------------------------------------------------------------------
# amounts

_UNITS = {
    "zero": 0, "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000, "grand": 1000, "k": 1000, "million": 1_000_000}
_VAGUE = re.compile(
    r"\b(about|around|roughly|approximately|approx|some|few|couple|several|or so|ish|maybe|"
    r"nearly|almost|max|up to|at least|more than|less than|under|over)\b|~|-ish|ish\b|\?",
    re.IGNORECASE,
)
_PLAIN = re.compile(r"^\d+(\.\d{1,2})?$")
_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d{1,2})?$")
_EUROPEAN = re.compile(r"^\d{1,3}(\.\d{3})+(,\d{1,2})?$")
_DECIMAL_COMMA = re.compile(r"^\d+,\d{1,2}$")
_NUMERIC_TOKEN = re.compile(r"[\d][\d.,]*")
_SYMBOLS = re.compile(r"[€$£¥]")


def parse_amount(text: str, maximum: Decimal | None = None) -> Decimal:
    """An exact positive amount with at most two decimals ("1,000.50" → 1000.50).

    Accepts digits with thousands separators (1,000.50 or 1.000,50), a decimal comma (12,50),
    number words ("fifty", "two hundred and twenty"), "k" ("2k") and currency symbols or words
    around the number. Rejects vague amounts ("fifty-ish", "about 50"), malformed numbers
    ("1,000.000.5"), zero, negative amounts and amounts above `maximum`.
    """
    raw = " ".join(str(text).split())
    if not raw:
        raise InvalidSlotValue("How much exactly? Please type an amount, like 50 or 49.99.")
    if _VAGUE.search(raw):
        raise InvalidSlotValue(
            f"I need an exact amount for this, not “{raw}”. Please type a number, like 50 or 49.99."
        )
    if raw.lstrip().startswith("-"):
        raise InvalidSlotValue("The amount has to be more than zero. How much should it be?")
    cleaned = _strip_currency(raw)
    value = _number_from_digits(cleaned, raw)
    if value is None:
        value = _number_from_words(cleaned)
    if value is None:
        raise InvalidSlotValue(
            f"I couldn't read “{raw}” as an amount. Please type it like 1000.50 or 1,000.50."
        )
    if value <= 0:
        raise InvalidSlotValue("The amount has to be more than zero. How much should it be?")
    if value != value.quantize(Decimal("0.01")):
        raise InvalidSlotValue(
            f"“{raw}” has more than two decimal places. Please give the amount in cents at most, "
            f"like 12.50."
        )
    if maximum is not None and value > maximum:
        raise InvalidSlotValue(
            f"{format_amount(value)} is above the limit of {format_amount(maximum)} for this. "
            f"Please give a smaller amount."
        )
    return value.quantize(Decimal("0.01"))


_VAGUE_BEFORE = re.compile(
    r"(about|around|roughly|approximately|approx\.?|nearly|almost|some|maybe|like|~)\s*[€$£]?\s*$",
    re.IGNORECASE,
)
_VAGUE_AFTER = re.compile(r"^\s*(-\s*ish|ish\b|or so\b|\?|-?odd\b)", re.IGNORECASE)


def vague_phrase(text: str, start: int, end: int) -> str | None:
    """The vague amount around text[start:end] ("fifty-ish", "about 50"), or None.

    The NLU marks only "fifty" in "fifty-ish"; this looks at the words right around it.
    """
    before = _VAGUE_BEFORE.search(text[max(0, start - 16) : start])
    after = _VAGUE_AFTER.match(text[end : end + 8])
    if not before and not after:
        return None
    begin = start - (len(text[max(0, start - 16) : start]) - before.start()) if before else start
    finish = end + after.end() if after else end
    return text[begin:finish].strip()


def format_amount(value: Decimal) -> str:
    """Two decimals with thousands separators: 1234.5 → "1,234.50"."""
    return f"{value:,.2f}"


def _strip_currency(text: str) -> str:
    words = []
    for word in _SYMBOLS.sub(" ", text).split():
        if currency_code(word) is None:
            words.append(word)
    return " ".join(words)


def _number_from_digits(text: str, raw: str) -> Decimal | None:
    tokens = _NUMERIC_TOKEN.findall(text)
    if not tokens:
        return None
    if len(tokens) > 1:
        raise InvalidSlotValue(
            f"I see more than one number in “{raw}”. Which single amount should I use?"
        )
    token = tokens[0].rstrip(".,")
    rest = text.replace(tokens[0], " ").lower().split()
    multiplier = Decimal(1)
    for word in rest:
        if word in _SCALES:
            multiplier *= _SCALES[word]
        elif word in _UNITS and word not in {"a", "an"}:
            return None  # "5 hundred and twenty": let the caller report it unreadable
    # "2k", "1.5k"
    if token[-1:].lower() == "k":
        token, multiplier = token[:-1], multiplier * 1000
    if re.fullmatch(r"\d{1,3}\.\d{3}", token):
        # "12.345": twelve thousand (European) or twelve point three four five?
        raise InvalidSlotValue(
            f"“{raw}” could mean {token.replace('.', ',')} or {token}. Please write the amount "
            f"without a thousands dot, with at most two decimals, like 12345 or 12.35."
        )
    if _PLAIN.match(token):
        number = token
    elif _THOUSANDS.match(token):
        number = token.replace(",", "")
    elif _EUROPEAN.match(token):
        number = token.replace(".", "").replace(",", ".")
    elif _DECIMAL_COMMA.match(token):
        number = token.replace(",", ".")
    else:
        raise InvalidSlotValue(
            f"I couldn't read “{raw}” as an amount. Please type it like 1000.50 or 1,000.50."
        )
    try:
        return Decimal(number) * multiplier
    except InvalidOperation:
        return None


def _number_from_words(text: str) -> Decimal | None:
    words = [w for w in re.split(r"[\s-]+", text.lower()) if w and w != "and"]
    if not words:
        return None
    total = current = 0
    seen = False
    for word in words:
        if word in _UNITS:
            current += _UNITS[word]
            seen = True
        elif word in _SCALES and seen:
            scale = _SCALES[word]
            if scale == 100:
                current *= scale
            else:
                total += current * scale
                current = 0
        else:
            return None
    return Decimal(total + current) if seen else None


# ---------------------------------------------------------------------------------------------
# currencies


def parse_currency(text: str) -> str:
    """ISO code of a supported currency ("euros" → "EUR")."""
    code = currency_code(str(text))
    supported = ", ".join(SUPPORTED_CURRENCIES)
    if code is None:
        raise InvalidSlotValue(
            f"I don't know the currency “{text}”. I can send {supported}. Which one should it be?"
        )
    if code not in SUPPORTED_CURRENCIES:
        raise InvalidSlotValue(
            f"Sorry, I can't send {code}. I can send {supported}. Which one should it be?"
        )
    return code


# ---------------------------------------------------------------------------------------------
# dates

_WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
_WEEKDAYS.update({name.lower(): i for i, name in enumerate(calendar.day_abbr)})
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_MONTHS["sept"] = 9
_ORDINAL = r"(\d{1,2})(?:st|nd|rd|th)?"
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "a": 1, "an": 1, "ten": 10, "fourteen": 14, "thirty": 30}  # fmt: skip


def parse_date(text: str, today: date) -> date:
    """A calendar date from "today", "next Friday", "in 3 days", "12 May", "2026-05-12", ...

    A date without a year is the next such date for future-looking phrases; callers that want
    a past date use `parse_past_date`.
    """
    return _parse_date(text, today, prefer_past=False)


def parse_past_date(text: str, today: date) -> date:
    """Like `parse_date`, but a bare weekday or day-month means the most recent one."""
    return _parse_date(text, today, prefer_past=True)


def _parse_date(text: str, today: date, prefer_past: bool) -> date:
    raw = " ".join(str(text).split())
    phrase = re.sub(r"^(on|for|by|at|from|the)\s+", "", raw.lower().strip(" .,!?"))
    phrase = re.sub(r"^(on|the)\s+", "", phrase)
    relative = {
        "today": 0, "now": 0, "right now": 0, "asap": 0, "immediately": 0, "tonight": 0,
        "this evening": 0, "this morning": 0, "this afternoon": 0,
        "tomorrow": 1, "tomorrow morning": 1, "tomorrow evening": 1,
        "day after tomorrow": 2, "the day after tomorrow": 2,
        "yesterday": -1, "day before yesterday": -2, "the day before yesterday": -2,
        "next week": 7, "last week": -7,
    }  # fmt: skip
    if phrase in relative:
        return today + timedelta(days=relative[phrase])
    match = re.fullmatch(r"in (\w+) (day|days|week|weeks)", phrase)
    if match and _count(match.group(1)) is not None:
        days = _count(match.group(1)) * (7 if match.group(2).startswith("week") else 1)  # type: ignore[operator]
        return today + timedelta(days=days)
    match = re.fullmatch(r"(\w+) (day|days|week|weeks) ago", phrase)
    if match and _count(match.group(1)) is not None:
        days = _count(match.group(1)) * (7 if match.group(2).startswith("week") else 1)  # type: ignore[operator]
        return today - timedelta(days=days)
    match = re.fullmatch(r"(next|this|coming|last|past)?\s*([a-z]+)", phrase)
    if match and match.group(2) in _WEEKDAYS:
        return _weekday(today, _WEEKDAYS[match.group(2)], match.group(1), prefer_past)
    iso = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", phrase)
    if iso:
        return _make_date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)), raw)
    numeric = re.fullmatch(r"(\d{1,2})[./](\d{1,2})(?:[./](\d{2,4}))?", phrase)
    if numeric:  # day first (European): 12/05 = 12 May
        day, month = int(numeric.group(1)), int(numeric.group(2))
        return _with_year(day, month, numeric.group(3), today, prefer_past, raw)
    match = re.fullmatch(rf"{_ORDINAL}(?: of)? ([a-z]+)\.?,?(?: (\d{{4}}))?", phrase)
    if match and match.group(2) in _MONTHS:
        return _with_year(
            int(match.group(1)), _MONTHS[match.group(2)], match.group(3), today, prefer_past, raw
        )
    match = re.fullmatch(rf"([a-z]+)\.? (?:the )?{_ORDINAL},?(?: (\d{{4}}))?", phrase)
    if match and match.group(1) in _MONTHS:
        return _with_year(
            int(match.group(2)), _MONTHS[match.group(1)], match.group(3), today, prefer_past, raw
        )
    day_only = re.fullmatch(rf"{_ORDINAL}", phrase)
    # "the 12th", "on the 3rd", "on 5": a day of this (or the next / previous) month
    if day_only and (not phrase.isdigit() or raw.lower().startswith(("on ", "the "))):
        return _day_of_month(int(day_only.group(1)), today, prefer_past, raw)
    raise InvalidSlotValue(
        f"I didn't understand the date “{raw}”. You can say things like “tomorrow”, "
        f"“next Friday”, “12 May” or “2026-05-12”."
    )


def _day_of_month(day: int, today: date, prefer_past: bool, raw: str) -> date:
    candidate = _make_date_or_none(today.year, today.month, day)
    if candidate is not None and (candidate <= today if prefer_past else candidate >= today):
        return candidate
    year, month = _add_month(today.year, today.month, -1 if prefer_past else 1)
    return _make_date(year, month, day, raw)


def _count(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    return _NUMBER_WORDS.get(word)


def _weekday(today: date, weekday: int, modifier: str | None, prefer_past: bool) -> date:
    if modifier in {"last", "past"} or (prefer_past and modifier is None):
        back = (today.weekday() - weekday) % 7 or 7
        if modifier is None and today.weekday() == weekday:
            back = 0
        return today - timedelta(days=back)
    ahead = (weekday - today.weekday()) % 7
    if modifier == "next" and ahead == 0:
        ahead = 7
    return today + timedelta(days=ahead)


def _with_year(
    day: int, month: int, year: str | None, today: date, prefer_past: bool, raw: str
) -> date:
    if year:
        full = int(year) + (2000 if len(year) == 2 else 0)
        return _make_date(full, month, day, raw)
    candidate = _make_date(today.year, month, day, raw)
    if prefer_past and candidate > today:
        candidate = _make_date(today.year - 1, month, day, raw)
    elif not prefer_past and candidate < today:
        candidate = _make_date(today.year + 1, month, day, raw)
    return candidate


def _add_month(year: int, month: int, shift: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + shift
    return index // 12, index % 12 + 1


def _make_date_or_none(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _make_date(year: int, month: int, day: int, raw: str) -> date:
    made = _make_date_or_none(year, month, day)
    if made is None:
        raise InvalidSlotValue(f"“{raw}” isn't a date in the calendar. Which day did you mean?")
    return made


def check_transfer_date(value: date, today: date) -> date:
    """A transfer can go out today or on a day within the next year."""
    if value < today:
        raise InvalidSlotValue(
            f"{_capitalised(describe_date(value, today))} is in the past. When should the transfer go out? "
            f"(today or a later day)"
        )
    if value > today + timedelta(days=MAX_SCHEDULE_DAYS):
        raise InvalidSlotValue(
            "I can schedule transfers up to a year ahead. Which earlier day should it be?"
        )
    return value


def check_charge_date(value: date, today: date) -> date:
    """A disputed charge happened today or in the last `DISPUTE_WINDOW_DAYS` days."""
    if value > today:
        raise InvalidSlotValue(
            f"{_capitalised(describe_date(value, today))} is in the future, so there can't be a charge yet. "
            f"On which day were you charged?"
        )
    if value < today - timedelta(days=DISPUTE_WINDOW_DAYS):
        raise InvalidSlotValue(
            f"Charges older than {DISPUTE_WINDOW_DAYS} days can't be disputed here. Please give "
            f"a more recent date, or say “talk to an agent”."
        )
    return value


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe_date(value: date, today: date) -> str:
    """Human form: "today", "tomorrow", or "Friday 12 June 2026"."""
    if value == today:
        return "today"
    if value == today + timedelta(days=1):
        return "tomorrow"
    if value == today - timedelta(days=1):
        return "yesterday"
    return f"{calendar.day_name[value.weekday()]} {value.day} {calendar.month_name[value.month]} {value.year}"


# ---------------------------------------------------------------------------------------------
# people, cards, payment methods, merchants

_NAME_SPLIT = re.compile(r"\s*(?:,|;|&|\band\b|\bplus\b|\+)\s*", re.IGNORECASE)
_NOT_A_NAME = frozenset({"me", "myself", "i", "you", "yourself", "someone", "somebody", "anyone"})


def parse_recipient(text: str, all_names: list[str] | None = None) -> str:
    """One recipient's name; several names or a long list get a clear re-prompt.

    Args:
        text: the slot value (the last recipient the NLU found).
        all_names: every recipient named in the message, to notice "to Anna and Ben".
    """
    names = [n for n in (all_names or []) if n.strip()]
    parts = [p for p in _NAME_SPLIT.split(" ".join(str(text).split())) if p]
    if len(parts) > 1 and len(parts) > len(names):
        names = parts
    unique = list(dict.fromkeys(n.strip() for n in names))
    if len(unique) > MAX_LISTED_NAMES:
        raise InvalidSlotValue(
            f"That's a list of {len(unique)} people. One transfer goes to one person — who "
            f"should receive this one? You can start another transfer afterwards."
        )
    if len(unique) > 1:
        listed = ", ".join(unique[:-1]) + " and " + unique[-1]
        raise InvalidSlotValue(
            f"One transfer goes to one person, and you named {listed}. Who should receive this "
            f"one? You can start another transfer afterwards."
        )
    name = re.sub(r"^(to|for)\s+", "", " ".join(str(text).split()), flags=re.IGNORECASE).strip(
        " .,!?"
    )
    if not name or not re.search(r"[^\W\d_]", name):
        raise InvalidSlotValue("Who should receive the money? Please give their name.")
    if name.lower() in _NOT_A_NAME:
        raise InvalidSlotValue("Who should receive the money? Please give the person's name.")
    if re.search(r"\d", name):
        raise InvalidSlotValue(
            "A name shouldn't contain digits. Who should receive the money? (Their name, please — "
            "I'll look up their account details.)"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidSlotValue(
            f"That name is longer than {MAX_NAME_LENGTH} characters. Please give just the "
            f"recipient's name."
        )
    return name


@dataclass(frozen=True)
class CardRef:
    """A customer's card as the customer described it."""

    label: str
    last_digits: str | None = None


_CARD_KINDS = (
    "virtual",
    "disposable",
    "physical",
    "credit",
    "debit",
    "visa",
    "mastercard",
    "business",
)
_NOT_BANK_CARDS = frozenset(
    {
        "library",
        "gift",
        "loyalty",
        "sim",
        "id",
        "identity",
        "membership",
        "business's",
        "student",
        "rail",
    }
)


def parse_card(text: str) -> CardRef:
    """Which card: "my visa card ending in 4321" → "Visa card ending in 4321"."""
    raw = " ".join(str(text).split())
    digits = re.sub(r"[\s-]", "", raw)
    if re.search(r"\d{12,19}", digits):
        raise InvalidSlotValue(
            "Please never send your full card number in a chat. The last four digits are "
            "enough — which card is it?"
        )
    lower = raw.lower()
    words = set(re.findall(r"[a-z']+", lower))
    if words & _NOT_BANK_CARDS:
        raise InvalidSlotValue(
            "I can only block or freeze your cards with us. Which of your bank cards is it (for "
            "example “my Visa debit card” or “the card ending in 4321”)?"
        )
    last = None
    match = re.search(r"(?:ending|ends|end)\s*(?:in|with|on)?\s*(\d+)|\b(\d{3,6})\b", lower)
    if match:
        last = match.group(1) or match.group(2)
        if len(last) != 4:
            raise InvalidSlotValue(
                "Please give the last four digits of the card (for example “ending in 4321”)."
            )
    ordered = re.findall(r"[a-z']+", lower)
    kinds = list(dict.fromkeys(w for w in ordered if w in _CARD_KINDS))
    if not kinds and last is None and not words & {"card", "cards"}:
        raise InvalidSlotValue(
            "Which card should it be? For example “my Visa debit card”, “the virtual card” or "
            "“the card ending in 4321”."
        )
    pretty = {"visa": "Visa", "mastercard": "Mastercard"}
    label = " ".join(pretty.get(k, k) for k in kinds)
    if not kinds or words & {"card", "cards"} or kinds[-1] not in pretty:
        label = f"{label} card".strip()
    if last:
        label = f"{label} ending in {last}"
    return CardRef(label=label.strip(), last_digits=last)


TOP_UP_METHODS: dict[str, str] = {
    "apple pay": "Apple Pay",
    "google pay": "Google Pay",
    "bank transfer": "bank transfer",
    "transfer": "bank transfer",
    "wire": "bank transfer",
    "sepa": "bank transfer",
    "card": "card",
    "debit card": "debit card",
    "credit card": "credit card",
    "visa": "Visa card",
    "mastercard": "Mastercard",
}
_UNSUPPORTED_METHODS = ("cash", "cheque", "check", "crypto", "bitcoin", "paypal")


def parse_top_up_method(text: str) -> str:
    """How to top up: card, bank transfer, Apple Pay or Google Pay."""
    lower = " ".join(str(text).lower().split())
    options = "a card, a bank transfer, Apple Pay or Google Pay"
    for word in _UNSUPPORTED_METHODS:
        if re.search(rf"\b{word}\b", lower):
            raise InvalidSlotValue(
                f"Top-ups with {word} aren't possible in the app. You can top up with {options}. "
                f"Which would you like?"
            )
    for key in sorted(TOP_UP_METHODS, key=len, reverse=True):
        if re.search(rf"\b{re.escape(key)}\b", lower):
            method = TOP_UP_METHODS[key]
            ending = re.search(r"(?:ending|ends)\s*(?:in|with)?\s*(\d{4})\b", lower)
            return f"{method} ending in {ending.group(1)}" if ending else method
    raise InvalidSlotValue(f"You can top up with {options}. Which would you like?")


def parse_merchant(text: str) -> str:
    """The merchant's name as the customer wrote it (1–80 characters with a letter)."""
    name = re.sub(r"^(at|from|by|to)\s+", "", " ".join(str(text).split()), flags=re.IGNORECASE)
    name = name.strip(" .,!?\"'")
    if not re.search(r"[^\W\d_]", name):
        raise InvalidSlotValue(
            "Which shop or company charged you? Please give its name as it appears on your "
            "statement."
        )
    if len(name) > MAX_MERCHANT_LENGTH:
        raise InvalidSlotValue(
            f"That's longer than {MAX_MERCHANT_LENGTH} characters. Please give just the "
            f"merchant's name as it appears on your statement."
        )
    return name
