"""CSV export of the list endpoints (`format=csv` or `Accept: text/csv`): every matching row with the
same filters and order as JSON, `X-Result-Count` equal to the rows sent, streamed in several chunks,
auth as JSON, and the read lease given back however the export ends."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import orjson
import pytest

from api import csv_export
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, PREFIX, SUPPORT, USER, USER_A, T, build_read_model, make_client
from tests.support.readmodel import lease_is_free
from tests.support.testclient import TestClient

NAMES = {v: k for k, v in T.items()}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, ReadModelHandle]]:
    handle = build_read_model(tmp_path_factory.mktemp("csv") / "rm.duckdb")
    with make_client(handle) as c:
        yield c, handle
    handle.close()


@pytest.fixture
def client(served: tuple[TestClient, ReadModelHandle]) -> TestClient:
    return served[0]


def rows(response: object) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.text)))  # type: ignore[attr-defined]


def every_json_row(client: TestClient, path: str, **params: str) -> list[dict[str, object]]:
    """Every row of a JSON list, page by page, as a dashboard would walk it."""
    out: list[dict[str, object]] = []
    page = 1
    while True:
        response = client.get(path, params={**params, "page": str(page), "page_size": "2"}, headers=AUTH)
        assert response.status_code == 200, response.text
        out += response.json()
        if 'rel="next"' not in response.headers.get("link", ""):
            return out
        page += 1


@pytest.mark.parametrize(
    "params",
    [{}, {"is_flagged": "true"}, {"query": "storage"}, {"o": "result_count"}, {"created_from": "2026-11-27"}],
)
def test_csv_has_every_matching_row_in_the_json_order(client: TestClient, params: dict[str, str]) -> None:
    response = client.get(f"{PREFIX}/", params={**params, "format": "csv", "page_size": "1"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="interactions.csv"'
    exported = rows(response)
    expected = every_json_row(client, f"{PREFIX}/", **params)
    assert [r["uuid"] for r in exported] == [r["uuid"] for r in expected]  # page_size ignored: all of them
    assert int(response.headers["x-result-count"]) == len(exported)
    assert "link" not in response.headers


def test_a_csv_row_holds_the_json_fields_with_the_feedback_flattened(client: TestClient) -> None:
    exported = {r["uuid"]: r for r in rows(client.get(f"{PREFIX}/?format=csv", headers=AUTH))}
    t1 = client.get(f"{PREFIX}/{T['t1']}/", headers=AUTH).json()
    row = exported[T["t1"]]
    assert row["user_input"] == t1["user_input"] and row["created"] == t1["created"]
    assert orjson.loads(row["assistant_blocks"]) == t1["assistant_blocks"]
    assert orjson.loads(row["offering_uuids"]) == t1["offering_uuids"]
    assert row["is_flagged"] == "false" and row["result_count"] == str(t1["result_count"])
    assert row["feedback_score"] == "1" and row["feedback_submitted_from_ip"] == "192.0.2.1"
    # t7 has neither feedback nor review: JSON says `"feedback": null`, CSV leaves every feedback column empty.
    assert client.get(f"{PREFIX}/{T['t7']}/", headers=AUTH).json()["feedback"] is None
    assert all(v == "" for k, v in exported[T["t7"]].items() if k.startswith("feedback_"))


def test_accept_text_csv_chooses_csv_unless_json_ranks_higher(client: TestClient) -> None:
    def kind(accept: str) -> str:
        response = client.get(f"{PREFIX}/", headers={**AUTH, "Accept": accept})
        assert response.status_code == 200
        return response.headers["content-type"].split(";")[0]

    assert kind("text/csv") == "text/csv"
    assert kind("application/json;q=0.5, text/csv") == "text/csv"
    assert kind("application/json, text/csv") == "application/json"
    assert kind("text/csv;q=0.2, application/json") == "application/json"
    assert kind("*/*") == "application/json"
    # An explicit format wins over the header.
    assert (
        client.get(f"{PREFIX}/?format=json", headers={**AUTH, "Accept": "text/csv"})
        .headers["content-type"]
        .startswith("application/json")
    )


def test_transcripts_and_by_user_export_too(client: TestClient) -> None:
    session = client.get(f"{PREFIX}/by-session/s1/?format=csv", headers=AUTH)
    assert [NAMES[r["uuid"]] for r in rows(session)] == ["t1", "t2"]  # oldest first, as the JSON transcript
    assert session.headers["x-result-count"] == "2"
    user = client.get(f"{PREFIX}/by-user/{USER_A}/?format=csv", headers=AUTH)
    assert [NAMES[r["uuid"]] for r in rows(user)] == ["t1", "t2", "t6", "t7"]
    # A query filter that contradicts the path: nothing, but still the header line.
    none = client.get(f"{PREFIX}/by-session/s1/?format=csv&session_id=s2", headers=AUTH)
    assert none.headers["x-result-count"] == "0" and none.text.startswith('"uuid",') and rows(none) == []

    for params in ({}, {"is_flagged": "true"}, {"user_slug": USER_A}):
        exported = client.get(f"{PREFIX}/by-user/", params={**params, "format": "csv"}, headers=AUTH)
        expected = client.get(f"{PREFIX}/by-user/", params=params, headers=AUTH).json()
        assert rows(exported) == [{k: str(v) for k, v in r.items()} for r in expected]
        assert exported.headers["x-result-count"] == str(len(expected))


def test_bad_values_auth_and_head(client: TestClient) -> None:
    bad = client.get(f"{PREFIX}/?format=xml&severity=nope", headers=AUTH)
    assert bad.status_code == 400 and set(bad.json()) == {"format", "severity"}
    assert client.get(f"{PREFIX}/?format=csv&severity=nope", headers=AUTH).json() == {
        "severity": ["Select a valid choice: none, low, medium, high, critical."]
    }
    assert client.get(f"{PREFIX}/?format=csv").status_code == 401
    assert client.get(f"{PREFIX}/?format=csv", headers={"Authorization": f"Token {USER}"}).status_code == 403
    assert client.get(f"{PREFIX}/?format=csv", headers={"Authorization": f"Token {SUPPORT}"}).status_code == 200
    head = client.head(f"{PREFIX}/?format=csv&is_flagged=true", headers=AUTH)
    assert head.status_code == 200 and head.content == b"" and head.headers["x-result-count"] == "4"


def test_rows_are_streamed_in_batches(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_export, "BATCH_ROWS", 2)
    with client.stream("GET", f"{PREFIX}/?format=csv", headers=AUTH) as response:
        chunks = list(response.iter_raw())
    assert len(chunks) >= 4  # 7 rows in batches of 2
    body = b"".join(chunks).decode()
    assert body.count("\n") == 8 and response.headers["x-result-count"] == "7"


def test_the_read_lease_is_given_back_after_an_export_whole_or_cut_short(
    served: tuple[TestClient, ReadModelHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, handle = served
    monkeypatch.setattr(csv_export, "BATCH_ROWS", 1)
    client.get(f"{PREFIX}/?format=csv", headers=AUTH)
    with client.stream("GET", f"{PREFIX}/?format=csv", headers=AUTH) as response:
        next(response.iter_raw())  # the client reads one chunk and goes away
    assert lease_is_free(handle)
    assert client.get(f"{PREFIX}/?format=csv", headers=AUTH).headers["x-result-count"] == "7"


@pytest.mark.parametrize(
    "params",
    [{}, {"is_flagged": "true"}, {"o": "-total_tokens"}, {"total_tokens_min": "300", "o": "started"}],
)
def test_conversations_export_the_json_rows_field_for_field(client: TestClient, params: dict[str, str]) -> None:
    response = client.get(f"{PREFIX}/conversations/", params={**params, "format": "csv"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == 'attachment; filename="conversations.csv"'
    expected = client.get(f"{PREFIX}/conversations/", params=params, headers=AUTH).json()
    assert expected, "a filter that leaves nothing proves little"

    def text(value: object) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    assert rows(response) == [{k: text(v) for k, v in r.items()} for r in expected]
    assert response.headers["x-result-count"] == str(len(expected))
