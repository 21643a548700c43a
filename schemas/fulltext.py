"""English full-text search: one text analysis for the fold (what a turn says) and the API (what `query` asks).

The reference searches with Postgres (`to_tsvector('english', ...) @@ websearch_to_tsquery('english', q)`).
This module reproduces that behaviour without a search engine: words are lower-cased, English stop words
are dropped (their places kept, so phrases still need their words to be adjacent) and the rest are reduced
to their Snowball (Porter 2) stems by PyStemmer, the same stemmer Postgres' `english` configuration uses.

The fold stores each turn's analysed text as `interactions.search_terms`: its stems in order, separated by
single spaces, with `_` in the place of a stop word, and a space at both ends (` resiz the_ volum `). So a
term is the substring ` stem `, a phrase the substring ` stem1 stem2 ` (or a pattern when the query's
phrase skips a stop word), and a request never parses a turn's JSON or runs the stemmer over stored text.

Which text is searched (docs/api.md, "Full-text search"): `user_input`, then the text of the assistant's blocks
in order: the `content` of blocks whose `key` is `markdown`, `code` (fenced with its `tag`, as the
reference indexes it) or `mermaid` (fenced as mermaid), and the `text` of blocks `{"type": "text", ...}`.
Other blocks (offerings, tools, forms, navigation) add nothing.

`query` syntax (websearch): plain words must all occur (AND), `"a quoted phrase"` must occur as
consecutive words, `-word` or `-"phrase"` must not occur, `or` between two items means either. A word
with inner punctuation (`slug-content`, `v1.2`) is the phrase of its parts. A query of stop words only
has no full-text condition: it matches nothing (as Postgres' empty tsquery), except through `user_slug`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import Stemmer

# Postgres' english.stop, which is Snowball's English stop word list.
_STOP_TEXT = """
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it
its itself they them their theirs themselves what which who whom this that these those am is are was were be been
being have has had having do does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on off over under again further
then once here there when where why how all any both each few more most other some such no nor not only own same so
than too very s t can will just don should now
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
GAP = "_"  # a stop word's place in the stored terms; never a stem (stems are letters and digits)
_WORD = re.compile(r"[^\W_]+")
_STEMMER = Stemmer.Stemmer("english")
MAX_ITEMS = 32  # terms and phrases in one query: beyond, a request would build an unreasonably long condition


# Stems of the words seen lately. A plain dict read through `map` costs a fifth of an `lru_cache` call per
# word; emptied when full, so that a long-running server's vocabulary cannot grow it without bound.
STEM_CACHE_MAX = 65536
_STEMS: dict[str, str] = {}
# For ASCII text: A-Z to a-z, a-z and 0-9 kept, every other byte a space. There the words of `_WORD` on the
# lower-cased text are exactly the runs of [a-z0-9] (Unicode's letters and digits that are ASCII), so a
# translate and a split give the same list several times faster than the pattern: the fold analyses every
# turn's text, and the pattern was most of that (bench/README.md, "Where a reader's time goes").
_ASCII_WORDS = bytes(b + 32 if 65 <= b <= 90 else b if 97 <= b <= 122 or 48 <= b <= 57 else 32 for b in range(256))


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased: its runs of letters and digits, in order."""
    if text.isascii():
        return text.encode().translate(_ASCII_WORDS).decode().split()
    return _WORD.findall(text.lower())


def _stem_new(word: str) -> str:
    if len(_STEMS) >= STEM_CACHE_MAX:
        _STEMS.clear()
    stem = _STEMS[word] = GAP if word in STOP_WORDS else str(_STEMMER.stemWord(word))
    return stem


def stems(text: str) -> list[str]:
    """The words of `text`, lower-cased and stemmed, stop words as `GAP`, in order."""
    found = words(text)
    try:
        return list(map(_STEMS.__getitem__, found))
    except KeyError:  # a word not seen lately (a stem is never empty: `or` only stands for the miss)
        return [_STEMS.get(w) or _stem_new(w) for w in found]


def blocks_text(blocks: list[Any]) -> str:
    """The searchable text of assistant blocks, one block per line (see the module docstring)."""
    out: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        key = block.get("key")
        content = block.get("content")
        if isinstance(content, str):
            if key == "markdown":
                out.append(content)
            elif key == "code":
                tag = block.get("tag")
                out.append(f"```{tag if isinstance(tag, str) else ''}\n{content}\n```")
            elif key == "mermaid":
                out.append(f"```mermaid\n{content}\n```")
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            out.append(block["text"])
    return "\n".join(out)


def document_terms(user_input: str, blocks: list[Any]) -> str:
    """What the fold stores in `interactions.search_terms` for one turn."""
    words = stems(user_input)
    words += stems(blocks_text(blocks))
    return f" {' '.join(words)} " if words else " "


# -- queries ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """One term or phrase of a query: its stems in order, `None` for a skipped stop word inside it."""

    stems: tuple[str | None, ...]
    negated: bool

    def substring(self) -> str | None:
        """The stored-text substring that means a match, or None when a gap needs a pattern."""
        if None in self.stems:
            return None
        return f" {' '.join(s for s in self.stems if s is not None)} "

    def pattern(self) -> str:
        """An RE2 pattern for a phrase with gaps: any one word (or stop word) in each gap."""
        parts = [r"\S+" if s is None else re.escape(s) for s in self.stems]
        return " " + " ".join(parts) + " "


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed `query`: a disjunction of conjunctions of items. No clause: no full-text match."""

    clauses: tuple[tuple[Item, ...], ...]

    def items(self) -> int:
        return sum(len(c) for c in self.clauses)


class QueryTooLong(ValueError):
    pass


_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')


def _item(text: str, negated: bool) -> Item | None:
    words: list[str | None] = [None if s == GAP else s for s in stems(text)]
    while words and words[0] is None:
        words.pop(0)
    while words and words[-1] is None:
        words.pop()
    return Item(tuple(words), negated) if words else None


def parse_query(text: str) -> Query:
    """Parses websearch syntax (see the module docstring); raises QueryTooLong past MAX_ITEMS items."""
    clauses: list[list[Item]] = [[]]
    pending_or = False
    for match in _TOKEN.finditer(text):
        dash, phrase, word = match.groups()
        if word is not None and word.lower() == "or":
            pending_or = bool(clauses[-1])
            continue
        if word is not None:
            negated = word.startswith("-") and len(word) > 1
            item = _item(word[1:] if negated else word, negated)
        else:
            item = _item(phrase, bool(dash))
        if item is None:
            continue
        if pending_or:
            clauses.append([])
            pending_or = False
        clauses[-1].append(item)
    query = Query(tuple(tuple(c) for c in clauses if c))
    if query.items() > MAX_ITEMS:
        raise QueryTooLong(f"At most {MAX_ITEMS} search terms and phrases.")
    return query
