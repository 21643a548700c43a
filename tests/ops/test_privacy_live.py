"""Erasure and retention end to end: a real broker, `serve` as a subprocess, the admin endpoint, the
`erase` command, and a rebuild from offset 0 that must give the served file's tables.

The fold-level rules (every table, every order of arrival) are in tests/projector/test_forget.py and
tests/projector/test_fold_property.py; here, what an operator sees through the API, `status` and /metrics.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from projector import forget
from projector.fold import apply_batch
from projector.snapshot import diff, table_rows
from schemas.readmodel import connect
from tests.support import REPO
from tests.support.api_data import AUTH, PREFIX
from tests.support.events import feedback, turn
from tests.support.kafka import publish, read_back
from tests.support.privacy import IP, VISITOR, everything_stored, spanning_days, visitor_story
from tests.support.serve import Server, wait_for

FEEDBACKS = "/api/anonymous-chat-feedbacks"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def end_offsets(bootstrap_servers: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: int(o) for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def caught_up(http: httpx.Client, bootstrap_servers: str, topic: str) -> Callable[[], bool]:
    """The served file holds every record the topic has now."""

    def check() -> bool:
        ends = end_offsets(bootstrap_servers, topic)
        body = http.get("/readyz").json()
        positions = {p["partition"]: p["position"] for p in body.get("partitions", [])}
        return bool(positions) and all(positions.get(p, 0) >= end for p, end in ends.items())

    return check


def test_an_erasure_through_the_admin_endpoint_leaves_nothing_and_a_rebuild_agrees(
    bootstrap_servers: str, topic: str, tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    events, story = visitor_story()
    erase_at = events.index(story["erase"])
    before, after = events[:erase_at], events[erase_at + 1 :]
    publish(bootstrap_servers, topic, before)
    server = start_server(topic, tmp_path / "rm.duckdb")
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=60) as http:
        wait_for(caught_up(http, bootstrap_servers, topic), "the first events", server.proc)
        assert len(http.get(f"{PREFIX}/by-user/{VISITOR}/").json()) == 2
        waiting = http.get("/api/admin/status/").json()["pending_events"]
        assert waiting == 2, "feedback and a click wait for their turn"

        # Refused before anything is published: both keys, neither, a reason too long, no staff token.
        ends = end_offsets(bootstrap_servers, topic)
        both = http.post("/api/admin/erasures/", json={"user_slug": VISITOR, "session_id": "sess-a"})
        assert both.status_code == 400 and set(both.json()) == {"user_slug", "session_id"}
        assert http.post("/api/admin/erasures/", json={}).status_code == 400
        long_reason = http.post("/api/admin/erasures/", json={"session_id": "s", "reason": "x" * 501})
        assert long_reason.status_code == 400 and list(long_reason.json()) == ["reason"]
        assert httpx.post(f"{server.base}/api/admin/erasures/", json={"session_id": "s"}).status_code == 401
        assert end_offsets(bootstrap_servers, topic) == ends

        answer = http.post("/api/admin/erasures/", json={"user_slug": VISITOR, "reason": "visitor asked"})
        assert answer.status_code == 202, answer.text
        event_id = answer.json()["event_id"]
        # What arrives after the erasure but occurred before it (on other partitions too), then a turn
        # of the same visitor that occurred after it.
        publish(bootstrap_servers, topic, after)
        new_turn = turn("sess-new", at=datetime.now(UTC) + timedelta(seconds=1), user_slug=VISITOR, user_input="hi")
        publish(
            bootstrap_servers, topic, [new_turn, feedback(new_turn, 1, at=datetime.now(UTC) + timedelta(seconds=2))]
        )
        wait_for(caught_up(http, bootstrap_servers, topic), "the erasure and what came after", server.proc)

        listed = http.get(f"{PREFIX}/", params={"user_slug": VISITOR}).json()
        assert [row["uuid"] for row in listed] == [new_turn["data"]["interaction_uuid"]]
        assert len(http.get(f"{PREFIX}/by-user/{VISITOR}/").json()) == 1
        for session in ("sess-a", "sess-b", "sess-c"):
            assert http.get(f"{PREFIX}/by-session/{session}/").json() == []
        for event in events:
            if (
                isinstance(event, dict)
                and event.get("type") == "chat.turn.recorded"
                and event["data"]["user_slug"] == VISITOR
            ):
                uuid = event["data"]["interaction_uuid"]
                assert http.get(f"{PREFIX}/{uuid}/").status_code == 404
                assert http.get(f"{FEEDBACKS}/{uuid}/").status_code == 404
        everything = json.dumps(
            [
                http.get(f"{PREFIX}/", params={"page_size": 1000}).json(),
                http.get(f"{PREFIX}/conversations/").json(),
                http.get(f"{FEEDBACKS}/").json(),
                http.get(f"{PREFIX}/by-user/").json(),
                http.get("/api/admin/dead-letters/").json(),
            ]
        )
        for secret in ("SECRET", IP, "sess-a", "sess-b", "sess-c"):
            assert secret not in everything, secret
        # The unfiltered KPI (from the aggregates) equals the KPI over the turns themselves.
        assert (
            http.get(f"{PREFIX}/kpi/").json()
            == http.get(f"{PREFIX}/kpi/", params={"created_from": "2000-01-01"}).json()
        )

        records = http.get("/api/admin/erasures/").json()
        assert [(r["event_id"], r["key"], r["reason"], r["rows_removed"]) for r in records] == [
            (event_id, VISITOR, "visitor asked", 5)
        ]
        status = http.get("/api/admin/status/").json()
        assert status["pending_events"] == 0 and status["privacy"]["erasures_applied"] == 1
        metrics = http.get("/metrics").text
        assert "chat_analytics_privacy_erasures_applied_total 1" in metrics
        # a1, a2 removed; b1, c1 and the turn at 12:00 (all before the erasure) dropped on arrival
        assert "chat_analytics_privacy_erasure_rows_removed_total 5" in metrics
        text = cli("status", "--url", server.base, "--token", AUTH["Authorization"].split()[1])
        assert "erasures applied:   1 (5 turns removed)" in text.stdout, text.stdout + text.stderr
        # The command line through the server: same checks, same event.
        token = AUTH["Authorization"].split()[1]
        refused = cli("erase", "--session-id", "x" * 65, "--url", server.base, "--token", token)
        assert refused.returncode == 2 and "--session-id" in refused.stderr
        through = cli("erase", "--session-id", "sess-nobody", "--url", server.base, "--token", token)
        assert through.returncode == 0 and f"via {server.base}" in through.stdout, through.stderr
        wait_for(lambda: len(http.get("/api/admin/erasures/").json()) == 2, "the second erasure", server.proc)
    assert server.stop() == 0

    served = connect(server.db, read_only=True)
    assert "SECRET" not in everything_stored(served)
    served_rows = table_rows(served)
    served.close()
    # A rebuild from offset 0, whatever the interleaving of the partitions, reaches the same tables.
    rebuilt = tmp_path / "rebuilt.duckdb"
    result = cli("rebuild", "--db", str(rebuilt), "--bootstrap-servers", bootstrap_servers, "--topic", topic)
    assert result.returncode == 0, result.stderr
    assert diff(table_rows(connect(rebuilt, read_only=True)), served_rows) == {}


def test_erase_command_publishes_keyed_by_what_it_erases_and_refuses_bad_requests(
    bootstrap_servers: str, topic: str
) -> None:
    broker = ["--bootstrap-servers", bootstrap_servers, "--topic", topic]
    both = cli("erase", "--user-slug", VISITOR, "--session-id", "s", *broker)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    long_reason = cli("erase", "--session-id", "s", "--reason", "x" * 501, *broker)
    assert (
        long_reason.returncode == 2
        and "--reason" in long_reason.stderr
        and "nothing was published" in long_reason.stderr
    )
    assert cli("erase", "--ip", "203.0.113.7", *broker, env={"CHAT_ANALYTICS_USER_SLUG_SALT": ""}).returncode == 2
    assert sum(end_offsets(bootstrap_servers, topic).values()) == 0

    by_user = cli("erase", "--user-slug", VISITOR, "--reason", "asked by mail", *broker)
    by_session = cli("erase", "--session-id", "sess-x", *broker)
    by_ip = cli("erase", "--ip", "203.0.113.7", *broker, env={"CHAT_ANALYTICS_USER_SLUG_SALT": "pepper"})
    for result in (by_user, by_session, by_ip):
        assert result.returncode == 0 and "erasure requested: event" in result.stdout, result.stderr
    records = read_back(bootstrap_servers, topic)
    values = {json.loads(r.value)["event_id"]: (r.key, json.loads(r.value)["data"]) for r in records}
    assert len(values) == 3
    keys = {key: data for key, data in values.values()}
    assert keys[VISITOR.encode()] == {"user_slug": VISITOR, "reason": "asked by mail"}
    assert keys[b"sess-x"] == {"session_id": "sess-x"}
    from ingest.slug import user_slug

    assert user_slug("203.0.113.7", "pepper").encode() in keys


def test_retention_serves_only_the_last_days_and_a_rebuild_agrees(
    bootstrap_servers: str,
    topic: str,
    tmp_path: Path,
    start_server: Callable[..., Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    today = datetime.now(UTC).date()
    events = spanning_days(120, today=today)
    publish(bootstrap_servers, topic, events)
    monkeypatch.setenv("CHAT_ANALYTICS_RETENTION_DAYS", "90")
    server = start_server(topic, tmp_path / "rm.duckdb")
    horizon = today - timedelta(days=90)
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=60) as http:
        wait_for(caught_up(http, bootstrap_servers, topic), "the 120 days", server.proc)
        oldest = http.get(f"{PREFIX}/", params={"o": "created", "page_size": 1}).json()[0]["created"]
        assert oldest[:10] >= horizon.isoformat()
        total = int(http.get(f"{PREFIX}/", params={"page_size": 1}).headers["x-result-count"])
        since_ever = {"created_from": "2000-01-01"}
        assert total == int(http.get(f"{PREFIX}/", params={"page_size": 1, **since_ever}).headers["x-result-count"])
        assert http.get(f"{PREFIX}/kpi/").json() == http.get(f"{PREFIX}/kpi/", params=since_ever).json()
        assert http.get(f"{PREFIX}/by-user/").json() == http.get(f"{PREFIX}/by-user/", params=since_ever).json()
        conversations = http.get(f"{PREFIX}/conversations/").json()
        assert conversations and all(c["started"][:10] >= horizon.isoformat() for c in conversations)
        feedbacks = http.get(f"{FEEDBACKS}/").json()
        assert feedbacks and all(f["modified_at"][:10] >= horizon.isoformat() for f in feedbacks)
        privacy = http.get("/api/admin/status/").json()["privacy"]
        assert privacy["retention_horizon"] == horizon.isoformat() and privacy["turns_purged_by_retention"] > 100
        assert "chat_analytics_privacy_turns_purged_total" in http.get("/metrics").text
    assert server.stop() == 0

    served = connect(server.db, read_only=True)
    served_rows = table_rows(served)
    served.close()
    # The same log folded in one go, then purged: the tables `serve` holds.
    reference = connect(tmp_path / "reference.duckdb")
    log = read_back(bootstrap_servers, topic)
    assert min(json.loads(r.value)["occurred_at"] for r in log if r.value.startswith(b"{"))[:10] < horizon.isoformat()
    apply_batch(reference, log)
    forget.purge(reference, 90)
    assert diff(table_rows(reference), served_rows) == {}
    # And so does `chat-analytics rebuild` of the topic under the same policy.
    rebuilt = tmp_path / "rebuilt.duckdb"
    result = cli("rebuild", "--db", str(rebuilt), "--bootstrap-servers", bootstrap_servers, "--topic", topic)
    assert result.returncode == 0, result.stderr
    assert diff(table_rows(connect(rebuilt, read_only=True)), served_rows) == {}


def test_topic_create_follows_the_policy_and_status_warns_when_the_topic_differs(
    bootstrap_servers: str, tmp_path: Path, make_topic: Callable[..., str]
) -> None:
    from kafka import KafkaAdminClient

    from broker.topics import topic_retention

    name = f"policy-{tmp_path.name[-20:]}".replace("_", "-")
    ninety = {"CHAT_ANALYTICS_RETENTION_DAYS": "90"}
    created = cli("topic", "create", "--bootstrap-servers", bootstrap_servers, "--topic", name, env=ninety)
    assert created.returncode == 0 and "retention.ms=7862400000" in created.stdout, created.stdout + created.stderr
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        assert topic_retention(admin, name) == {
            "retention.ms": str(91 * 86_400_000),
            "retention.bytes": "-1",
            "cleanup.policy": "delete",
        }
        # A longer policy: the topic now keeps less than the read model needs; refused, then --update.
        longer = {"CHAT_ANALYTICS_RETENTION_DAYS": "120"}
        refused = cli("topic", "create", "--bootstrap-servers", bootstrap_servers, "--topic", name, env=longer)
        assert refused.returncode == 2 and "less than the read model needs" in refused.stderr
        db = tmp_path / "rm.duckdb"
        connect(db).close()
        status = cli("status", "--db", str(db), "--bootstrap-servers", bootstrap_servers, "--topic", name, env=longer)
        assert "WARNING" in status.stdout and "less than the read model needs" in status.stdout, status.stdout
        updated = cli(
            "topic", "create", "--update", "--bootstrap-servers", bootstrap_servers, "--topic", name, env=longer
        )
        assert updated.returncode == 0, updated.stderr
        assert topic_retention(admin, name)["retention.ms"] == str(121 * 86_400_000)
        # Back to 90 days: now the topic keeps more than the policy allows.
        status = cli("status", "--db", str(db), "--bootstrap-servers", bootstrap_servers, "--topic", name, env=ninety)
        assert "longer than CHAT_ANALYTICS_RETENTION_DAYS" in status.stdout, status.stdout
        forever = {"CHAT_ANALYTICS_RETENTION_DAYS": "-1"}
        assert (
            cli(
                "topic", "create", "--update", "--bootstrap-servers", bootstrap_servers, "--topic", name, env=forever
            ).returncode
            == 0
        )
        kept_forever = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
        assert topic_retention(admin, name) == kept_forever
        status = cli("status", "--db", str(db), "--bootstrap-servers", bootstrap_servers, "--topic", name, env=forever)
        assert "WARNING" not in status.stdout and "retention policy:   keep everything" in status.stdout
    finally:
        admin.delete_topics([name])
        admin.close()
