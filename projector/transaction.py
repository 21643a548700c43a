"""One write transaction of the projector's connection, as a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb

from serving.changes import COMMITS
from serving.parsed import parsed


@dataclass(slots=True)
class Commit:
    """What a transaction's block learns once it has committed: `sequence`, the value of
    `serving.changes.COMMITS` right after this COMMIT ended, when no other commit of the process began or
    ended while this transaction ran (then the file holds exactly what the transaction saw); None when
    one did, or before the commit."""

    sequence: int | None = None


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[Commit]:
    """Commits what the block wrote, or rolls it back when the block (or the commit) raises. Every
    COMMIT is counted in `COMMITS` as it starts and as it ends, so that readers holding the mark of an
    earlier commit (`serving.changes.ChangeLog.current`) know it may be out of date from then on."""
    began = COMMITS.value
    con.execute(parsed("BEGIN TRANSACTION"))
    commit = Commit()
    try:
        yield commit
        COMMITS.start()
        try:
            con.execute(parsed("COMMIT"))
        finally:
            ended = COMMITS.end()
        commit.sequence = ended if ended == began + 2 else None
    except BaseException:
        # A failed COMMIT has already ended the transaction, and then ROLLBACK raises too: the error
        # to report (and to show in `status`) is the first one.
        with contextlib.suppress(duckdb.Error):
            con.execute(parsed("ROLLBACK"))
        raise
