"""Keeps `sessions`, `user_stats` and `daily_counters` up to date with each batch, inside its transaction.

`sessions` rows of the touched sessions are rebuilt from `interactions` (DELETE + INSERT ... SELECT), which
is right whatever order events arrive in (a late, older turn can move a session's first turn).
`user_stats` and `daily_counters` are kept by deltas (`Deltas`) instead, so that a live batch costs the
size of its own rows, not of the table: every turn a batch updates is counted out as it stood and in as
it stands after, a new turn is only counted in. Turns are never deleted and their user and created day
never change, so that is exact too. The definitions follow API.md (by-user) and the column comments of
schemas/readmodel.py (daily counters).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime

import duckdb
import pyarrow as pa

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
WHERE session_id IN (SELECT session_id FROM touched_sessions)
GROUP BY session_id
"""

# What a set of turns contributes, per created day to the turn counters of daily_counters and per user
# to user_stats: one scan of the set's rows for both (grouping sets), found by primary key.
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
_TURN_COUNTERS = """
SELECT
    grouping(created_date) AS by_user,
    created_date,
    user_slug,
    max(created),
    count(*),
    count(*) FILTER (WHERE is_flagged),
    count(*) FILTER (WHERE severity = 'none'),
    count(*) FILTER (WHERE severity = 'low'),
    count(*) FILTER (WHERE severity = 'medium'),
    count(*) FILTER (WHERE severity = 'high'),
    count(*) FILTER (WHERE severity = 'critical'),
    coalesce(sum(click_count), 0),
    count(*) FILTER (WHERE fb_score = 1),
    count(*) FILTER (WHERE fb_score = -1),
    count(*) FILTER (WHERE is_clarification),
    coalesce(sum(input_tokens), 0),
    coalesce(sum(output_tokens), 0),
    count(llm_reviewed_at),
    coalesce(sum(llm_resolution_score) FILTER (WHERE llm_reviewed_at IS NOT NULL), 0),
    count(*) FILTER (WHERE llm_reviewed_at IS NOT NULL AND llm_hallucination_detected),
    coalesce(sum(llm_input_tokens), 0),
    coalesce(sum(llm_output_tokens), 0),
    count(*) FILTER (WHERE fb_score IS NULL OR fb_score NOT IN (1, -1)),
    count(*) FILTER (WHERE action_taken IN ('block', 'redact'))
FROM interactions
WHERE uuid IN (SELECT uuid::UUID FROM counted_turns)
GROUP BY GROUPING SETS ((created_date), (user_slug))
"""

# The touched sessions as the file holds them before this batch: their first day and first user.
_OLD_SESSIONS = """
SELECT session_id, user_slug, CAST(first_created AS DATE) FROM sessions
WHERE session_id IN (SELECT session_id FROM touched_sessions)
"""
_NEW_FIRST_DAYS = """
SELECT CAST(first_created AS DATE), count(*) FROM sessions
WHERE session_id IN (SELECT session_id FROM touched_sessions)
GROUP BY 1
"""
# Only when a batch's turn has another user than its session's first turn.
_KNOWN_PAIRS = """
SELECT DISTINCT user_slug, session_id FROM interactions
WHERE session_id IN (SELECT session_id FROM unsure_sessions) AND uuid NOT IN (SELECT uuid::UUID FROM batch_turns)
"""

DAY_COLUMNS = [
    "turns",
    "sessions_started",
    *_TURN_COUNTER_COLUMNS[1:],
    "usage_input_tokens",
    "usage_output_tokens",
    "usage_events",
]
USER_COLUMNS = [*_USER_COUNTER_COLUMNS, "session_count"]
# UPDATE ... FROM then INSERT of the new keys: a few times cheaper in DuckDB than INSERT ... ON CONFLICT.
_ADD_DAY_DELTAS = (
    "UPDATE daily_counters SET "
    + ", ".join(f"{c} = daily_counters.{c} + d.{c}" for c in DAY_COLUMNS)
    + " FROM day_deltas d WHERE daily_counters.day = d.day"
)
_INSERT_NEW_DAYS = (
    "INSERT INTO daily_counters BY NAME SELECT * FROM day_deltas d ANTI JOIN daily_counters c USING (day)"
)
_ADD_USER_DELTAS = (
    "UPDATE user_stats SET last_seen = greatest(user_stats.last_seen, u.last_seen), "
    + ", ".join(f"{c} = user_stats.{c} + u.{c}" for c in USER_COLUMNS)
    + " FROM user_deltas u WHERE user_stats.user_slug = u.user_slug"
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
        self.new_turns: list[tuple[str, str, str]] = []  # (uuid, user_slug, session_id) of the batch's new turns

    def _day(self, day: date) -> dict[str, int]:
        return self.by_day.setdefault(day, dict.fromkeys(DAY_COLUMNS, 0))

    def _user(self, slug: str) -> dict[str, int]:
        return self.by_user.setdefault(slug, dict.fromkeys(USER_COLUMNS, 0))

    def _turns(self, con: duckdb.DuckDBPyConnection, uuids: Iterable[str], sign: int) -> None:
        uuids = sorted(set(uuids))
        if not uuids:
            return
        con.register("counted_turns", pa.table({"uuid": pa.array(uuids, pa.string())}))
        try:
            rows = con.execute(_TURN_COUNTERS).fetchall()
        finally:
            con.unregister("counted_turns")
        for by_user, day, slug, last, *values in rows:
            if by_user:
                if not slug:  # anonymous turns have no user_stats row
                    continue
                user = self._user(slug)
                user["total_interactions"] += sign * int(values[0])
                user["positive_feedback"] += sign * int(values[8])
                user["negative_feedback"] += sign * int(values[9])
                user["no_feedback"] += sign * int(values[18])
                user["injection_strikes"] += sign * int(values[19])
                if sign > 0:
                    self.last_seen[slug] = max(last, self.last_seen.get(slug, last))
            else:
                row = self._day(day)
                for column, value in zip(_TURN_COUNTER_COLUMNS, values[:18], strict=True):
                    row[column] += sign * int(value)

    def subtract_turns(self, con: duckdb.DuckDBPyConnection, uuids: Iterable[str]) -> None:
        """Counts out turns about to be updated, as they stand now."""
        self._turns(con, uuids, -1)

    def add_turns(self, con: duckdb.DuckDBPyConnection, uuids: Iterable[str]) -> None:
        """Counts in turns new or updated in this batch, as they stand after it."""
        self._turns(con, uuids, 1)

    def add_usage(self, day: date, input_tokens: int, output_tokens: int) -> None:
        row = self._day(day)
        row["usage_input_tokens"] += input_tokens
        row["usage_output_tokens"] += output_tokens
        row["usage_events"] += 1

    def sessions_started(self, rows: Iterable[tuple[date, int]], sign: int) -> None:
        for day, n in rows:
            self._day(day)["sessions_started"] += sign * int(n)

    def add_user_sessions(self, con: duckdb.DuckDBPyConnection, old: dict[str, str]) -> None:
        """session_count: a (user, session) pair of a new turn counts if the file had no turn of it yet."""
        pairs = {(slug, session) for _, slug, session in self.new_turns if slug}
        unsure = sorted({s for slug, s in pairs if s in old and old[s] != slug})
        known = {(old[s], s) for _, s in pairs if s in old}
        if unsure:
            con.register("unsure_sessions", pa.table({"session_id": pa.array(unsure, pa.string())}))
            con.register("batch_turns", pa.table({"uuid": pa.array([u for u, _, _ in self.new_turns], pa.string())}))
            try:
                known.update(con.execute(_KNOWN_PAIRS).fetchall())
            finally:
                con.unregister("unsure_sessions")
                con.unregister("batch_turns")
        for slug, _ in pairs - known:
            self._user(slug)["session_count"] += 1

    def write(self, con: duckdb.DuckDBPyConnection) -> None:
        days = sorted(self.by_day)
        if days:
            columns = {"day": pa.array(days, pa.date32())}
            columns.update({c: pa.array([self.by_day[d][c] for d in days], pa.int64()) for c in DAY_COLUMNS})
            con.register("day_deltas", pa.table(columns))
            try:
                con.execute(_ADD_DAY_DELTAS)
                con.execute(_INSERT_NEW_DAYS)
            finally:
                con.unregister("day_deltas")
        slugs = sorted(self.by_user)
        if slugs:
            columns = {"user_slug": pa.array(slugs, pa.string())}
            columns["last_seen"] = pa.array([self.last_seen[s] for s in slugs], pa.timestamp("us"))
            columns.update({c: pa.array([self.by_user[s][c] for s in slugs], pa.int64()) for c in USER_COLUMNS})
            con.register("user_deltas", pa.table(columns))
            try:
                con.execute(_ADD_USER_DELTAS)
                con.execute(_INSERT_NEW_USERS)
            finally:
                con.unregister("user_deltas")


def refresh(con: duckdb.DuckDBPyConnection, *, sessions: Iterable[str], deltas: Deltas) -> None:
    """Rebuilds the rows of the touched sessions and adds `deltas` (whose turns the caller already
    counted out and in); call inside the batch's transaction, after its facts are written."""
    sessions = sorted(set(sessions))
    old: dict[str, str] = {}
    if sessions:
        con.register("touched_sessions", pa.table({"session_id": pa.array(sessions, pa.string())}))
        try:
            before = con.execute(_OLD_SESSIONS).fetchall()
            old = {session: slug for session, slug, _ in before}
            # A session's first day can move when an older turn arrives late: its old day loses it.
            deltas.sessions_started(Counter(day for _, _, day in before).items(), -1)
            con.execute("DELETE FROM sessions WHERE session_id IN (SELECT session_id FROM touched_sessions)")
            con.execute(_REFRESH_SESSIONS)
            deltas.sessions_started(con.execute(_NEW_FIRST_DAYS).fetchall(), 1)
        finally:
            con.unregister("touched_sessions")
    deltas.add_user_sessions(con, old)
    deltas.write(con)
