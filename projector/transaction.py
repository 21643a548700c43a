"""One write transaction of the projector's connection, as a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb

from serving.parsed import parsed


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Commits what the block wrote, or rolls it back when the block (or the commit) raises."""
    con.execute(parsed("BEGIN TRANSACTION"))
    try:
        yield
        con.execute(parsed("COMMIT"))
    except BaseException:
        # A failed COMMIT has already ended the transaction, and then ROLLBACK raises too: the error
        # to report (and to show in `status`) is the first one.
        with contextlib.suppress(duckdb.Error):
            con.execute(parsed("ROLLBACK"))
        raise
