"""`query`: the reference's full-text search (docs/api.md), through the fold and the API.

The reference's five acceptance cases (its AnonQuerySearchTest) come first, then the websearch syntax
and the text that is (and is not) searched, on every endpoint that filters.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import fulltext
from tests.support.api_data import AUTH, PREFIX, build_read_model, make_client, uid
from tests.support.events import turn

AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
TODAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def events() -> list[dict[str, Any]]:
    return [
        turn(
            "s-volume",
            at=AT,
            interaction_uuid=uid(1),
            user_slug="visitor-slug-content-0001",
            user_input="How do I resize my OpenStack volume?",
            assistant_blocks=[
                {"key": "markdown", "content": "You can extend it in the dashboard."},
                {"key": "homeport_nav", "content": "kubernetes"},  # navigation: not searched
                {"key": "tool", "name": "search", "result": {"text": "kubernetes"}},
            ],
        ),
        turn(
            "s-code",
            at=AT,
            interaction_uuid=uid(2),
            user_slug="other-visitor",
            user_input="show me a script",
            assistant_blocks=[
                {"key": "code", "tag": "python", "content": "print('allocations')"},
                {"key": "mermaid", "content": "graph TD; quota-->project"},
                {"type": "text", "text": "The storage of the cluster"},
            ],
        ),
        turn(
            "s-plain",
            at=AT,
            interaction_uuid=uid(3),
            user_input="Cluster storage, please",
            assistant_blocks=[{"type": "ask_user", "question": "which volume?"}],
        ),
    ]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    handle = build_read_model(tmp_path_factory.mktemp("fulltext") / "rm.duckdb", events())
    with make_client(handle, clock=lambda: TODAY) as c:
        yield c
    handle.close()


def found(client: Any, query: str) -> list[int]:
    response = client.get(f"{PREFIX}/", params={"query": query, "o": "created"}, headers=AUTH)
    assert response.status_code == 200, response.text
    numbers = {uid(n): n for n in range(1, 4)}
    return sorted(numbers[row["uuid"]] for row in response.json())


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("resize", [1]),  # "resize" and the input's "resize" share a stem
        ("extend", [1]),  # in the assistant's markdown
        ('"OpenStack volume"', [1]),  # a phrase, case-insensitive
        ("kubernetes", []),  # only in a navigation block and a tool result, which are not searched
        ("slug-content", [1]),  # through the user_slug, as a substring
    ],
)
def test_the_reference_acceptance_cases(client: Any, query: str, expected: list[int]) -> None:
    assert found(client, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("resizing", [1]),
        ("RESIZED volumes", [1]),
        ("storage cluster", [2, 3]),  # both words, any order
        ('"storage cluster"', []),  # the phrase needs them adjacent, in this order
        ('"cluster storage"', [3]),
        ('"storage of the cluster"', [2]),  # stop words keep their places in a phrase
        ('"storage the of cluster"', [2]),  # ... any stop words (Postgres matches positions, not words)
        ('"storage cluster" or extend', [1]),
        ("storage -python", [3]),
        ('storage -"cluster storage"', [2]),
        ("kubernetes or allocations", [2]),  # code blocks are searched, fenced with their tag
        ("python", [2]),
        ("mermaid quota", [2]),
        ("the of and", []),  # only stop words: no full-text condition (and no slug has the text)
        ("or", [1, 2]),  # no full-text condition, but both slugs contain "or" (visit-or)
        ("OTHER-VISITOR", [2]),  # the slug, case-insensitively
        ("visitor", [1, 2]),  # a substring of both slugs
        ("which volume", [1]),  # the ask_user form is not searched; turn 1's input has "volume"
        ('"openstack', [1]),  # an unterminated quote runs to the end
        ("-resize", [2, 3]),
        ("volume -", [1]),
    ],
)
def test_websearch_syntax_and_the_searched_text(client: Any, query: str, expected: list[int]) -> None:
    assert found(client, query) == expected


@pytest.mark.parametrize(
    "path",
    [f"{PREFIX}/", f"{PREFIX}/kpi/", f"{PREFIX}/by-user/", f"{PREFIX}/conversations/", f"{PREFIX}/by-session/s-code/"],
)
def test_every_filtering_endpoint_searches_the_same_way(client: Any, path: str) -> None:
    response = client.get(path, params={"query": "storage -python"}, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    if path.endswith("kpi/"):
        assert body["interactions_total"] == 1
    elif path.endswith("conversations/"):
        assert [row["session_id"] for row in body] == ["s-plain"]
    elif path.endswith("by-user/"):
        assert body == []  # s-plain has no user
    elif "by-session" in path:
        assert body == []
    else:
        assert [row["uuid"] for row in body] == [uid(3)]


def test_too_many_terms_is_a_400_naming_query(client: Any) -> None:
    query = " ".join(f"word{i}" for i in range(fulltext.MAX_ITEMS + 1))
    response = client.get(f"{PREFIX}/", params={"query": query}, headers=AUTH)
    assert (response.status_code, list(response.json())) == (400, ["query"])
    assert client.get(f"{PREFIX}/", params={"query": query.rsplit(" ", 1)[0]}, headers=AUTH).status_code == 200


def test_analysis_units() -> None:
    assert fulltext.stems("Resizing THE volumes, don't!") == ["resiz", "_", "volum", "_", "_"]
    assert fulltext.document_terms("", []) == " "
    parsed = fulltext.parse_query('a "b c" or -d-e')
    assert parsed.clauses == (
        (fulltext.Item(("b", "c"), False),),
        (fulltext.Item(("d", "e"), True),),
    )
    assert fulltext.parse_query("or or").clauses == ()
