"""Keeps `sessions`, `user_stats` and `daily_counters` up to date with each batch, inside its transaction.

`sessions` rows of the touched sessions are replaced (DELETE + INSERT), computed from their old rows and the
batch's new turns and first reviews, which is right whatever order events arrive in (a late, older turn
can move a session's first turn); a tie on a session's first instant is recomputed from `interactions`.
`user_stats` and `daily_counters` are kept by deltas (`Deltas`) instead, so that a live batch costs the
size of its own rows, not of the table: every turn a batch updates is counted out as it stood and in as
it stands after, a new turn is only counted in. Both come from rows the fold already holds (a new turn's
own row, the lookup of the turns that feedback, reviews and clicks apply to), never from reading the
counted turns back: that read scanned the whole uuid column of `interactions`, ~12 ms twice per batch
at a million turns. A turn's user, created day and insertion-time columns never change, so that is
exact too. Turns are only deleted by an erasure or the retention purge (projector/forget.py), which
then recounts the rows of the keys they touched (`recount`). The definitions follow docs/api.md (by-user)
and the column comments of schemas/readmodel.py (daily counters).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from projector import batch_counts, session_plan
from projector.arrow_views import arrow_with, execute_with
from projector.keysets import execute_in, where_in
from serving.parsed import parsed

_REFRESH_SESSIONS = """
INSERT INTO sessions
SELECT
    session_id,
    first(user_slug ORDER BY created, uuid) AS user_slug,
    min(created) AS first_created,
    max(created) AS last_created,
    count(*) AS turns,
    count(llm_reviewed_at) AS reviewed_turns
FROM interactions
WHERE session_id IN (SELECT unnest(?::VARCHAR[]))
GROUP BY session_id
"""

_TURN_COUNTER_COLUMNS = [
    "turns",
    "flagged",
    "severity_none",
    "severity_low",
    "severity_medium",
    "severity_high",
    "severity_critical",
    "clicks",
    "feedback_up",
    "feedback_down",
    "clarifications",
    "turn_input_tokens",
    "turn_output_tokens",
    "reviewed",
    "review_score_sum",
    "hallucinations",
    "review_input_tokens",
    "review_output_tokens",
]
_USER_COUNTER_COLUMNS = [
    "total_interactions",
    "positive_feedback",
    "negative_feedback",
    "no_feedback",
    "injection_strikes",
]
_SEVERITIES = batch_counts.SEVERITIES
# The columns of a turn that feedback, reviews and clicks change: what `Deltas.change_turns` counts of
# each updated turn, as `before_<column>` and `after_<column>` (`batch_counts.changed_turn_counts`). The
# turns reviewed for the first time, per session, are counted by the sessions step (`session_plan.plan`).
TURN_STATE = batch_counts.TURN_STATE


# The sessions step: the touched sessions are planned from their stored rows, looked up by key
# (`_STORED_SESSIONS`), and the batch's own rows by Arrow kernels (projector/session_plan.py); the plan's
# rows are written by statements (`_DELETE_TOUCHED_SESSIONS`, `_INSERT_PLANNED_SESSIONS` from the
# `session_plan` lent to it), a session to recount from `interactions` (`_REFRESH_SESSIONS`).
_DELETE_SESSIONS = "DELETE FROM sessions WHERE session_id IN (SELECT unnest(?::VARCHAR[]))"
_STORED_SESSIONS = "SELECT * FROM sessions WHERE session_id IN ({})"
_DELETE_TOUCHED_SESSIONS = "DELETE FROM sessions WHERE session_id IN ({})"
_INSERT_PLANNED_SESSIONS = """
INSERT INTO sessions BY NAME
SELECT session_id, user_slug, first_created, last_created, turns, reviewed_turns FROM session_plan WHERE NOT recount
"""
_NEW_FIRST_DAYS = """
SELECT CAST(first_created AS DATE), count(*) FROM sessions
WHERE session_id IN (SELECT unnest(?::VARCHAR[]))
GROUP BY 1
"""
# session_count: a (user, session) pair of a new turn counts if the file had no turn of it yet
# (`session_plan.new_pairs`). Certain when the session had no row; when its first turn is another
# user's, only `interactions` can say (`_KNOWN_PAIRS`, over the lent `new_pairs` and
# `batch_new_turns`), which is rare; a pair with the session's first user is known.
_KNOWN_PAIRS = """
SELECT DISTINCT user_slug, session_id FROM interactions
WHERE session_id IN (SELECT session_id FROM new_pairs WHERE unsure)
  AND uuid NOT IN (SELECT uuid::UUID FROM batch_new_turns)
"""

DAY_COLUMNS = [
    "turns",
    "sessions_started",
    *_TURN_COUNTER_COLUMNS[1:],
    "usage_input_tokens",
    "usage_output_tokens",
    "usage_events",
    "erased_tokens",
    "erased_turns",
]
USER_COLUMNS = [*_USER_COUNTER_COLUMNS, "session_count"]
_DAY_DELTA = pa.decimal128(38, 0)
# UPDATE ... FROM then INSERT of the new keys: a few times cheaper in DuckDB than INSERT ... ON CONFLICT. The
# UPDATE returns the keys it found, so that the INSERT runs only when some are new: a live batch seldom
# brings a new day or visitor.
_ADD_DAY_DELTAS = (
    "UPDATE daily_counters SET "
    + ", ".join(f"{c} = daily_counters.{c} + d.{c}" for c in DAY_COLUMNS)
    + " FROM day_deltas d WHERE daily_counters.day = d.day RETURNING daily_counters.day"
)
_INSERT_NEW_DAYS = (
    "INSERT INTO daily_counters BY NAME SELECT * FROM day_deltas d ANTI JOIN daily_counters c USING (day)"
)
_ADD_USER_DELTAS = (
    "UPDATE user_stats SET last_seen = greatest(user_stats.last_seen, u.last_seen), "
    + ", ".join(f"{c} = user_stats.{c} + u.{c}" for c in USER_COLUMNS)
    + " FROM user_deltas u WHERE user_stats.user_slug = u.user_slug RETURNING user_stats.user_slug"
)
_INSERT_NEW_USERS = (
    "INSERT INTO user_stats BY NAME SELECT * FROM user_deltas u ANTI JOIN user_stats s USING (user_slug)"
)


class Deltas:
    """What one batch changes in daily_counters and user_stats, as differences of exact counts."""

    def __init__(self) -> None:
        self.by_day: dict[date, dict[str, int]] = {}
        self.by_user: dict[str, dict[str, int]] = {}
        self.last_seen: dict[str, datetime] = {}
        # The batch's new turns (uuid, user_slug, session_id, created), and its updated turns before and
        # after (`changed_turns`), as Arrow tables: the sessions step reads them set-wise.
        self.new_turns: list[pa.Table] = []
        self.changed_turns: list[pa.Table] = []

    # Called for every turn of a catch-up batch: a fresh dict per call for setdefault cost ~4 us a turn.
    def _day(self, day: date) -> dict[str, int]:
        row = self.by_day.get(day)
        if row is None:
            row = self.by_day[day] = dict.fromkeys(DAY_COLUMNS, 0)
        return row

    def _user(self, slug: str) -> dict[str, int]:
        row = self.by_user.get(slug)
        if row is None:
            row = self.by_user[slug] = dict.fromkeys(USER_COLUMNS, 0)
        return row

    def add_new_turns(self, turns: pa.Table) -> None:
        """Counts in the batch's new `turns` (rows as inserted: no feedback, review or clicks; `change_turns`
        then adds whatever the batch did to them), summed per day and per user over the batch's own rows
        (`batch_counts.new_turn_counts`): reading them back from `interactions` would scan its whole uuid
        column, and counting them one by one in Python cost a catch-up batch ~3 us a turn."""
        days, users = batch_counts.new_turn_counts(turns)
        self._add_to_days(days.to_pylist(), batch_counts.NEW_DAY_COLUMNS)
        for row in users.to_pylist():
            slug = row["user_slug"]
            if not slug:  # anonymous turns have no user_stats row
                continue
            user = self._user(slug)
            user["total_interactions"] += row["total_interactions"]
            user["injection_strikes"] += row["injection_strikes"]
            user["no_feedback"] += row["total_interactions"]  # a new turn's feedback is none
            self._seen(slug, row["last_seen"])

    def change_turns(self, changed: pa.Table) -> None:
        """The turns of `changed` (each updated turn as it stood and as the batch leaves it, `TURN_STATE`):
        counted out and in (`batch_counts.changed_turn_counts`). Their user, day and the columns set at
        insertion never change, so only the counters of `TURN_STATE` can move. A day or user gets deltas
        only when one of its turns changed at all, as their zeros would insert a row."""
        self.changed_turns.append(changed)
        days, users = batch_counts.changed_turn_counts(changed)
        self._add_to_days([row for row in days.to_pylist() if row["changed"]], batch_counts.CHANGED_DAY_COLUMNS)
        for row in users.to_pylist():
            slug = row["user_slug"]
            if not slug:  # anonymous turns have no user_stats row
                continue
            self._seen(slug, row["last_created"])
            if row["changed"]:
                counts = self._user(slug)
                for column in batch_counts.CHANGED_USER_COLUMNS:
                    counts[column] += int(row[column])

    def _add_to_days(self, rows: list[dict[str, Any]], columns: Iterable[str]) -> None:
        """Adds each row's `columns` (a kernel's sums, `batch_counts`) to its `day`'s counters."""
        for row in rows:
            counts = self._day(row["day"])
            for column in columns:
                counts[column] += int(row[column])

    def _seen(self, slug: str, created: datetime) -> None:
        if slug:
            last = self.last_seen.get(slug)
            self.last_seen[slug] = created if last is None else max(last, created)

    def add_erased(self, day: date, tokens: int) -> None:
        """A turn erased before it was stored: its tokens stay in the day's budget (docs/api.md)."""
        row = self._day(day)
        row["erased_tokens"] += tokens
        row["erased_turns"] += 1

    def add_usage(self, day: date, input_tokens: int, output_tokens: int) -> None:
        row = self._day(day)
        row["usage_input_tokens"] += input_tokens
        row["usage_output_tokens"] += output_tokens
        row["usage_events"] += 1

    def sessions_started(self, rows: Iterable[tuple[date, int]], sign: int) -> None:
        for day, n in rows:
            self._day(day)["sessions_started"] += sign * int(n)

    def write(self, con: duckdb.DuckDBPyConnection) -> None:
        days = sorted(self.by_day)
        if days:
            columns = {"day": pa.array(days, pa.date32())}
            # DECIMAL(38, 0): a day's token sums may pass 2^63 (each event's count is a BIGINT).
            columns.update({c: pa.array([self.by_day[d][c] for d in days], _DAY_DELTA) for c in DAY_COLUMNS})
            day_deltas = pa.table(columns)
            if len(execute_with(con, _ADD_DAY_DELTAS, day_deltas=day_deltas).fetchall()) < len(days):
                execute_with(con, _INSERT_NEW_DAYS, day_deltas=day_deltas)
        slugs = sorted(self.by_user)
        if slugs:
            columns = {"user_slug": pa.array(slugs, pa.string())}
            columns["last_seen"] = pa.array([self.last_seen[s] for s in slugs], pa.timestamp("us"))
            columns.update({c: pa.array([self.by_user[s][c] for s in slugs], pa.int64()) for c in USER_COLUMNS})
            user_deltas = pa.table(columns)
            if len(execute_with(con, _ADD_USER_DELTAS, user_deltas=user_deltas).fetchall()) < len(slugs):
                execute_with(con, _INSERT_NEW_USERS, user_deltas=user_deltas)


def refresh(con: duckdb.DuckDBPyConnection, *, sessions: Iterable[str], deltas: Deltas) -> None:
    """Brings the rows of the touched sessions up to date and adds `deltas` (whose turns the caller
    already counted out and in); call inside the batch's transaction, after its facts are written.
    The sessions' rows come from their old rows and the batch's new turns and first reviews, planned by
    Arrow kernels over the batch (projector/session_plan.py): recomputing them from `interactions` read
    every turn of each, ~10 ms a batch, walking them in Python cost a catch-up batch ~5 us a turn, and
    as statements over Arrow tables the planning cost a live batch ~20 ms of binding alone."""
    touched = sorted(set(sessions))
    if touched:
        new = _concat(deltas.new_turns, _NEW_TURN_COLUMNS)
        plan = _session_plan(con, touched, new, deltas)
        deltas.sessions_started(session_plan.first_day_moves(plan), 1)
        execute_in(con, _DELETE_TOUCHED_SESSIONS, touched)
        execute_with(con, _INSERT_PLANNED_SESSIONS, session_plan=plan)
        recount = pc.filter(plan["session_id"], plan["recount"]).to_pylist()
        if recount:
            con.execute(parsed(_REFRESH_SESSIONS), [recount])
            deltas.sessions_started(con.execute(parsed(_NEW_FIRST_DAYS), [recount]).fetchall(), 1)
        if new.num_rows:
            _count_user_sessions(con, deltas, new, plan)
    deltas.write(con)


# The columns of a new turn the sessions step reads (`Deltas.new_turns`), and of an updated one.
_NEW_TURN_COLUMNS = pa.schema(
    [("uuid", pa.string()), ("user_slug", pa.string()), ("session_id", pa.string()), ("created", pa.timestamp("us"))]
)
_REVIEW_COLUMNS = pa.schema(
    [
        ("session_id", pa.string()),
        ("before_llm_reviewed_at", pa.timestamp("us")),
        ("after_llm_reviewed_at", pa.timestamp("us")),
    ]
)


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The rows of `tables`, only the columns of `schema` (an empty table of it when there is none)."""
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])


def _session_plan(con: duckdb.DuckDBPyConnection, touched: list[str], new: pa.Table, deltas: Deltas) -> pa.Table:
    """The plan of the touched sessions (`session_plan.plan`), one row each, from the batch's `new` turns
    and updated ones. Their stored rows are looked up by key first (`projector.keysets`): joined in a
    statement, the whole `sessions` table was read."""
    statement, params = where_in(_STORED_SESSIONS, touched)
    stored = arrow_with(con, statement, params)
    return session_plan.plan(touched, stored, new, _concat(deltas.changed_turns, _REVIEW_COLUMNS))


def _count_user_sessions(con: duckdb.DuckDBPyConnection, deltas: Deltas, new: pa.Table, plan: pa.Table) -> None:
    """session_count of each user with a new (user, session) pair (`session_plan.new_pairs`); the pairs
    `interactions` may already know are read only when some are unsure (`_KNOWN_PAIRS`)."""
    pairs = session_plan.new_pairs(new, plan)
    if not pairs.num_rows:
        return
    known = _NO_PAIRS
    if pc.any(pairs["unsure"]).as_py():
        known = arrow_with(con, _KNOWN_PAIRS, new_pairs=pairs, batch_new_turns=new)
    for slug, n in session_plan.session_counts(pairs, known):
        deltas._user(slug)["session_count"] += n


_NO_PAIRS = pa.schema([("user_slug", pa.string()), ("session_id", pa.string())]).empty_table()


# -- recounting after turns were removed (projector/forget.py) ---------------------------------------
# Removing turns is rare (erasures, the retention purge), so the rows of the keys they touched are
# recomputed from what is left rather than kept by deltas: the same definitions as the deltas above.

_RECOUNT_DAYS = f"""
UPDATE daily_counters SET {", ".join(f"{c} = r.{c}" for c in ["turns", *_TURN_COUNTER_COLUMNS[1:]])}
FROM (
    SELECT
        d.day,
        count(i.uuid) AS turns,
        count(i.uuid) FILTER (WHERE i.is_flagged) AS flagged,
        {", ".join(f"count(i.uuid) FILTER (WHERE i.severity = '{s}') AS severity_{s}" for s in _SEVERITIES)},
        coalesce(sum(i.click_count), 0) AS clicks,
        count(i.uuid) FILTER (WHERE i.fb_score = 1) AS feedback_up,
        count(i.uuid) FILTER (WHERE i.fb_score = -1) AS feedback_down,
        count(i.uuid) FILTER (WHERE i.is_clarification) AS clarifications,
        coalesce(sum(i.input_tokens), 0) AS turn_input_tokens,
        coalesce(sum(i.output_tokens), 0) AS turn_output_tokens,
        count(i.llm_reviewed_at) AS reviewed,
        coalesce(sum(i.llm_resolution_score) FILTER (WHERE i.llm_reviewed_at IS NOT NULL), 0) AS review_score_sum,
        count(i.uuid) FILTER (WHERE i.llm_reviewed_at IS NOT NULL AND i.llm_hallucination_detected) AS hallucinations,
        coalesce(sum(i.llm_input_tokens), 0) AS review_input_tokens,
        coalesce(sum(i.llm_output_tokens), 0) AS review_output_tokens
    FROM (SELECT unnest(?::DATE[]) AS day) d
    LEFT JOIN interactions i ON i.created_date = d.day
    GROUP BY d.day
) r
WHERE daily_counters.day = r.day
"""
_RECOUNT_SESSIONS_STARTED = """
UPDATE daily_counters SET sessions_started = (
    SELECT count(*) FROM sessions s WHERE CAST(s.first_created AS DATE) = daily_counters.day
)
WHERE day IN (SELECT unnest(?::DATE[]))
"""
_DELETE_USERS = "DELETE FROM user_stats WHERE user_slug IN (SELECT unnest(?::VARCHAR[]))"
_RECOUNT_USERS = """
INSERT INTO user_stats
SELECT
    user_slug,
    max(created) AS last_seen,
    count(*) AS total_interactions,
    count(DISTINCT session_id) AS session_count,
    count(*) FILTER (WHERE fb_score = 1) AS positive_feedback,
    count(*) FILTER (WHERE fb_score = -1) AS negative_feedback,
    count(*) FILTER (WHERE fb_score IS NULL) AS no_feedback,
    count(*) FILTER (WHERE action_taken IN ('block', 'redact')) AS injection_strikes
FROM interactions
WHERE user_slug IN (SELECT unnest(?::VARCHAR[]))
GROUP BY user_slug
"""
_FIRST_DAYS = """
SELECT DISTINCT CAST(first_created AS DATE) FROM sessions WHERE session_id IN (SELECT unnest(?::VARCHAR[]))
"""


def recount(
    con: duckdb.DuckDBPyConnection, *, days: Iterable[date], sessions: Iterable[str], users: Iterable[str]
) -> None:
    """After turns of `days`, `sessions` and `users` were deleted from `interactions` (and their clicks):
    their sessions, user_stats and daily_counters rows recomputed from the turns that are left. A
    session whose first turn went moves its `sessions_started` to the new first day."""
    sessions = sorted(set(sessions))
    touched_days = set(days)
    if sessions:
        touched_days.update(d for (d,) in con.execute(parsed(_FIRST_DAYS), [sessions]).fetchall())
        con.execute(parsed(_DELETE_SESSIONS), [sessions])
        con.execute(parsed(_REFRESH_SESSIONS), [sessions])
        touched_days.update(d for (d,) in con.execute(parsed(_FIRST_DAYS), [sessions]).fetchall())
    day_list = sorted(touched_days)
    if day_list:
        con.execute(parsed(_RECOUNT_DAYS), [day_list])
        con.execute(parsed(_RECOUNT_SESSIONS_STARTED), [day_list])
    users = sorted({u for u in users if u})  # anonymous turns have no user_stats row
    if users:
        con.execute(parsed(_DELETE_USERS), [users])
        con.execute(parsed(_RECOUNT_USERS), [users])
