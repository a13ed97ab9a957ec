"""Currency words, codes and symbols → ISO 4217 codes (pure, no dependencies).

Shared by the frame rules (`nlu_components.roles`) and the form validation actions
(`actions.form_values`), so both recognise the same currencies.
"""

from __future__ import annotations

#: Lower-cased currency words, codes and symbols → ISO 4217 code.
CURRENCIES: dict[str, str] = {
    "euro": "EUR", "euros": "EUR", "eur": "EUR", "€": "EUR",
    "dollar": "USD", "dollars": "USD", "usd": "USD", "$": "USD", "bucks": "USD", "us$": "USD",
    "us dollars": "USD", "american dollars": "USD",
    "pound": "GBP", "pounds": "GBP", "gbp": "GBP", "£": "GBP", "quid": "GBP", "sterling": "GBP",
    "british pounds": "GBP", "pounds sterling": "GBP",
    "franc": "CHF", "francs": "CHF", "chf": "CHF", "swiss francs": "CHF",
    "yen": "JPY", "jpy": "JPY", "¥": "JPY",
    "zloty": "PLN", "zlotys": "PLN", "złoty": "PLN", "pln": "PLN",
    "krona": "SEK", "kronor": "SEK", "sek": "SEK", "swedish krona": "SEK",
    "krone": "NOK", "kroner": "NOK", "nok": "NOK", "dkk": "DKK", "danish krone": "DKK",
    "cad": "CAD", "canadian dollars": "CAD", "aud": "AUD", "australian dollars": "AUD",
    "nzd": "NZD", "inr": "INR", "rupee": "INR", "rupees": "INR",
    "yuan": "CNY", "cny": "CNY", "rmb": "CNY", "rouble": "RUB", "ruble": "RUB", "rub": "RUB",
    "czk": "CZK", "koruna": "CZK", "huf": "HUF", "forint": "HUF", "ron": "RON", "lei": "RON",
    "try": "TRY", "lira": "TRY", "mxn": "MXN", "peso": "MXN", "pesos": "MXN", "brl": "BRL",
    "real": "BRL", "reais": "BRL", "zar": "ZAR", "rand": "ZAR", "hkd": "HKD", "sgd": "SGD",
    "won": "KRW", "krw": "KRW",
}  # fmt: skip

#: Words that are ordinary English too: a currency only right next to a number ("50 rand").
AMBIGUOUS_WORDS: frozenset[str] = frozenset({"try", "real", "won", "rand", "ron", "lei"})


def currency_code(text: str) -> str | None:
    """ISO code of a currency word, code or symbol ("euros" → "EUR"); None if unknown."""
    key = " ".join(text.strip().lower().split())
    if key in CURRENCIES:
        return CURRENCIES[key]
    if len(key) == 3 and key.upper() in set(CURRENCIES.values()):
        return key.upper()
    return None
