"""The list endpoint: every filter alone and combined, every ordering, pagination and its edges, and
400s naming each bad parameter. Expected rows come from the table in tests/support/api_data.py."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.api_data import AUTH, PREFIX, build_read_model, make_client, uuids
from tests.support.testclient import TestClient

LIST = f"{PREFIX}/"
ALL_NEWEST_FIRST = ["t7", "t6", "t5", "t4", "t3", "t2", "t1"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    handle = build_read_model(tmp_path_factory.mktemp("list") / "rm.duckdb")
    with make_client(handle) as c:
        yield c
    handle.close()


def get(client: TestClient, raw: str = "", **params: object) -> list[str]:
    response = client.get(f"{LIST}?{raw}" if raw else LIST, params=params or None, headers=AUTH)
    assert response.status_code == 200, response.text
    return uuids(response)


def test_default_order_is_newest_first_with_uuid_breaking_the_tie(client: TestClient) -> None:
    # t6 and t7 share their created instant: the larger uuid comes first in -created order.
    assert get(client) == ALL_NEWEST_FIRST


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"created_from": "2026-11-27"}, ["t7", "t6", "t5", "t4"]),
        ({"created_to": "2026-11-26"}, ["t3", "t2", "t1"]),
        ({"created_after": "2026-11-27"}, ["t7", "t6", "t5", "t4"]),
        ({"created_before": "2026-11-26"}, ["t3", "t2", "t1"]),
        ({"created_from": "2026-11-27", "created_to": "2026-11-27"}, ["t5", "t4"]),
        ({"created_from": "2026-11-29"}, []),
        ({"has_feedback": "true"}, ["t6", "t4", "t2", "t1"]),
        ({"has_feedback": "false"}, ["t7", "t5", "t3"]),
        ({"has_negative_feedback": "true"}, ["t6", "t2"]),
        ({"has_negative_feedback": "false"}, ["t7", "t5", "t4", "t3", "t1"]),
        ({"is_flagged": "true"}, ["t6", "t5", "t3", "t2"]),
        ({"is_flagged": "True"}, ["t6", "t5", "t3", "t2"]),
        ({"is_flagged": "1"}, ["t6", "t5", "t3", "t2"]),
        ({"is_flagged": "false"}, ["t7", "t4", "t1"]),
        ({"is_flagged": "False"}, ["t7", "t4", "t1"]),
        ({"is_flagged": "0"}, ["t7", "t4", "t1"]),
        ({"severity": "none"}, ["t7", "t4", "t1"]),
        ({"severity": "low"}, ["t2"]),
        ({"severity": "medium"}, ["t5"]),
        ({"severity": "high"}, ["t6"]),
        ({"severity": "critical"}, ["t3"]),
        ({"session_id": "s1"}, ["t2", "t1"]),
        ({"session_id": "s9"}, []),
        ({"user_slug": "a" * 64}, ["t7", "t6", "t2", "t1"]),
        ({"user_slug": "a" * 63}, []),
        ({"query": "storage"}, ["t6", "t2"]),  # t2 by its input, t6 by input and block text
        ({"query": "STORAGE"}, ["t6", "t2"]),
        ({"query": "hpc cluster"}, ["t1"]),  # only in a text block
        ({"query": "questions"}, ["t7"]),  # stemmed: "question" in the input
        ({"query": "50%_off"}, []),  # only in an ask_user form, which is not searched
        ({"query": "%"}, []),  # literal, not a wildcard: no word and no slug has it
        ({"query": "_"}, []),
        ({"query": "ünïcode query"}, ["t5"]),
        ({"query": "no such text"}, []),
        ({"query": "aaaaaaaaaa"}, ["t7", "t6", "t2", "t1"]),  # a part of user A's slug
        ({"query": "kubernetes or gpu"}, ["t4", "t1"]),
        ({"query": "storage -quota"}, ["t2"]),
        ({"query": '"object storage"'}, ["t6"]),
        ({"query": '"storage object"'}, []),  # a phrase keeps its order
    ],
)
def test_each_filter_alone(client: TestClient, params: dict[str, str], expected: list[str]) -> None:
    assert get(client, **params) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"user_slug": "a" * 64, "is_flagged": "true"}, ["t6", "t2"]),
        ({"severity": "none", "created_from": "2026-11-27"}, ["t7", "t4"]),
        ({"session_id": "s2", "has_feedback": "true", "query": "kubernetes"}, ["t4"]),
        ({"is_flagged": "false", "severity": "none", "created_to": "2026-11-27"}, ["t4", "t1"]),
        ({"has_negative_feedback": "false", "has_feedback": "true"}, ["t4", "t1"]),
        ({"created_after": "2026-11-26", "created_from": "2026-11-27"}, ["t7", "t6", "t5", "t4"]),  # both hold
        ({"user_slug": "b" * 64, "severity": "low"}, []),
        (
            {
                "created_from": "2026-11-26",
                "created_to": "2026-11-28",
                "has_feedback": "true",
                "has_negative_feedback": "true",
                "is_flagged": "true",
                "query": "quota",
                "severity": "high",
                "session_id": "s4",
                "user_slug": "a" * 64,
            },
            ["t6"],
        ),
    ],
)
def test_filters_combined(client: TestClient, params: dict[str, str], expected: list[str]) -> None:
    assert get(client, **params) == expected


def test_empty_values_mean_not_given_and_the_last_repeat_wins(client: TestClient) -> None:
    assert get(client, "severity=&user_slug=&query=&is_flagged=") == ALL_NEWEST_FIRST
    assert get(client, "severity=critical&severity=low") == ["t2"]


@pytest.mark.parametrize(
    ("o", "expected"),
    [
        ("created", ["t1", "t2", "t3", "t4", "t5", "t6", "t7"]),
        ("-created", ALL_NEWEST_FIRST),
        # result counts: t1 2, t4 1, t6 3, the rest 0; ties by uuid in the first term's direction
        ("result_count", ["t2", "t3", "t5", "t7", "t4", "t1", "t6"]),
        ("-result_count", ["t6", "t1", "t4", "t7", "t5", "t3", "t2"]),
        ("-result_count,created", ["t6", "t1", "t4", "t2", "t3", "t5", "t7"]),
        ("result_count,-created", ["t7", "t5", "t3", "t2", "t4", "t1", "t6"]),
    ],
)
def test_each_ordering(client: TestClient, o: str, expected: list[str]) -> None:
    assert get(client, o=o) == expected


def test_repeated_o_orders_like_comma_separated(client: TestClient) -> None:
    # The generated clients send a list as repeated parameters.
    assert get(client, "o=result_count&o=-created") == get(client, o="result_count,-created")


def test_ordering_applies_to_filtered_rows(client: TestClient) -> None:
    assert get(client, o="-result_count", is_flagged="true") == ["t6", "t5", "t3", "t2"]


def links(response: object) -> dict[str, dict[str, list[str]]]:
    """rel -> the query of its URL."""
    header = response.headers["link"]  # type: ignore[attr-defined]
    out = {}
    for part in header.split(", "):
        url, rel = part.split("; ")
        assert url.startswith("<http://testserver/api/anonymous-chat-interactions/?") and url.endswith(">")
        out[rel.removeprefix('rel="').removesuffix('"')] = parse_qs(urlsplit(url[1:-1]).query)
    return out


def page(client: TestClient, **params: object) -> tuple[list[str], int, dict[str, dict[str, list[str]]]]:
    response = client.get(LIST, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return uuids(response), int(response.headers["x-result-count"]), links(response)


def page_numbers(rels: dict[str, dict[str, list[str]]]) -> dict[str, int]:
    return {rel: int(query["page"][0]) for rel, query in rels.items()}


def test_first_middle_and_last_page_with_their_links(client: TestClient) -> None:
    rows, total, rels = page(client, page_size=3)
    assert (rows, total, page_numbers(rels)) == (["t7", "t6", "t5"], 7, {"first": 1, "next": 2, "last": 3})
    rows, total, rels = page(client, page_size=3, page=2)
    assert (rows, page_numbers(rels)) == (["t4", "t3", "t2"], {"first": 1, "prev": 1, "next": 3, "last": 3})
    rows, total, rels = page(client, page_size=3, page=3)
    assert (rows, page_numbers(rels)) == (["t1"], {"first": 1, "prev": 2, "last": 3})
    assert all(query["page_size"] == ["3"] for query in rels.values())


def test_links_keep_every_other_parameter_including_repeats(client: TestClient) -> None:
    response = client.get(f"{LIST}?is_flagged=true&o=created&o=-result_count&page_size=1&page=2", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["link"].count("rel=") == 4
    for query in links(response).values():
        assert query["is_flagged"] == ["true"] and query["o"] == ["created", "-result_count"]
        assert query["page_size"] == ["1"]


def test_link_header_format(client: TestClient) -> None:
    response = client.get(LIST, params={"page_size": 5, "page": 2}, headers=AUTH)
    # Each link asks for at least this page's read-model position (see docs/scaling.md).
    position = response.headers["x-read-model-position"]
    base = f"http://testserver/api/anonymous-chat-interactions/?page_size=5&min_position={position}&page="
    assert response.headers["link"] == f'<{base}1>; rel="first", <{base}1>; rel="prev", <{base}2>; rel="last"'


def test_page_past_the_last_is_404(client: TestClient) -> None:
    response = client.get(LIST, params={"page_size": 3, "page": 4}, headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}
    huge = client.get(LIST, params={"page": "9" * 40}, headers=AUTH)
    assert (huge.status_code, huge.json()) == (404, {"detail": "Invalid page."})


def test_an_empty_result_has_page_one_and_nothing_after(client: TestClient) -> None:
    rows, total, rels = page(client, user_slug="b" * 64, severity="low")
    assert (rows, total, page_numbers(rels)) == ([], 0, {"first": 1, "last": 1})
    response = client.get(LIST, params={"user_slug": "b" * 64, "severity": "low", "page": 2}, headers=AUTH)
    assert response.status_code == 404


def test_page_size_defaults_to_10_and_is_cut_to_300(client: TestClient) -> None:
    rows, total, rels = page(client)
    assert (len(rows), page_numbers(rels)) == (7, {"first": 1, "last": 1})
    rows, total, rels = page(client, page_size=500)
    assert (len(rows), page_numbers(rels)) == (7, {"first": 1, "last": 1})
    huge, _, _ = page(client, page_size="9" * 30)
    assert huge == ALL_NEWEST_FIRST


@pytest.mark.parametrize(
    "params",
    [
        {"o": "created"},
        {"o": "-created"},
        {"o": "-result_count"},
        {"severity": "none"},
        {"is_flagged": "false", "o": "created"},
        {"is_flagged": "true"},
        {"created_from": "2026-11-27", "severity": "none"},
        {"session_id": "s4"},
        {"user_slug": "a" * 64, "o": "created"},
        {"query": "storage or question or gpu"},
    ],
)
def test_walking_the_pages_yields_each_row_once_in_order(client: TestClient, params: dict[str, str]) -> None:
    whole = get(client, **params)
    walked: list[str] = []
    for n in range(1, len(whole) + 1):
        rows, total, _ = page(client, page=n, page_size=1, **params)
        assert total == len(whole)
        walked += rows
    assert walked == whole


@pytest.mark.parametrize(
    ("query", "bad"),
    [
        ("created_from=2026-02-30", "created_from"),
        ("created_to=26-11-2026", "created_to"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-11-26T00:00:00", "created_before"),
        ("has_feedback=yes", "has_feedback"),
        ("has_negative_feedback=2", "has_negative_feedback"),
        ("is_flagged=maybe", "is_flagged"),
        ("is_flagged=TRUE", "is_flagged"),
        ("severity=NONE", "severity"),
        ("severity=urgent", "severity"),
        ("o=uuid", "o"),
        ("o=created,bogus", "o"),
        ("o=created&o=-bogus", "o"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=1.5", "page"),
        ("page=1e3", "page"),
        ("page=.0", "page"),
        ("page=%D9%A1", "page"),  # an Arabic-Indic digit one
        ("page_size=0", "page_size"),
        ("page_size=ten", "page_size"),
    ],
)
def test_each_kind_of_bad_value_is_a_400_naming_the_parameter(client: TestClient, query: str, bad: str) -> None:
    response = client.get(f"{LIST}?{query}", headers=AUTH)
    assert response.status_code == 400
    body = response.json()
    assert list(body) == [bad]
    assert isinstance(body[bad], list) and body[bad] and all(isinstance(m, str) and m for m in body[bad])


def test_all_bad_parameters_are_reported_at_once(client: TestClient) -> None:
    query = "page=x&page_size=0&severity=bad&o=zzz&is_flagged=maybe&created_from=2020-13-01&has_feedback=2"
    response = client.get(f"{LIST}?{query}", headers=AUTH)
    assert response.status_code == 400
    assert set(response.json()) == {"page", "page_size", "severity", "o", "is_flagged", "created_from", "has_feedback"}


@pytest.mark.parametrize(
    "query",
    [
        "session_id=%00",
        "query=%00%01",
        "user_slug=a%00b",
        "query=%FF%FE",
        "query=" + "x" * 20000,
        "session_id=%E2%9C%93&query=%F0%9F%98%80",
        "page=" + "1" * 5000,
        "page_size=" + "1" * 5000,
        "window_days=" + "9" * 100,
        "o=&o=,&o=created,,",
        "severity=&severity=",
        "created_from=9999-12-31&created_to=0001-01-01",
        "created_from=0000-01-01",
        "page&page_size&o&query",
        "%ZZ=1&=2&&=",
        "query=%25%5F%5C",
    ],
)
def test_no_query_string_gives_a_server_error(client: TestClient, query: str) -> None:
    for path in (LIST, f"{PREFIX}/kpi/", f"{PREFIX}/by-user/", f"{PREFIX}/by-session/s1/", f"{PREFIX}/budget/"):
        response = client.get(f"{path}?{query}", headers=AUTH)
        assert response.status_code in (200, 400, 404), (path, query, response.text)
        assert response.headers["content-type"] == "application/json"
