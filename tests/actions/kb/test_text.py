"""Query clean-up and the BM25 tokenizer."""

from __future__ import annotations

from actions.kb.text import MAX_QUERY_CHARS, clean_query, stem, tokenize


def test_tokenize_drops_function_words_and_stems() -> None:
    assert tokenize("Why was I charged a fee for my card payments?") == [
        "charg",
        "fee",
        "card",
        "payment",
    ]


def test_stem_merges_inflections() -> None:
    assert stem("charged") == stem("charges") == stem("charge")
    assert stem("cards") == "card"
    assert stem("pin") == "pin"


def test_clean_query_strips_markup_and_caps_length() -> None:
    assert (
        clean_query("<script>alert(1)</script> where is   my card?") == "alert(1) where is my card?"
    )
    assert len(clean_query("card " * 50_000)) <= MAX_QUERY_CHARS
    assert clean_query("   ") == ""
