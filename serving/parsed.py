"""SQL text parsed once per process, for the statements that run on every request and every fold batch.

DuckDB 2.0 parses each statement it is given as text with its PEG parser, and that is no small part of
what a short statement costs: `SELECT 1` about 0.17 ms of CPU of its ~0.35, a retrieve's `SELECT` of 33
formatted columns ~0.6 ms, the fold's `conversations` refresh ~3.5 ms, every time
(bench/README.md, "Statements parsed once"). `parsed(sql)` returns the statement as DuckDB parsed it,
remembered by its text; `execute` and `sql` of any connection or cursor take it in place of the text,
with the same parameters, and copy it before binding, so one parsed statement serves any number of
threads and connections, and a replacement scan (a table lent by `projector.arrow_views`) still finds
the caller's variables at binding.

Only parsing is saved: binding, planning and running happen at each execution as before, so a parsed
statement gives exactly the rows its text gives. The texts are the code's own (SQL chosen among fixed
shapes, user values always parameters), so the cache holds a bounded number of them.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import duckdb

# Texts remembered: the fixed statements, and the shapes built from them (filters, IN lists of up to
# `projector.keysets.IN_LIST_MAX` placeholders, ranges), least recently used dropped beyond that. A parsed
# statement takes ~30 KiB on average (the 300 IN lists of 1 to 300 keys: 8.8 MiB), a 300-key one 61 KiB,
# so the cache stays under ~32 MiB; the statements run on every request or batch stay recent in it.
MAX_TEXTS = 512

# Parsing needs no catalog: an empty in-memory database of this process's own, so that no served file's
# connection is held while a text is parsed. One caller at a time (DuckDB connections are not for
# concurrent use); a text is parsed once, then served from the cache.
_parser = duckdb.connect()
_lock = threading.Lock()


def text_of(statement: str | duckdb.Statement) -> str:
    """The SQL text of a statement given as text or `parsed`."""
    return statement if isinstance(statement, str) else statement.query


@lru_cache(maxsize=MAX_TEXTS)
def parsed(sql: str) -> duckdb.Statement:
    """The one statement of `sql`, parsed (a ValueError when `sql` holds several, or none); a syntax
    error raises DuckDB's ParserException as executing the text would."""
    with _lock:
        statements = _parser.extract_statements(sql)
    if len(statements) != 1:
        raise ValueError(f"parsed() takes one statement, got {len(statements)}")
    return statements[0]
