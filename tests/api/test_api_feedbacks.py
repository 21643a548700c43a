"""/api/anonymous-chat-feedbacks/ over the hand-built data set (tests/support/api_data.py).

Records: t1 +1 (D1 09:10, from 192.0.2.1); t2 -1 inaccurate "wrong" (D1 09:20) and a review (D1 23:00);
t4 +1 (D2 08:30, replacing a -1) and a review (D2 23:00); t5 a review only (D3 10:00); t6 -1 other (D3 07:30).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api_data import AUTH, INGEST, PREFIX, USER, build_read_model, make_client, uid

FEEDBACKS = "/api/anonymous-chat-feedbacks/"
NAMES = {uid(n): f"t{n}" for n in range(1, 8)}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    handle = build_read_model(tmp_path_factory.mktemp("feedbacks") / "rm.duckdb")
    with make_client(handle) as c:
        yield c
    handle.close()


def names(client: Any, **params: Any) -> list[str]:
    response = client.get(FEEDBACKS, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return [NAMES[row["interaction_uuid"]] for row in response.json()]


def test_one_record_per_interaction_with_feedback_or_a_review_newest_first_review_only_first(client: Any) -> None:
    response = client.get(FEEDBACKS, headers=AUTH)
    assert response.headers["x-result-count"] == "5"
    # Postgres' DESC puts the null submitted_at (t5, review only) first.
    assert names(client) == ["t5", "t6", "t4", "t2", "t1"]


def test_a_record_is_the_nested_feedback_object_of_its_interaction(client: Any) -> None:
    for n in (1, 2, 4, 5, 6):
        record = client.get(f"{FEEDBACKS}{uid(n)}/", headers=AUTH).json()
        nested = client.get(f"{PREFIX}/{uid(n)}/", headers=AUTH).json()["feedback"]
        assert record == nested
    review_only = client.get(f"{FEEDBACKS}{uid(5)}/", headers=AUTH).json()
    assert review_only == {
        "interaction_uuid": uid(5),
        "score": None,
        "category": "",
        "comment": "",
        "submitted_from_ip": None,
        "submitted_at": None,
        "llm_resolution_score": 5,
        "llm_intent_category": "storage",
        "llm_hallucination_detected": False,
        "llm_hallucination_details": "",
        "llm_summary": "",
        "llm_reviewed_at": "2026-11-28T10:00:00.000000Z",
        "llm_judge_model": "",
        "llm_judge_input_tokens": 10,
        "llm_judge_output_tokens": 10,
        "modified_at": "2026-11-28T10:00:00.000000Z",
    }
    both = client.get(f"{FEEDBACKS}{uid(2)}/", headers=AUTH).json()
    assert (both["category"], both["llm_judge_model"], both["modified_at"]) == (
        "inaccurate",
        "judge-1",
        "2026-11-26T23:00:00.000000Z",
    )
    assert client.get(f"{FEEDBACKS}{uid(1)}/", headers=AUTH).json()["category"] == ""


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"score": "1"}, ["t4", "t1"]),
        ({"score": "-1"}, ["t6", "t2"]),
        ({"score": "1.0"}, ["t4", "t1"]),
        ({"score": "-1e0"}, ["t6", "t2"]),
        ({"score": "2"}, []),
        ({"score": "0"}, []),
        ({"category": "inaccurate"}, ["t2"]),
        ({"category": "Inaccurate"}, []),  # exact, case-sensitive
        ({"category": ""}, ["t5", "t6", "t4", "t2", "t1"]),  # empty: no filter
        ({"submitted_from": "2026-11-27"}, ["t6", "t4"]),  # review-only t5 dropped
        ({"submitted_to": "2026-11-26"}, ["t2", "t1"]),
        ({"submitted_from": "2026-11-26", "submitted_to": "2026-11-26"}, ["t2", "t1"]),  # inclusive
        ({"has_comment": "true"}, ["t2"]),
        ({"has_comment": "false"}, ["t5", "t6", "t4", "t1"]),
        ({"score": "-1", "has_comment": "false"}, ["t6"]),
    ],
)
def test_filters(client: Any, params: dict[str, str], expected: list[str]) -> None:
    assert names(client, **params) == expected


@pytest.mark.parametrize(
    ("o", "expected"),
    [
        ("-submitted_at", ["t5", "t6", "t4", "t2", "t1"]),
        ("submitted_at", ["t1", "t2", "t4", "t6", "t5"]),  # nulls last ascending
        ("score", ["t2", "t6", "t1", "t4", "t5"]),  # ties by interaction_uuid, ascending
        ("-score", ["t5", "t4", "t1", "t6", "t2"]),  # ties descending with the first term
        ("-llm_resolution_score", ["t6", "t1", "t5", "t2", "t4"]),
        ("llm_resolution_score,-submitted_at", ["t4", "t2", "t5", "t6", "t1"]),
    ],
)
def test_orderings_place_nulls_as_postgres_does(client: Any, o: str, expected: list[str]) -> None:
    assert names(client, o=o) == expected


def test_pagination(client: Any) -> None:
    first = client.get(FEEDBACKS, params={"page_size": 2}, headers=AUTH)
    assert first.headers["x-result-count"] == "5" and 'rel="next"' in first.headers["link"]
    walked = [
        NAMES[r["interaction_uuid"]]
        for page in (1, 2, 3)
        for r in client.get(FEEDBACKS, params={"page": page, "page_size": 2}, headers=AUTH).json()
    ]
    assert walked == ["t5", "t6", "t4", "t2", "t1"]
    past = client.get(FEEDBACKS, params={"page": 4, "page_size": 2}, headers=AUTH)
    assert (past.status_code, past.json()) == (404, {"detail": "Invalid page."})
    assert client.head(FEEDBACKS, headers=AUTH).status_code == 200


def test_retrieve_404s_and_filters(client: Any) -> None:
    assert client.get(f"{FEEDBACKS}{uid(3)}/", headers=AUTH).status_code == 404  # a turn without a record
    assert client.get(f"{FEEDBACKS}{uid(77)}/", headers=AUTH).status_code == 404  # no such turn
    assert client.get(f"{FEEDBACKS}not-a-uuid/", headers=AUTH).json() == {"detail": "Not found."}
    assert client.get(f"{FEEDBACKS}{uid(1).replace('-', '')}/", headers=AUTH).status_code == 200  # 32 hex digits
    assert client.get(f"{FEEDBACKS}{uid(2)}/", params={"score": "1"}, headers=AUTH).status_code == 404
    assert client.get(f"{FEEDBACKS}{uid(2)}/", params={"score": "-1"}, headers=AUTH).status_code == 200
    bad = client.get(f"{FEEDBACKS}{uid(2)}/", params={"has_comment": "perhaps"}, headers=AUTH)
    assert (bad.status_code, list(bad.json())) == (400, ["has_comment"])


@pytest.mark.parametrize(
    ("query", "bad"),
    [
        ("score=good", "score"),
        ("score=1e", "score"),
        ("submitted_from=2026-13-01", "submitted_from"),
        ("submitted_to=today", "submitted_to"),
        ("has_comment=yes", "has_comment"),
        ("o=created", "o"),
        ("o=submitted_at,-modified_at", "o"),
        ("page=0", "page"),
        ("page_size=x", "page_size"),
    ],
)
def test_each_bad_parameter_is_a_400_naming_it(client: Any, query: str, bad: str) -> None:
    response = client.get(f"{FEEDBACKS}?{query}", headers=AUTH)
    assert (response.status_code, list(response.json())) == (400, [bad])


@pytest.mark.parametrize("path", [FEEDBACKS, f"{FEEDBACKS}{uid(1)}/"])
def test_staff_and_support_only(client: Any, path: str) -> None:
    missing = client.get(path)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Token"
    for token in (USER, INGEST):
        assert client.get(path, headers={"Authorization": f"Token {token}"}).status_code == 403
    assert client.get(path, headers={"Authorization": "Token support-token"}).status_code == 200
    assert client.post(path, headers=AUTH).status_code == 405
