"""The fast split of a turn's text into words and stems (schemas/fulltext.py) against their definition.

The definition: the words are the matches of `[^\\W_]+` (runs of Unicode letters and digits) in the
lower-cased text, and each word's stem is Snowball's English stem, or `GAP` for a stop word. ASCII text takes
a byte translation instead of the pattern and stems come from a bounded cache: neither may change a result.
"""

from __future__ import annotations

import re

import pytest
import Stemmer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import fulltext

DEFINITION = re.compile(r"[^\W_]+")
STEMMER = Stemmer.Stemmer("english")

# Mostly what turns contain (ASCII words, digits, punctuation, code), with the characters where a shortcut
# would differ from the pattern: `_` (a word character that is not a word), the Kelvin sign and dotted capital
# I (non-ASCII letters whose lower case is or holds ASCII), superscript and Arabic digits, combining marks,
# and letters of other scripts.
ALPHABET = st.sampled_from(
    list("abcXYZ019 _-.,'\"!?\t\n`#<>/{}()=+*")
    + ["\u212a", "\u0130", "\u00df", "\u00b2", "\u0663", "\u0301", "é", "Ω", "ж"]
)
TEXTS = st.one_of(st.text(alphabet=ALPHABET, max_size=80), st.text(max_size=40))


def defined_stems(text: str) -> list[str]:
    return [fulltext.GAP if w in fulltext.STOP_WORDS else STEMMER.stemWord(w) for w in DEFINITION.findall(text.lower())]


@settings(max_examples=3000, deadline=None)
@given(TEXTS)
def test_words_are_the_pattern_s_matches_in_the_lower_cased_text(text: str) -> None:
    assert fulltext.words(text) == DEFINITION.findall(text.lower())


@settings(max_examples=500, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=20))
def test_stems_match_the_definition_while_the_cache_fills_and_empties(texts: list[str]) -> None:
    # A cache of 5 words, empty at first (whatever other tests left in the real one), empties many times
    # over these texts: a word must stem the same whether its stem was cached, evicted, or never seen.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fulltext, "STEM_CACHE_MAX", 5)
        patch.setattr(fulltext, "_STEMS", {})
        for text in texts + texts:
            assert fulltext.stems(text) == defined_stems(text)
            assert len(fulltext._STEMS) <= 5


def test_the_cache_stays_bounded_over_a_large_vocabulary() -> None:
    for i in range(fulltext.STEM_CACHE_MAX + 100):
        fulltext.stems(f"word{i}")
    assert len(fulltext._STEMS) <= fulltext.STEM_CACHE_MAX
    assert fulltext.stems("Resizing THE volumes, don't!") == ["resiz", "_", "volum", "_", "_"]
