"""A consistent copy of a served read-model file, taken while it is served and folded.

The copy is one DuckDB transaction on a cursor of the serving connection: `COPY FROM DATABASE` into a
new file ATTACHed for the purpose. A transaction reads one snapshot, so the copy holds exactly the rows
of one projector commit, with the `offsets` that commit stored: a replica started on it folds on from
there. The projector keeps committing meanwhile (its transactions are not this one), and requests keep
being answered; the copy holds a read lease, so a blue/green switch waits for it to end.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from schemas.readmodel import sql_text, stored_offsets
from serving.handle import ReadModelHandle


def copy_read_model(handle: ReadModelHandle, dest: Path, topic: str) -> tuple[int, dict[int, int]]:
    """Copies the served file into the new file `dest`; returns its read-model version and the stored
    offsets of `topic` in it. `dest` must not exist (DuckDB would attach the file that is there)."""
    if dest.exists() or Path(f"{dest}.wal").exists():
        raise FileExistsError(f"{dest} exists")
    alias = f"copy_{uuid.uuid4().hex}"
    quoted = sql_text(str(dest))  # DuckDB takes no parameter for ATTACH's path: ours, never a user's
    with handle.reading() as cur:
        ((source,),) = cur.execute("SELECT current_database()").fetchall()
        cur.execute(f"ATTACH {quoted} AS {alias}")
        try:
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.execute(f'COPY FROM DATABASE "{source}" TO {alias}')
                offsets = stored_offsets(cur, topic)
                version = handle.version
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            # Detaching checkpoints and closes the copy: one self-contained file, no write-ahead log.
            cur.execute(f"DETACH {alias}")
    return version, offsets
