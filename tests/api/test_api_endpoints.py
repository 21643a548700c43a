"""Retrieve, the transcripts, by-user, KPI and budget against values worked out by hand from the table
in tests/support/api_data.py; plus auth, methods, unknown paths and the operational endpoints."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from api.models import Interaction, Kpi, UserAggregate
from serving.handle import ReadModelHandle
from tests.support.api_data import (
    AUTH,
    D1,
    D2,
    D3,
    INGEST,
    NOW,
    OFFERINGS,
    PREFIX,
    STAFF,
    SUPPORT,
    USER,
    USER_A,
    USER_B,
    T,
    build_read_model,
    make_client,
    uuids,
)
from tests.support.testclient import TestClient

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
DATA_PATHS = [
    f"{PREFIX}/",
    f"{PREFIX}/{T['t1']}/",
    f"{PREFIX}/budget/",
    f"{PREFIX}/kpi/",
    f"{PREFIX}/by-user/",
    f"{PREFIX}/by-session/s1/",
    f"{PREFIX}/by-user/{USER_A}/",
]
PUBLIC_PATHS = ["/healthz", "/readyz", "/metrics", "/api/schema/"]


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadModelHandle]:
    handle = build_read_model(tmp_path_factory.mktemp("endpoints") / "rm.duckdb")
    yield handle
    handle.close()


@pytest.fixture(scope="module")
def client(handle: ReadModelHandle) -> Iterator[TestClient]:
    with make_client(handle) as c:
        yield c


def ok(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params or None, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


# -- retrieve and the interaction object -----------------------------------------------------------


def test_retrieve_serves_every_field_of_the_interaction(client: TestClient) -> None:
    body = ok(client, f"{PREFIX}/{T['t1']}/")
    assert set(body) == set(Interaction.model_fields)
    assert body["uuid"] == T["t1"]
    assert body["user_slug"] == USER_A
    assert body["user_input"] == "How do I get GPU access?"
    assert body["assistant_blocks"] == [{"type": "text", "text": "Try the HPC cluster"}]
    assert body["offering_uuids"] == [OFFERINGS["o1"], OFFERINGS["o2"]]
    assert body["result_count"] == 2
    assert body["is_flagged"] is False
    assert body["severity"] == "none"
    assert body["injection_categories"] == [] and body["pii_categories"] == []
    assert body["action_taken"] == "" and body["warning"] == ""
    assert body["ip_address"] == "192.0.2.10"
    assert body["session_id"] == "s1"
    assert body["created"] == "2026-11-26T09:00:00.000000Z"
    assert body["last_active_at"] == "2026-11-26T09:00:00.000000Z"
    assert body["click_count"] == 3  # o1 twice, o2 once
    assert (body["input_tokens"], body["output_tokens"]) == (100, 200)
    assert body["feedback"] == {
        "interaction_uuid": T["t1"],
        "score": 1,
        "category": "",  # the reference's value when there is none (never null)
        "comment": "",
        "submitted_from_ip": "192.0.2.1",
        "submitted_at": "2026-11-26T09:10:00.000000Z",
        "llm_resolution_score": None,
        "llm_intent_category": "",
        "llm_hallucination_detected": False,
        "llm_hallucination_details": "",
        "llm_summary": "",
        "llm_reviewed_at": None,
        "llm_judge_model": "",
        "llm_judge_input_tokens": 0,
        "llm_judge_output_tokens": 0,
        "modified_at": "2026-11-26T09:10:00.000000Z",
    }


def test_feedback_with_a_review_keeps_the_human_score(client: TestClient) -> None:
    fb = ok(client, f"{PREFIX}/{T['t2']}/")["feedback"]
    assert (fb["score"], fb["category"], fb["comment"]) == (-1, "inaccurate", "wrong")
    assert fb["llm_resolution_score"] == 4 and fb["llm_intent_category"] == "storage"
    assert fb["llm_summary"] == "asked about storage" and fb["llm_judge_model"] == "judge-1"
    assert (fb["llm_judge_input_tokens"], fb["llm_judge_output_tokens"]) == (1000, 200)
    assert fb["llm_reviewed_at"] == "2026-11-26T23:00:00.000000Z"
    assert fb["modified_at"] == "2026-11-26T23:00:00.000000Z"


def test_review_only_feedback_has_no_score(client: TestClient) -> None:
    fb = ok(client, f"{PREFIX}/{T['t5']}/")["feedback"]
    assert fb["score"] is None and fb["category"] == "" and fb["comment"] == ""
    assert fb["submitted_from_ip"] is None and fb["submitted_at"] is None
    assert fb["llm_resolution_score"] == 5 and fb["llm_reviewed_at"] == "2026-11-28T10:00:00.000000Z"


def test_a_later_feedback_replaces_the_earlier_one(client: TestClient) -> None:
    fb = ok(client, f"{PREFIX}/{T['t4']}/")["feedback"]
    assert (fb["score"], fb["category"], fb["submitted_at"]) == (1, "", "2026-11-27T08:30:00.000000Z")
    assert fb["llm_hallucination_detected"] is True and fb["llm_hallucination_details"] == "invented a price"


def test_feedback_is_null_without_feedback_or_review(client: TestClient) -> None:
    assert ok(client, f"{PREFIX}/{T['t3']}/")["feedback"] is None


def test_every_listed_row_matches_the_response_model(client: TestClient) -> None:
    for row in ok(client, f"{PREFIX}/"):
        Interaction.model_validate(row)
        assert TIMESTAMP.match(row["created"]) and TIMESTAMP.match(row["last_active_at"])


@pytest.mark.parametrize(
    "value", ["00000000-0000-4000-8000-000000000999", "not-a-uuid", "1234", "00000000-0000-4000-8000-00000000000g"]
)
def test_retrieve_of_an_unknown_or_malformed_uuid_is_404(client: TestClient, value: str) -> None:
    response = client.get(f"{PREFIX}/{value}/", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


# -- by-session, by-user/{slug} ----------------------------------------------------------------------


def test_by_session_is_the_whole_transcript_oldest_first(client: TestClient) -> None:
    response = client.get(f"{PREFIX}/by-session/s1/", headers=AUTH)
    assert uuids(response) == ["t1", "t2"]
    assert response.headers["x-result-count"] == "2"
    assert "link" not in response.headers
    # t6 and t7 share their instant: uuid order, ascending like created
    assert uuids(client.get(f"{PREFIX}/by-session/s4/", headers=AUTH)) == ["t6", "t7"]


def test_by_session_applies_filters_and_ordering(client: TestClient) -> None:
    assert uuids(client.get(f"{PREFIX}/by-session/s1/?severity=low", headers=AUTH)) == ["t2"]
    assert uuids(client.get(f"{PREFIX}/by-session/s1/?o=-created", headers=AUTH)) == ["t2", "t1"]
    assert uuids(client.get(f"{PREFIX}/by-session/s1/?session_id=s1", headers=AUTH)) == ["t1", "t2"]
    assert uuids(client.get(f"{PREFIX}/by-session/s1/?session_id=s2", headers=AUTH)) == []
    assert uuids(client.get(f"{PREFIX}/by-session/unknown/", headers=AUTH)) == []


def test_by_session_paginates_when_asked(client: TestClient) -> None:
    first = client.get(f"{PREFIX}/by-session/s1/?page_size=1", headers=AUTH)
    assert uuids(first) == ["t1"] and first.headers["x-result-count"] == "2"
    assert 'rel="next"' in first.headers["link"]
    second = client.get(f"{PREFIX}/by-session/s1/?page_size=1&page=2", headers=AUTH)
    assert uuids(second) == ["t2"] and 'rel="prev"' in second.headers["link"]
    assert client.get(f"{PREFIX}/by-session/s1/?page=3", headers=AUTH).status_code == 404
    assert uuids(client.get(f"{PREFIX}/by-session/s1/?page=1", headers=AUTH)) == ["t1", "t2"]


def test_by_user_lists_the_users_turns_across_sessions(client: TestClient) -> None:
    response = client.get(f"{PREFIX}/by-user/{USER_A}/", headers=AUTH)
    assert uuids(response) == ["t1", "t2", "t6", "t7"]
    assert response.headers["x-result-count"] == "4"
    assert uuids(client.get(f"{PREFIX}/by-user/{USER_A}/?created_from=2026-11-28", headers=AUTH)) == ["t6", "t7"]
    paged = client.get(f"{PREFIX}/by-user/{USER_A}/?page_size=3&page=2", headers=AUTH)
    assert uuids(paged) == ["t7"] and paged.headers["x-result-count"] == "4"
    assert uuids(client.get(f"{PREFIX}/by-user/nobody/", headers=AUTH)) == []


# -- by-user/ --------------------------------------------------------------------------------------

ROW_A = {
    "user_slug": USER_A,
    "last_seen": "2026-11-28T07:00:00.000000Z",
    "total_interactions": 4,  # t1 t2 t6 t7
    "session_count": 2,  # s1 s4
    "positive_feedback": 1,  # t1
    "negative_feedback": 2,  # t2 t6
    "no_feedback": 1,  # t7
    "injection_strikes": 0,  # actions "", warn, flag, ""
}
ROW_B = {
    "user_slug": USER_B,
    "last_seen": "2026-11-27T08:00:00.000000Z",
    "total_interactions": 2,  # t3 t4
    "session_count": 1,
    "positive_feedback": 1,  # t4, after its -1 was replaced
    "negative_feedback": 0,
    "no_feedback": 1,
    "injection_strikes": 1,  # t3 block
}


def test_by_user_aggregate_unfiltered(client: TestClient) -> None:
    response = client.get(f"{PREFIX}/by-user/", headers=AUTH)
    assert response.json() == [ROW_A, ROW_B]  # t5 has no user: no row
    assert response.headers["x-result-count"] == "2"
    for row in response.json():
        UserAggregate.model_validate(row)


def test_by_user_aggregate_over_filtered_turns(client: TestClient) -> None:
    flagged = ok(client, f"{PREFIX}/by-user/", is_flagged="true")
    assert flagged == [
        {**ROW_A, "total_interactions": 2, "positive_feedback": 0, "no_feedback": 0},  # t2 t6
        {**ROW_B, "last_seen": "2026-11-26T10:00:00.000000Z", "total_interactions": 1, "positive_feedback": 0},
    ]
    # equal totals: user_slug breaks the tie
    tie = ok(client, f"{PREFIX}/by-user/", is_flagged="true", created_to="2026-11-26")
    assert [(r["user_slug"], r["total_interactions"]) for r in tie] == [(USER_A, 1), (USER_B, 1)]
    assert ok(client, f"{PREFIX}/by-user/", user_slug=USER_B) == [ROW_B]
    assert ok(client, f"{PREFIX}/by-user/", session_id="s3") == []


def test_by_user_aggregate_paginates_when_asked(client: TestClient) -> None:
    first = client.get(f"{PREFIX}/by-user/?page_size=1", headers=AUTH)
    assert first.json() == [ROW_A] and first.headers["x-result-count"] == "2"
    assert client.get(f"{PREFIX}/by-user/?page_size=1&page=2", headers=AUTH).json() == [ROW_B]
    assert client.get(f"{PREFIX}/by-user/?page_size=1&page=3", headers=AUTH).status_code == 404
    filtered = client.get(f"{PREFIX}/by-user/?page_size=1&page=2&severity=none", headers=AUTH)
    assert [r["user_slug"] for r in filtered.json()] == [USER_B]
    assert client.get(f"{PREFIX}/by-user/?o=bogus", headers=AUTH).status_code == 400


# -- kpi/ ------------------------------------------------------------------------------------------


def days(last: datetime, n: int) -> list[str]:
    return [(last.date() - timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


def test_kpi_unfiltered_by_hand(client: TestClient) -> None:
    body = ok(client, f"{PREFIX}/kpi/")
    Kpi.model_validate(body)
    volume = dict.fromkeys(days(NOW, 30), 0) | {D1.isoformat(): 3, D2.isoformat(): 2, D3.isoformat(): 2}
    assert body == {
        "interactions_total": 7,
        "sessions_total": 4,
        "unique_users": 2,  # A and B; t5's empty slug is nobody
        "flagged_total": 4,  # t2 t3 t5 t6
        "feedback_positive": 2,  # t1, t4 (replaced)
        "feedback_negative": 2,  # t2, t6
        "satisfaction_rate": 0.5,
        "clicks_total": 5,  # 3 + 1 + 1
        "click_through_rate": 5 / 7,
        "avg_llm_resolution_score": (4 + 2 + 5) / 3,
        "llm_intent_distribution": {"storage": 2},  # t4's empty intent left out
        "hallucination_rate": 1 / 3,
        "review_coverage": 3 / 4,  # s1 s2 s3 of four sessions
        "daily_volume": [{"date": d, "count": n} for d, n in volume.items()],
        "clarification_requests_total": 1,  # t2 asks the user
        "clarification_rate": 1 / 7,
        "input_tokens_total": 100 + 50 + 10 + 300 + 5 + 70 + 1,
        "output_tokens_total": 200 + 60 + 0 + 400 + 5 + 80 + 2,
        "reviewed_total": 3,
        "review_input_tokens_total": 1000 + 500 + 10,
        "review_output_tokens_total": 200 + 100 + 10,
        "severity_by_day": {
            "labels": days(NOW, 14),
            "series": {
                "NONE": [0] * 11 + [1, 1, 1],  # t1 | t4 | t7
                "LOW": [0] * 11 + [1, 0, 0],  # t2
                "MEDIUM": [0] * 11 + [0, 1, 0],  # t5
                "HIGH": [0] * 11 + [0, 0, 1],  # t6
                "CRITICAL": [0] * 11 + [1, 0, 0],  # t3
            },
        },
    }


def test_kpi_filtered_by_user_by_hand(client: TestClient) -> None:
    body = ok(client, f"{PREFIX}/kpi/", user_slug=USER_A, window_days=3)
    assert body == {
        "interactions_total": 4,  # t1 t2 t6 t7
        "sessions_total": 2,
        "unique_users": 1,
        "flagged_total": 2,
        "feedback_positive": 1,
        "feedback_negative": 2,
        "satisfaction_rate": 1 / 3,
        "clicks_total": 4,
        "click_through_rate": 1.0,
        "avg_llm_resolution_score": 4.0,
        "llm_intent_distribution": {"storage": 1},
        "hallucination_rate": 0.0,
        "review_coverage": 0.5,  # s1 of s1, s4
        "daily_volume": [{"date": "2026-11-26", "count": 2}, {"date": "2026-11-27", "count": 0}]
        + [{"date": "2026-11-28", "count": 2}],
        "clarification_requests_total": 1,
        "clarification_rate": 0.25,
        "input_tokens_total": 221,
        "output_tokens_total": 342,
        "reviewed_total": 1,
        "review_input_tokens_total": 1000,
        "review_output_tokens_total": 200,
        "severity_by_day": {
            "labels": days(NOW, 14),
            "series": {
                "NONE": [0] * 11 + [1, 0, 1],
                "LOW": [0] * 11 + [1, 0, 0],
                "MEDIUM": [0] * 14,
                "HIGH": [0] * 11 + [0, 0, 1],
                "CRITICAL": [0] * 14,
            },
        },
    }


def test_kpi_honours_every_filter(client: TestClient) -> None:
    def total(**params: str) -> int:
        return ok(client, f"{PREFIX}/kpi/", **params)["interactions_total"]

    assert total(created_from="2026-11-27") == 4
    assert total(created_after="2026-11-27", created_before="2026-11-27") == 2
    assert total(created_to="2026-11-26") == 3
    assert total(has_feedback="true") == 4
    assert total(has_negative_feedback="true") == 2
    assert total(is_flagged="false") == 3
    assert total(severity="critical") == 1
    assert total(session_id="s2") == 2
    assert total(query="storage") == 2
    assert total(user_slug=USER_B, is_flagged="true") == 1


def test_kpi_with_nothing_reviewed_or_matching_keeps_every_key(client: TestClient) -> None:
    body = ok(client, f"{PREFIX}/kpi/", session_id="s9", window_days=2)
    assert body["interactions_total"] == 0 and body["sessions_total"] == 0
    for key in ("satisfaction_rate", "click_through_rate", "avg_llm_resolution_score", "hallucination_rate"):
        assert body[key] is None
    assert body["review_coverage"] is None and body["clarification_rate"] is None
    assert body["llm_intent_distribution"] == {} and body["reviewed_total"] == 0
    assert body["daily_volume"] == [{"date": "2026-11-27", "count": 0}, {"date": "2026-11-28", "count": 0}]
    assert body["severity_by_day"]["series"]["NONE"] == [0] * 14
    # turns but no review: review keys present and null
    unreviewed = ok(client, f"{PREFIX}/kpi/", session_id="s4")
    assert unreviewed["reviewed_total"] == 0 and unreviewed["avg_llm_resolution_score"] is None
    assert unreviewed["review_coverage"] == 0.0 and unreviewed["llm_intent_distribution"] == {}


@pytest.mark.parametrize(("value", "n"), [("1", 1), ("7", 7), ("0", 1), ("-5", 1), ("500", 365), ("abc", 30)])
def test_kpi_window_days_is_clamped_and_defaults_to_30(client: TestClient, value: str, n: int) -> None:
    volume = ok(client, f"{PREFIX}/kpi/", window_days=value)["daily_volume"]
    assert [v["date"] for v in volume] == days(NOW, n)


# -- budget/ ---------------------------------------------------------------------------------------


def test_budget_today_by_hand(client: TestClient) -> None:
    assert ok(client, f"{PREFIX}/budget/") == {
        # D3: turns t6 (70+80) and t7 (1+2), usage 1000+500 and 1+1; t5's judge tokens (D3) excluded
        "tokens_today": 150 + 3 + 1500 + 2,
        "tokens_limit": 5_000_000,
        "resets_at": "2026-11-29T00:00:00.000000Z",
        "requests_today": 2 + 2,
    }


def test_budget_follows_the_clock_in_utc_and_the_configured_limit(handle: ReadModelHandle) -> None:
    # 01:00 at +05:00 is 20:00 UTC the day before: "today" is D2.
    clock = datetime(2026, 11, 28, 1, 0, tzinfo=timezone(timedelta(hours=5)))
    with make_client(handle, clock=lambda: clock, budget=1234) as c:
        assert c.get(f"{PREFIX}/budget/", headers=AUTH).json() == {
            "tokens_today": 300 + 400 + 5 + 5 + 7 + 7,  # t4, t5, one usage event
            "tokens_limit": 1234,
            "resets_at": "2026-11-28T00:00:00.000000Z",
            "requests_today": 3,
        }
    late = datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)
    with make_client(handle, clock=lambda: late, budget=-1) as c:
        assert c.get(f"{PREFIX}/budget/", headers=AUTH).json() == {
            "tokens_today": 0,
            "tokens_limit": 0,  # negative: unlimited
            "resets_at": "2026-12-01T00:00:00.000000Z",
            "requests_today": 0,
        }


# -- auth, methods, unknown paths ------------------------------------------------------------------


@pytest.mark.parametrize("path", DATA_PATHS)
@pytest.mark.parametrize("header", [None, "Token nope", f"Bearer {STAFF}", "Token", f"token{STAFF}"])
def test_missing_or_unknown_token_is_401(client: TestClient, path: str, header: str | None) -> None:
    response = client.get(path, headers={"Authorization": header} if header is not None else {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Token"
    assert set(response.json()) == {"detail"}


@pytest.mark.parametrize("path", DATA_PATHS)
@pytest.mark.parametrize("token", [USER, INGEST])
def test_roles_other_than_staff_and_support_get_403(client: TestClient, path: str, token: str) -> None:
    response = client.get(path, headers={"Authorization": f"Token {token}"})
    assert response.status_code == 403
    assert set(response.json()) == {"detail"}


@pytest.mark.parametrize("path", DATA_PATHS)
@pytest.mark.parametrize("token", [STAFF, SUPPORT])
def test_staff_and_support_may_read(client: TestClient, path: str, token: str) -> None:
    assert client.get(path, headers={"Authorization": f"Token {token}"}).status_code == 200


@pytest.mark.parametrize("path", PUBLIC_PATHS)
def test_operational_endpoints_need_no_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", DATA_PATHS + PUBLIC_PATHS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_other_methods_are_405(client: TestClient, path: str, method: str) -> None:
    response = client.request(method, path, headers=AUTH)
    assert response.status_code == 405
    assert response.json() == {"detail": f'Method "{method}" not allowed.'}
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"


def test_a_request_without_token_is_401_whatever_its_method(client: TestClient) -> None:
    assert client.post(f"{PREFIX}/").status_code == 401
    assert client.options(f"{PREFIX}/").status_code == 401


@pytest.mark.parametrize("path", DATA_PATHS + PUBLIC_PATHS)
def test_options_answers_with_allow(client: TestClient, path: str) -> None:
    response = client.options(path, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("path", [*DATA_PATHS, f"{PREFIX}/?page_size=2&page=2"])
def test_head_sends_the_headers_of_get_without_a_body(client: TestClient, path: str) -> None:
    get = client.get(path, headers=AUTH)
    head = client.head(path, headers=AUTH)
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "x-result-count", "link"):
        assert head.headers.get(name) == get.headers.get(name)


def test_head_of_a_missing_page_is_404(client: TestClient) -> None:
    head = client.head(f"{PREFIX}/?page=99", headers=AUTH)
    assert head.status_code == 404 and head.content == b""


# `/` is the dashboard's page (tests/dashboard/test_dashboard_static.py).
@pytest.mark.parametrize(
    "path", ["/api/nope/", "/nope", "/dashboard/static/nope.js", f"{PREFIX}/by-session/", f"{PREFIX}/x/y/z/"]
)
def test_unknown_paths_are_404_json(client: TestClient, path: str) -> None:
    response = client.get(path, headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_a_path_without_its_trailing_slash_redirects_to_it(client: TestClient) -> None:
    response = client.get(f"{PREFIX}/kpi", headers=AUTH, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == f"http://testserver{PREFIX}/kpi/"


# -- readiness, metrics, schema, swap ---------------------------------------------------------------


def status(caught_up: bool, error: str | None = None) -> dict[str, Any]:
    return {
        "caught_up": caught_up,
        "partitions": [
            {
                "partition": 0,
                "end_offset": 120,
                "position": 100 if not caught_up else 120,
                "lag": 0 if caught_up else 20,
            },
            {"partition": 1, "end_offset": 7, "position": 7, "lag": 0},
        ],
        "events_applied": {"chat.turn.recorded": 7, "chat.feedback.submitted": 5},
        "dead_letters": {"invalid_json": 2, "session_mismatch": 1},
        "pending_events": 3,
        "last_batch_at": None,
        "error": error,
    }


def test_readyz_is_503_with_the_lag_until_the_projector_caught_up(handle: ReadModelHandle) -> None:
    current = status(False)
    with make_client(handle, status_provider=lambda: current) as c:
        waiting = c.get("/readyz")
        assert waiting.status_code == 503
        assert waiting.json()["ready"] is False
        assert [p["lag"] for p in waiting.json()["partitions"]] == [20, 0]
        current = status(True)
        ready = c.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        freshness = body.pop("freshness")
        assert body == {
            "ready": True,
            "serving": True,
            "caught_up": True,
            "partitions": [
                {"partition": 0, "end_offset": 120, "position": 120, "lag": 0},
                {"partition": 1, "end_offset": 7, "position": 7, "lag": 0},
            ],
            "pending_events": 3,
            "error": None,
        }
        assert (freshness["lag"], freshness["projector"], freshness["stale"]) == (0, "ok", False)


def test_a_broker_outage_leaves_readyz_serving_but_stale_without_the_raw_error(handle: ReadModelHandle) -> None:
    current = {**status(True), "error": "KafkaConnectionError: 10.1.2.3:9092 /var/secret/path", "error_kind": None}
    with make_client(handle, status_provider=lambda: current) as c:
        response = c.get("/readyz")
        assert response.status_code == 200, response.text
        assert "10.1.2.3" not in response.text and "/var/secret" not in response.text
        body = response.json()
        assert body["serving"] is True and body["error"] == "projector_failed"
        assert body["freshness"]["stale"] is True
        current = {**current, "error_kind": "broker_unreachable"}
        assert c.get("/readyz").json()["freshness"]["projector"] == "broker_unreachable"


def test_readyz_turns_503_once_the_lag_grows_over_the_configured_maximum(handle: ReadModelHandle) -> None:
    behind = {**status(True), "partitions": [{"partition": 0, "end_offset": 900, "position": 100, "lag": 800}]}
    with make_client(handle, status_provider=lambda: behind, ready_max_lag=500) as c:
        response = c.get("/readyz")
        assert response.status_code == 503
        assert response.json()["freshness"]["lag"] == 800 and response.json()["serving"] is True
    with make_client(handle, status_provider=lambda: behind, ready_max_lag=1000) as c:
        assert c.get("/readyz").status_code == 200


def test_live_ingests_moment_of_lag_is_not_stale_and_a_long_one_is_yet_stays_ready(handle: ReadModelHandle) -> None:
    # Records arrived since the last batch (lag > 0), for a fraction of a second: ready, not stale.
    moment = {**status(True), "partitions": [{"partition": 0, "end_offset": 130, "position": 120, "lag": 10}]}
    with make_client(handle, status_provider=lambda: {**moment, "lag_s": 0.4}, stale_after_s=30) as c:
        response = c.get("/readyz")
        assert response.status_code == 200
        freshness = response.json()["freshness"]
        assert (freshness["lag"], freshness["lag_s"], freshness["stale_after_s"], freshness["stale"]) == (
            10,
            0.4,
            30,
            False,
        )
    # The same lag, but the file has lacked those records for over a minute: stale, and still served.
    with make_client(handle, status_provider=lambda: {**moment, "lag_s": 61.5}, stale_after_s=30) as c:
        response = c.get("/readyz")
        assert response.status_code == 200 and response.json()["freshness"]["stale"] is True
    with make_client(handle, status_provider=lambda: {**moment, "lag_s": 61.5}, stale_after_s=-1) as c:
        assert c.get("/readyz").json()["freshness"]["stale"] is False
    # Over max_lag is stale as well as unready, however recent.
    with make_client(handle, status_provider=lambda: {**moment, "lag_s": 0.4}, ready_max_lag=5) as c:
        response = c.get("/readyz")
        assert response.status_code == 503 and response.json()["freshness"]["stale"] is True


def test_started_without_kafka_a_file_with_data_is_ready_and_an_empty_one_is_not(handle: ReadModelHandle) -> None:
    # Before the projector's first try to reach Kafka has ended, its lag is unknown: not ready, or a
    # file far behind a topic it is about to read would get traffic until the try ends.
    connecting = {**status(False), "connected_once": False}
    with make_client(handle, status_provider=lambda: connecting) as c:
        response = c.get("/readyz")
        assert response.status_code == 503 and response.json()["freshness"]["stale"] is True
    # The try failed: Kafka is down, and a file with data is served as it is.
    unconnected = {**status(False, error="NoBrokersAvailable: NoBrokersAvailable"), "connected_once": False}
    with make_client(handle, status_provider=lambda: unconnected) as c:
        response = c.get("/readyz")
        assert response.status_code == 200 and response.json()["freshness"]["stale"] is True
    empty = {**unconnected, "partitions": [{"partition": 0, "end_offset": 0, "position": 0, "lag": 0}]}
    with make_client(handle, status_provider=lambda: empty) as c:
        assert c.get("/readyz").status_code == 503


def test_livez_and_readyz_fail_and_reads_are_503_once_the_read_model_failed(handle: ReadModelHandle) -> None:
    with make_client(handle, status_provider=lambda: status(True)) as c:
        assert c.get("/livez").status_code == 200 and c.get("/healthz").json() == {"status": "ok"}
        handle.mark_failed(RuntimeError("FATAL Error: database has been invalidated"))
        try:
            for path in ("/livez", "/healthz", "/readyz"):
                assert c.get(path).status_code == 503, path
            assert c.get("/readyz").json()["error"] == "database_invalidated"
            read = c.get(f"{PREFIX}/", headers=AUTH)
            assert read.status_code == 503 and read.headers["Retry-After"]
            assert "chat_analytics_read_model_failed 1" in c.get("/metrics").text
        finally:
            handle.failure = None


def test_responses_with_personal_data_are_not_stored_or_sniffed(handle: ReadModelHandle) -> None:
    with make_client(handle) as c:
        listing = c.get(f"{PREFIX}/", headers=AUTH)
        assert listing.headers["cache-control"] == "no-store"
        assert listing.headers["x-content-type-options"] == "nosniff"
        assert c.get(f"{PREFIX}/").headers["cache-control"] == "no-store"  # a 401 too
        assert c.get("/readyz").headers["x-content-type-options"] == "nosniff"


def test_metrics_show_the_free_space_of_the_data_directory(handle: ReadModelHandle) -> None:
    with make_client(handle, disk_warn_bytes=2**62) as c:
        samples = metric_lines(c.get("/metrics").text)
    assert samples["chat_analytics_data_dir_free_bytes"] > 0
    assert samples["chat_analytics_data_dir_low_space"] == 1


def metric_lines(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = re.fullmatch(r'([a-z_]+(?:\{[a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*\})?) (\S+)', line)
        assert match, line
        samples[match.group(1)] = float(match.group(2))
    return samples


def test_metrics_count_requests_per_endpoint_and_show_the_projector(handle: ReadModelHandle) -> None:
    with make_client(handle, status_provider=lambda: status(False)) as c:
        c.get(f"{PREFIX}/", headers=AUTH)
        c.get(f"{PREFIX}/", headers=AUTH)
        c.get(f"{PREFIX}/{T['t1']}/", headers=AUTH)
        c.get(f"{PREFIX}/{T['t2']}/")
        response = c.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = metric_lines(response.text)
    list_ok = (
        'chat_analytics_http_requests_total{endpoint="/api/anonymous-chat-interactions/",method="GET",status="200"}'
    )
    assert samples[list_ok] == 2
    one = "/api/anonymous-chat-interactions/{uuid}/"
    assert samples[f'chat_analytics_http_requests_total{{endpoint="{one}",method="GET",status="200"}}'] == 1
    assert samples[f'chat_analytics_http_requests_total{{endpoint="{one}",method="GET",status="401"}}'] == 1
    assert samples[f'chat_analytics_http_request_duration_seconds_count{{endpoint="{one}"}}'] == 2
    assert samples[f'chat_analytics_http_request_duration_seconds_bucket{{endpoint="{one}",le="+Inf"}}'] == 2
    assert samples['chat_analytics_projector_lag{partition="0"}'] == 20
    assert samples['chat_analytics_projector_lag{partition="1"}'] == 0
    assert samples['chat_analytics_projector_events_applied_total{type="chat.turn.recorded"}'] == 7
    assert samples['chat_analytics_projector_dead_letters_total{reason="invalid_json"}'] == 2
    assert samples["chat_analytics_projector_pending_events"] == 3
    assert samples["chat_analytics_projector_caught_up"] == 0


def test_schema_describes_every_endpoint_with_the_models_schemas(client: TestClient) -> None:
    doc = client.get("/api/schema/").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert {p for p in paths if p.startswith(PREFIX)} == {
        f"{PREFIX}/",
        f"{PREFIX}/{{uuid}}/",
        f"{PREFIX}/budget/",
        f"{PREFIX}/kpi/",
        f"{PREFIX}/by-user/",
        f"{PREFIX}/by-session/{{session_id}}/",
        f"{PREFIX}/by-user/{{user_slug}}/",
        f"{PREFIX}/conversations/",
    }
    assert {p for p in paths if p.startswith("/api/anonymous-chat-feedbacks")} == {
        "/api/anonymous-chat-feedbacks/",
        "/api/anonymous-chat-feedbacks/{interaction_uuid}/",
    }
    components = doc["components"]["schemas"]
    assert set(components["Interaction"]["properties"]) == set(Interaction.model_fields)
    assert set(components["Kpi"]["required"]) == set(Kpi.model_fields)
    listing = paths[f"{PREFIX}/"]["get"]
    assert listing["operationId"] == "anonymous_chat_interactions_list"
    names = {p["name"] for p in listing["parameters"]}
    assert names >= {"created_from", "created_after", "query", "has_feedback", "o", "page", "page_size", "severity"}


def test_a_swapped_read_model_serves_from_the_next_request(handle: ReadModelHandle, tmp_path: Path) -> None:
    other = build_read_model(tmp_path / "other.duckdb", [])
    swapped = ReadModelHandle(handle.connection, handle.path)
    with make_client(swapped) as c:
        assert c.get(f"{PREFIX}/", headers=AUTH).headers["x-result-count"] == "7"
        swapped.swap(other.connection)
        assert c.get(f"{PREFIX}/", headers=AUTH).headers["x-result-count"] == "0"
        assert c.get(f"{PREFIX}/kpi/", headers=AUTH).json()["interactions_total"] == 0
    other.close()


@pytest.mark.parametrize("session_id", ["Ā", "a, b", "100%", "x y"])
def test_links_of_a_transcript_with_any_session_id_are_ascii_urls(client: TestClient, session_id: str) -> None:
    response = client.get(f"{PREFIX}/by-session/{quote(session_id, safe='')}/?page_size=5", headers=AUTH)
    assert response.status_code == 200
    link = response.headers["link"]
    assert link.isascii() and link.count(",") == 1  # first, last: no comma inside a URL
    url = link.split(">")[0].removeprefix("<")
    assert unquote(urlsplit(url).path) == f"{PREFIX}/by-session/{session_id}/"
