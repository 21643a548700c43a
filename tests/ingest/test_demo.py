"""The demo traffic generator: deterministic, valid under the real models, the promised mix, sessions
in order, every kind of bad event when asked; and `publish-demo` puts exactly that on the topic."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from cli.main import main
from ingest.demo import BAD_KINDS, DemoTraffic, demo_events
from projector.keysets import id_ranges
from schemas.events import FeedbackSubmitted, OfferingClicked, SessionReviewed, TurnRecorded, UsageRecorded
from schemas.registry import Rejection, parse_events
from tests.support.kafka import read_topic

NOW = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
SAMPLE = 60_000
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def sample() -> list[tuple[bytes, bytes]]:
    return list(DemoTraffic(SAMPLE, seed=42, now=NOW))


@pytest.fixture(scope="module")
def parsed(sample: list[tuple[bytes, bytes]]) -> list[Any]:
    return parse_events([value for _, value in sample])


def turns_of(parsed: list[Any]) -> list[TurnRecorded]:
    return [e for e in parsed if isinstance(e, TurnRecorded)]


def test_it_yields_exactly_the_number_asked_for() -> None:
    assert len(list(DemoTraffic(1234, seed=1, now=NOW))) == 1234
    assert list(DemoTraffic(0, seed=1, now=NOW)) == []
    assert len(DemoTraffic(77)) == 77


def test_the_same_seed_and_now_give_the_same_bytes_and_another_seed_does_not() -> None:
    first = list(DemoTraffic(5000, seed=7, now=NOW, bad_share=0.1))
    assert first == list(DemoTraffic(5000, seed=7, now=NOW, bad_share=0.1))
    assert first == list(demo_events(5000, seed=7, now=NOW, bad_share=0.1))
    assert first != list(DemoTraffic(5000, seed=8, now=NOW, bad_share=0.1))


def test_a_large_sample_is_valid_under_the_real_models(sample: list[tuple[bytes, bytes]], parsed: list[Any]) -> None:
    rejected = [r for r in parsed if isinstance(r, Rejection)]
    assert rejected == []
    kinds = Counter(type(e) for e in parsed)
    assert set(kinds) == {TurnRecorded, FeedbackSubmitted, OfferingClicked, SessionReviewed, UsageRecorded}
    # Keyed as the publisher keys: by session, usage events with an empty key.
    for (key, _), event in zip(sample, parsed, strict=True):
        expected = b"" if isinstance(event, UsageRecorded) else event.data.session_id.encode()
        assert key == expected


def test_times_span_the_last_30_days_and_today_and_never_pass_now(parsed: list[Any]) -> None:
    window_start = datetime(2026, 10, 27, tzinfo=UTC)  # 00:00 UTC, 30 days before today
    times = [e.occurred_at for e in parsed]
    assert min(times) >= window_start and max(times) <= NOW
    days = {t.date() for t in times}
    assert len(days) == 31  # every day of the window has traffic, today included
    last_active = [e.data.last_active_at for e in turns_of(parsed)]
    assert all(t == e.occurred_at for t, e in zip(last_active, turns_of(parsed), strict=True))


def test_sessions_have_1_to_8_turns_from_a_few_hundred_pseudonymous_users(parsed: list[Any]) -> None:
    turns = turns_of(parsed)
    per_session = Counter(t.data.session_id for t in turns)
    assert set(per_session.values()) == set(range(1, 9))
    slugs = {t.data.user_slug for t in turns}
    assert 100 <= len(slugs) <= 300
    assert all(HEX64.match(slug) for slug in slugs)
    # A user keeps one IP, so their turns carry a consistent ip_address.
    ips_per_user = defaultdict(set)
    for t in turns:
        ips_per_user[t.data.user_slug].add(t.data.ip_address)
    assert all(len(ips) == 1 for ips in ips_per_user.values())


def test_the_mix_of_flags_feedback_clarifications_and_tokens(parsed: list[Any]) -> None:
    turns = turns_of(parsed)
    flagged = [t for t in turns if t.data.is_flagged]
    assert 0.03 <= len(flagged) / len(turns) <= 0.07
    assert all(t.data.severity != "none" for t in flagged)
    assert all(t.data.injection_categories or t.data.pii_categories for t in flagged)
    assert any(t.data.injection_categories for t in flagged) and any(t.data.pii_categories for t in flagged)
    assert {"redact", "block"} <= {t.data.action_taken for t in flagged}
    assert all(t.data.severity == "none" and not t.data.injection_categories for t in turns if not t.data.is_flagged)

    feedback = [e for e in parsed if isinstance(e, FeedbackSubmitted)]
    assert 0.15 <= len(feedback) / len(turns) <= 0.25
    positive = [f for f in feedback if f.data.score == 1]
    assert 0.6 <= len(positive) / len(feedback) <= 0.9
    negatives = [f for f in feedback if f.data.score == -1]
    assert len({f.data.category for f in negatives}) == 5

    clarifying = [t for t in turns if any(b.get("type") == "ask_user" for b in t.data.assistant_blocks)]
    assert 0.03 <= len(clarifying) / len(turns) <= 0.15
    assert all(t.data.offering_uuids == [] for t in clarifying)

    assert all(t.data.input_tokens > 0 and t.data.output_tokens > 0 for t in turns)
    usage = [e for e in parsed if isinstance(e, UsageRecorded)]
    assert 0.01 <= len(usage) / len(parsed) <= 0.06


def test_event_ids_are_uuid7_of_when_events_happen_and_a_batch_of_them_lies_in_a_sliver_of_the_id_space() -> None:
    """As a producer makes them (ingest.envelope.new_event_id), so that the projector's duplicate check reads
    only the ids accepted about when a batch's were made (projector/keysets.py, `id_ranges`)."""
    parsed = parse_events([value for _, value in DemoTraffic(20_000, seed=4, now=NOW, bad_share=0.05)])
    events = [e for e in parsed if not isinstance(e, Rejection)]
    assert {e.event_id.version for e in events} == {7}
    # The id's milliseconds are when the event occurred (a re-sent turn keeps its old occurred_at).
    made_at = [abs((e.event_id.int >> 80) - round(e.occurred_at.timestamp() * 1000)) <= 1 for e in events]
    assert sum(made_at) / len(made_at) >= 0.95
    for start in range(0, len(events), 500):
        assert id_ranges(pa.array([str(e.event_id) for e in events[start : start + 500]])) is not None


def test_both_spellings_of_no_severity_are_sent(sample: list[tuple[bytes, bytes]]) -> None:
    severities = Counter(
        json.loads(value)["data"].get("severity", "(absent)") for _, value in sample[:5000] if b"turn.recorded" in value
    )
    assert severities[""] > 0 and severities["none"] > 0 and severities["(absent)"] > 0


def test_each_session_is_in_order_and_refers_only_to_what_came_before(parsed: list[Any]) -> None:
    turn_at: dict[Any, int] = {}
    offerings: dict[Any, set[Any]] = {}
    session_of: dict[Any, str] = {}
    last_turn_of_session: dict[str, Any] = {}
    for index, event in enumerate(parsed):
        if isinstance(event, TurnRecorded):
            assert event.data.interaction_uuid not in turn_at, "an interaction_uuid was used twice"
            turn_at[event.data.interaction_uuid] = index
            offerings[event.data.interaction_uuid] = set(event.data.offering_uuids)
            session_of[event.data.interaction_uuid] = event.data.session_id
            last_turn_of_session[event.data.session_id] = event.data.interaction_uuid
        elif isinstance(event, FeedbackSubmitted | OfferingClicked | SessionReviewed):
            interaction = event.data.interaction_uuid
            assert interaction in turn_at, "an event came before its turn"
            assert session_of[interaction] == event.data.session_id
            if isinstance(event, OfferingClicked):
                assert event.data.offering_uuid in offerings[interaction]
            if isinstance(event, SessionReviewed):
                assert last_turn_of_session[event.data.session_id] == interaction, "review not on the last turn"


def test_most_finished_sessions_are_reviewed_and_clicks_happen(parsed: list[Any]) -> None:
    turns = turns_of(parsed)
    last_turn: dict[str, TurnRecorded] = {}
    for t in turns:
        last_turn[t.data.session_id] = t
    finished = {s for s, t in last_turn.items() if t.occurred_at < NOW - timedelta(hours=1)}
    reviewed = {e.data.session_id for e in parsed if isinstance(e, SessionReviewed)}
    # The sample ends mid-way through a few sessions, whose review never comes.
    assert len(reviewed & finished) / len(finished) >= 0.8
    assert all(
        e.occurred_at > last_turn[e.data.session_id].occurred_at for e in parsed if isinstance(e, SessionReviewed)
    )
    clicks = [e for e in parsed if isinstance(e, OfferingClicked)]
    assert 0.05 <= len(clicks) / len(turns) <= 0.3


def anomalies(pairs: list[tuple[bytes, bytes]]) -> Counter[str]:
    """Counts each kind of bad event by what the projector would see: its parse rejection, or the fold
    rule it breaks (from the events before it), or an exact re-send."""
    found: Counter[str] = Counter()
    values = [value for _, value in pairs]
    seen_values: set[bytes] = set()
    turns: dict[Any, TurnRecorded] = {}
    for value, event in zip(values, parse_events(values), strict=True):
        if value in seen_values:
            found["exact_duplicate"] += 1
            continue
        seen_values.add(value)
        if isinstance(event, Rejection):
            found[event.reason] += 1
        elif isinstance(event, TurnRecorded):
            if event.data.interaction_uuid in turns:
                found["duplicate_interaction"] += 1
            else:
                turns[event.data.interaction_uuid] = event
        elif isinstance(event, FeedbackSubmitted | OfferingClicked | SessionReviewed):
            turn = turns.get(event.data.interaction_uuid)
            if turn is None:
                found["turn never seen"] += 1
            elif turn.data.session_id != event.data.session_id:
                found["session_mismatch"] += 1
            elif isinstance(event, OfferingClicked) and event.data.offering_uuid not in turn.data.offering_uuids:
                found["unknown_offering"] += 1
    return found


def test_without_bad_share_there_is_nothing_to_dead_letter(sample: list[tuple[bytes, bytes]]) -> None:
    assert anomalies(sample[:20_000]) == Counter()


def test_bad_share_mixes_in_every_dead_letter_reason_and_exact_duplicates() -> None:
    pairs = list(DemoTraffic(20_000, seed=9, now=NOW, bad_share=0.2))
    found = anomalies(pairs)
    assert set(found) == set(BAD_KINDS)
    assert 0.17 <= sum(found.values()) / len(pairs) <= 0.23
    # Roughly even across the kinds, so that each reason is exercised in volume.
    assert min(found.values()) >= 0.5 * max(found.values())


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        DemoTraffic(10, bad_share=1.5)
    with pytest.raises(ValueError):
        DemoTraffic(-1)


# -- publish-demo ------------------------------------------------------------------------------------


def test_publish_demo_puts_exactly_the_generated_events_on_the_topic(
    bootstrap_servers: str, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = "2026-11-26T15:30:00Z"
    args = ["publish-demo", "--events", "3000", "--seed", "5", "--bad-share", "0.05", "--now", now]
    assert main([*args, "--topic", topic, "--bootstrap-servers", bootstrap_servers]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(rf"published 3000 events to {re.escape(topic)} in [\d.]+ s \([\d,]+ events/s\)", summary)

    expected = list(DemoTraffic(3000, seed=5, now=NOW, bad_share=0.05))
    records = read_topic(bootstrap_servers, topic)
    assert sorted((r.key, r.value) for r in records) == sorted(expected)


def test_publish_demo_with_a_rate_sends_everything_too(bootstrap_servers: str, topic: str) -> None:
    args = [
        "publish-demo",
        "--events",
        "300",
        "--rate",
        "5000",
        "--topic",
        topic,
        "--bootstrap-servers",
        bootstrap_servers,
    ]
    assert main(args) == 0
    assert len(read_topic(bootstrap_servers, topic)) == 300


def test_publish_demo_reads_the_bootstrap_servers_from_the_environment(
    bootstrap_servers: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAT_ANALYTICS_BOOTSTRAP_SERVERS", bootstrap_servers)
    assert main(["publish-demo", "--events", "50", "--topic", topic]) == 0
    assert len(read_topic(bootstrap_servers, topic)) == 50


def test_publish_demo_without_a_broker_address_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CHAT_ANALYTICS_BOOTSTRAP_SERVERS", raising=False)
    assert main(["publish-demo", "--events", "5"]) == 2
    assert "CHAT_ANALYTICS_BOOTSTRAP_SERVERS" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad", [["--bad-share", "1.5"], ["--events", "-3"], ["--rate", "-1"], ["--now", "2026-11-26T10:00:00"]]
)
def test_publish_demo_refuses_bad_arguments(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["publish-demo", "--events", "5", "--bootstrap-servers", "127.0.0.1:1", *bad])
    assert caught.value.code == 2


@pytest.mark.parametrize(("events", "bad_share"), [(5_000, 0.0), (5_000, 0.3), (60_000, 0.0)])
def test_the_last_day_gets_its_share_of_traffic_whatever_the_size(events: int, bad_share: float) -> None:
    parsed = parse_events([v for _, v in DemoTraffic(events, seed=4, now=NOW, bad_share=bad_share)])
    turns = turns_of(parsed)
    last_day = [t for t in turns if t.occurred_at > NOW - timedelta(days=1)]
    uniform = 24 / (30 * 24 + 15.5)  # the window is 30 days and today's first 15.5 hours
    assert len(last_day) / len(turns) >= 0.5 * uniform
