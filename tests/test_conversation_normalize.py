"""safety.normalize.fold: obfuscated spellings fold to one key."""

from __future__ import annotations

import pytest

from lifeguard.safety.normalize import contains_phrase, fold, fold_phrase, phrase_pattern, tokens

SECRET_VARIANTS = [
    "secret",
    "SECRET!!!",
    "s3cr3t",
    "5ecr3t",
    "s e c r e t",
    "s.e.c.r.e.t",
    "s-e-c-r-e-t",
    "seeeecreeet",
    "ѕесrеt",  # Cyrillic
    "𝐬𝐞𝐜𝐫𝐞𝐭",  # mathematical bold
    "ｓｅｃｒｅｔ",  # full width
    "ⓢⓔⓒⓡⓔⓣ",  # circled
    "🇸🇪🇨🇷🇪🇹",  # regional indicators
    "se\u200bcr\u200det",  # zero-width characters
    "sécrèt",
    "🤫",
]


@pytest.mark.parametrize("variant", SECRET_VARIANTS)
def test_secret_variants_fold_to_one_word(variant: str) -> None:
    assert fold(variant) == "secret"


def test_numbers_and_amounts_survive() -> None:
    assert fold("I'm 13yo") == "i am 13 years old"
    assert fold("send $500 by 7pm") == "send 500 dolars by 7 pm"
    assert fold("pay 1,000$ now!!") == "pay 1000 dolars now"
    assert fold("what grade r u in") == "what grade are you in"
    assert fold("sn@pch@t") == "snapchat"


def test_phrases_fold_like_text() -> None:
    assert fold_phrase("keep it between us") == fold("kéééép it b3tw33n us")
    assert contains_phrase("pls KEEP it b e t w e e n us ok", "keep it between us")
    assert not contains_phrase("keeping it between usual things", "keep it between us")
    pat = phrase_pattern(["don't tell", "our secret"])
    assert pat.search(fold("this is 0ur s3cret"))
    assert pat.search(fold("DONT TELL"))
    assert phrase_pattern([]).search("anything") is None


def test_output_alphabet() -> None:
    for t in [*SECRET_VARIANTS, "¿Qué tal? 😀 <b>hi</b> ~~ ** ++", ""]:
        for w in tokens(t):
            assert w and all(c.isascii() and (c.islower() or c.isdigit()) for c in w), w
