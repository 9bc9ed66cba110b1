"""Obfuscation folding for text signals: ``fold(text) -> str``.

The folded form is what lexicons and models look at. It undoes the usual tricks used to slip
words past keyword filters, so that ``"s3cr3t"``, ``"s e c r e t"``, ``"seeecret"``,
``"ѕесrеt"`` (Cyrillic), ``"𝐬𝐞𝐜𝐫𝐞𝐭"`` and ``"🤫"`` all fold to ``"secret"``:

1. Unicode NFKC (full-width, mathematical and circled letters, ligatures), case folding,
   accents dropped (``é`` -> ``e``), invisible characters removed (zero-width, soft hyphen,
   variation selectors).
2. Homoglyphs: Cyrillic / Greek / small-capital / enclosed letters that look like Latin letters
   become those letters (English text is assumed; Cyrillic or Greek prose is mangled).
3. A few emoji become words (📸 -> ``photo``, 🤫 -> ``secret``, 💸 -> ``money``, 🎁 -> ``gift``,
   ⏰ -> ``time``); other symbols and punctuation become spaces; apostrophes vanish
   (``don't`` -> ``dont``).
4. Spaced-out letters are joined: a run of 3+ one-character tokens (``s e c r e t``,
   ``s.e.c.r.e.t``) becomes one token, split again into words when it is made of words in
   ``data/vocab.txt`` (``y o u r p a r e n t s`` -> ``your parents``).
5. Leetspeak inside a token that has letters: ``0 1 3 4 5 7 @ $ ! |`` -> ``o i e a s t a s i l``
   (``ph0t0`` -> ``photo``). Numbers stay numbers (``13``), and so do number + unit tokens
   (``13yo`` -> ``13 yo``, ``7pm`` -> ``7 pm``); money amounts read as words
   (``$50`` -> ``50 dollars``).
6. Repeated letters collapse to one (``pleeease`` -> ``plase``, and also ``keep`` -> ``kep``): the
   folded form is a matching key, not prose. Anything matched against folded text (lexicon
   phrases, keyword lists) must be folded with the same function, which :func:`fold_phrase`
   does.
7. Common text-speak becomes words (``u`` -> ``you``, ``ur`` -> ``your``, ``pls`` -> ``please``).

The result is lower-case ASCII words (``[a-z0-9]+``) separated by single spaces.
Pure Python (``str.translate`` and a few regular expressions); a typical chat message folds in
~50 µs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from importlib import resources

__all__ = [
    "contains_phrase",
    "fold",
    "fold_phrase",
    "phrase_pattern",
    "readable",
    "tokens",
]

# --------------------------------------------------------------------------- character tables
_INVISIBLE = [
    *(0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0),
    *range(0x200B, 0x2010),
    *range(0x202A, 0x202F),
    *range(0x2060, 0x2070),
    *range(0xFE00, 0xFE10),
    *range(0xE0100, 0xE01F0),
    *range(0xE0000, 0xE0080),  # tag characters
]

_HOMOGLYPHS: dict[str, str] = {
    # Cyrillic (lower case; text is case-folded first)
    "а": "a", "б": "b", "в": "b", "г": "r", "д": "d", "е": "e", "ё": "e", "ж": "x", "з": "3",
    "и": "u", "й": "u", "к": "k", "л": "n", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p",
    "с": "c", "т": "t", "у": "y", "ф": "o", "х": "x", "ц": "u", "ч": "4", "ш": "w", "щ": "w",
    "ъ": "b", "ы": "bi", "ь": "b", "э": "e", "ю": "io", "я": "r", "є": "e", "ѕ": "s", "і": "i",
    "ї": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "һ": "h", "ɡ": "g", "ү": "y",
    "ґ": "r", "ѵ": "v", "ѡ": "w", "ӧ": "o", "ӓ": "a",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "θ": "o", "ι": "i",
    "κ": "k", "λ": "l", "μ": "u", "ν": "v", "ξ": "e", "ο": "o", "π": "n", "ρ": "p", "σ": "o",
    "ς": "c", "τ": "t", "υ": "u", "φ": "o", "χ": "x", "ψ": "w", "ω": "w", "ϲ": "c", "ϳ": "j",
    # Latin look-alikes and small capitals
    "ı": "i", "ȷ": "j", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ƀ": "b", "ɨ": "i",
    "ʉ": "u", "æ": "ae", "œ": "oe", "ð": "d", "þ": "p", "ſ": "s", "ɑ": "a", "ɩ": "i", "ʋ": "u",
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i",
    "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ǫ": "q", "ʀ": "r",
    "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
    # Armenian / other frequent confusables
    "օ": "o", "ս": "u", "ց": "g", "ո": "n", "հ": "h", "ք": "p", "ɾ": "r",
}  # fmt: skip

_EMOJI_WORDS: dict[str, str] = {
    "📷": "photo", "📸": "photo", "🤳": "photo", "🖼": "photo", "📹": "video", "🎥": "video",
    "🤫": "secret", "🤐": "secret", "🔒": "secret",
    "💰": "money", "💵": "money", "💸": "money", "💲": "money", "🤑": "money", "💳": "money",
    "🎁": "gift",
    "⏰": "time", "⏳": "time", "⌛": "time", "⏱": "time",
}  # fmt: skip


def _letter_ranges() -> dict[int, str]:
    """Enclosed / regional-indicator letters NFKC leaves alone -> a-z."""
    table: dict[int, str] = {}
    for base in (0x1F130, 0x1F150, 0x1F170, 0x1F1E6):  # squared, negative circled/squared, flags
        for i in range(26):
            table[base + i] = " " + chr(ord("a") + i) + " " if base == 0x1F1E6 else chr(97 + i)
    return table


_CHAR_TABLE: dict[int, str | None] = {c: None for c in _INVISIBLE}
_CHAR_TABLE.update({ord(k): v for k, v in _HOMOGLYPHS.items()})
_CHAR_TABLE.update(_letter_ranges())
_CHAR_TABLE.update({ord(k): f" {v} " for k, v in _EMOJI_WORDS.items()})
for _q in "'’‘`´ʼ":  # apostrophes vanish: don't -> dont
    _CHAR_TABLE[ord(_q)] = None

# Leet characters: mapped to letters only inside a token that also has letters.
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
    | {"|": "l", "€": "e", "+": "t", "8": "b", "9": "g"}
)
_CURRENCY = {"$": "dollars", "€": "euros", "£": "pounds"}
_UNIT_SUFFIXES = frozenset(
    [
        "yo",
        "yr",
        "yrs",
        "y",
        "m",
        "f",
        "am",
        "pm",
        "k",
        "st",
        "nd",
        "rd",
        "th",
        "h",
        "hr",
        "hrs",
        "min",
        "mins",
        "s",
        "sec",
        "secs",
        "x",
        "mb",
        "gb",
        "hour",
        "hours",
        "minute",
        "minutes",
        "day",
        "days",
        "week",
        "weeks",
        "dollars",
        "bucks",
        "years",
    ]
)

_TOKEN = re.compile(r"[0-9a-z@$!|€£+]+")
_AMOUNT = re.compile(r"^([$€£])(\d[\d,.]*)$|^(\d[\d,.]*)([$€£])$")
_NUM_UNIT = re.compile(r"^(\d+)([a-z]+)$")
_REPEAT = re.compile(r"([a-z])\1+")
_REPEAT3 = re.compile(r"([a-z])\1{2,}")
_HAS_LETTER = re.compile(r"[a-z]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_EDGE = "!|+@$€£"

_TEXTSPEAK_RAW: dict[str, str] = {
    "u": "you", "ya": "you", "yu": "you", "ur": "your", "youre": "you are", "r": "are",
    "pls": "please", "plz": "please", "pleez": "please", "thx": "thanks", "ty": "thanks",
    "bc": "because", "cuz": "because", "coz": "because", "cos": "because",
    "wanna": "want to", "gonna": "going to", "gotta": "got to", "lemme": "let me",
    "gimme": "give me", "dont": "do not", "doesnt": "does not", "didnt": "did not",
    "cant": "can not", "cannot": "can not", "wont": "will not", "im": "i am", "ive": "i have",
    "n": "and", "b4": "before", "l8r": "later", "gr8": "great", "m8": "mate", "2day": "today",
    "2nite": "tonight", "2moro": "tomorrow", "2morrow": "tomorrow", "tmrw": "tomorrow",
    "tmr": "tomorrow", "ill": "i will", "youll": "you will", "itll": "it will",
    "theyll": "they will", "whats": "what is", "thats": "that is", "youve": "you have",
    "isnt": "is not", "arent": "are not", "wasnt": "was not", "lets": "let us", "4u": "for you", "2u": "to you", "pic": "picture", "pics": "pictures",
    "pix": "pictures", "picz": "pictures", "vid": "video", "vids": "videos", "msg": "message",
    "msgs": "messages", "ppl": "people", "rn": "right now", "asap": "as soon as possible",
    "bday": "birthday", "yrs": "years", "yo": "years old", "y/o": "years old",
}  # fmt: skip


def _collapse(word: str) -> str:
    return _REPEAT.sub(r"\1", word)


def _soft_collapse(word: str) -> str:
    return _REPEAT3.sub(r"\1", word)


def _clean_token(
    tok: str, collapse: Callable[[str], str] = _collapse, speak_table: dict[str, str] | None = None
) -> list[str]:
    """Fold one raw token (already lower-case, homoglyph-mapped) to zero or more words."""
    table = _TEXTSPEAK if speak_table is None else speak_table
    m = _AMOUNT.match(tok)
    if m:
        sym = m.group(1) or m.group(4)
        num = (m.group(2) or m.group(3)).rstrip(".,")
        return [num.replace(",", ""), collapse(_CURRENCY[sym])]
    tok = tok.strip(_EDGE) if not _HAS_LETTER.search(tok.strip(_EDGE)) else tok
    if not tok:
        return []
    if not _HAS_LETTER.search(tok):
        digits = re.sub(r"[^0-9]", " ", tok).split()
        return digits
    m = _NUM_UNIT.match(tok)
    if m and (len(m.group(1)) >= 2 or m.group(2) in _UNIT_SUFFIXES):
        return [m.group(1), *table.get(m.group(2), m.group(2)).split()]
    speak = table.get(tok)
    if speak is not None:
        return speak.split()
    # Trailing "!"/"|" etc. are punctuation, not leet: "secret!!" -> "secret"
    core = tok.rstrip("!|+") or tok
    core = core.lstrip("|+") or core
    core = collapse(core.translate(_LEET))
    core = re.sub(r"[^a-z0-9]", "", core)
    if not core:
        return []
    speak = table.get(core)
    return speak.split() if speak is not None else [core]


def _build_textspeak() -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in _TEXTSPEAK_RAW.items():
        out[k] = " ".join(_collapse(w) for w in v.split())
        out[_collapse(k)] = out[k]
    return out


_TEXTSPEAK = _build_textspeak()
_TEXTSPEAK_SOFT = {
    **_TEXTSPEAK_RAW,
    **{_REPEAT3.sub(r"\1", k): v for k, v in _TEXTSPEAK_RAW.items()},
}


def _join_spaced(raw: list[str]) -> list[tuple[str, bool]]:
    """Join runs of 3+ one-character tokens (``s e c r e t``) that contain 2+ letters; each
    token comes with whether it was joined."""
    out: list[tuple[str, bool]] = []
    i = 0
    n = len(raw)
    while i < n:
        if len(raw[i]) == 1:
            j = i
            while j < n and len(raw[j]) == 1:
                j += 1
            run = raw[i:j]
            if len(run) >= 3 and sum(c.isalpha() for c in run) >= 2:
                out.append(("".join(run), True))
            else:
                out.extend((c, False) for c in run)
            i = j
        else:
            out.append((raw[i], False))
            i += 1
    return out


def _load_vocab() -> frozenset[str]:
    try:
        text = resources.files("lifeguard.safety").joinpath("data/vocab.txt").read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError):  # pragma: no cover - packaging error
        return frozenset()
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and w[0] != "#")


_VOCAB = _load_vocab()
_MAX_WORD = max((len(w) for w in _VOCAB), default=0)


def _segment(word: str) -> list[str]:
    """Split a joined run of spaced letters back into words when it is made of known words
    (``yourparents`` -> ``your parents``, ``aselfie`` -> ``a selfie``); else keep it whole."""
    if word in _VOCAB or not _VOCAB or len(word) > 80:
        return [word]
    n = len(word)
    best: list[list[str] | None] = [None] * (n + 1)
    best[0] = []
    for i in range(1, n + 1):
        for j in range(max(0, i - _MAX_WORD), i):
            prev = best[j]
            piece = word[j:i]
            if prev is not None and (piece in _VOCAB or piece.isdigit()):
                cand = [*prev, piece]
                cur = best[i]
                if cur is None or len(cand) < len(cur):
                    best[i] = cand
    found = best[n]
    return found if found else [word]


def _prepare(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).translate(_CHAR_TABLE).casefold()
    t = unicodedata.normalize("NFKD", t)
    t = "".join(c for c in t if not unicodedata.combining(c))
    return _THOUSANDS.sub("", t.translate(_CHAR_TABLE))


def tokens(text: str) -> list[str]:
    """The folded words of ``text`` (see the module docstring)."""
    out: list[str] = []
    for tok, joined in _join_spaced(_TOKEN.findall(_prepare(text))):
        words = _clean_token(tok)
        if joined and len(words) == 1:
            words = _segment(words[0])
        out.extend(words)
    return out


def readable(text: str) -> str:
    """``text`` de-obfuscated but still prose, for a language model rather than a lexicon:
    steps 1-5 and 7 of :func:`fold`, but only runs of three or more repeated letters collapse
    (``pleeease`` -> ``please``, ``keep`` stays ``keep``) and text-speak keeps its spelling
    (``ur`` -> ``your``)."""
    out: list[str] = []
    for tok, joined in _join_spaced(_TOKEN.findall(_prepare(text))):
        words = _clean_token(tok, _soft_collapse, _TEXTSPEAK_SOFT)
        if joined and len(words) == 1:
            words = _segment(words[0])
        out.extend(words)
    return " ".join(out)


def fold(text: str) -> str:
    """``text`` folded: lower-case ASCII words separated by single spaces, obfuscation undone."""
    return " ".join(tokens(text))


def fold_phrase(phrase: str) -> str:
    """A keyword or phrase folded the same way as text (so ``"keep it"`` -> ``"kep it"``)."""
    return fold(phrase)


def phrase_pattern(phrases: Iterable[str]) -> re.Pattern[str]:
    """One regular expression matching any of ``phrases`` as whole words in folded text."""
    folded = sorted({fold_phrase(p) for p in phrases} - {""}, key=len, reverse=True)
    if not folded:
        return re.compile(r"(?!x)x")
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, folded)) + r")(?![a-z0-9])")


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words once both are folded."""
    return phrase_pattern([phrase]).search(fold(text)) is not None
