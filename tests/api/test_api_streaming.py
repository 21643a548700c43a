"""Whole lists too long to build in memory are streamed (api.streaming): the same JSON, count and
position as when built whole, sent in chunks from one snapshot, with the read lease given back."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from api import queries, streaming
from api.params import ConversationFilters, Filters
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, PREFIX, USER_A, build_read_model, make_client
from tests.support.readmodel import lease_is_free
from tests.support.testclient import TestClient

WHOLE_LISTS = [
    f"{PREFIX}/by-user/{USER_A}/",
    f"{PREFIX}/by-user/{USER_A}/?o=-created",
    f"{PREFIX}/by-user/{USER_A}/?is_flagged=true",
    f"{PREFIX}/by-session/s1/",
    f"{PREFIX}/by-session/s2/?o=-result_count",
    f"{PREFIX}/conversations/",
    f"{PREFIX}/conversations/?o=total_tokens",
    f"{PREFIX}/conversations/?is_flagged=true",
    f"{PREFIX}/conversations/?total_tokens_min=300",
    f"{PREFIX}/conversations/?query=storage",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, ReadModelHandle]]:
    handle = build_read_model(tmp_path_factory.mktemp("stream") / "rm.duckdb")
    with make_client(handle) as c:
        yield c, handle
    handle.close()


@pytest.mark.parametrize("path", WHOLE_LISTS)
def test_a_streamed_whole_list_equals_the_one_built_whole(
    served: tuple[TestClient, ReadModelHandle], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    client, handle = served
    built = client.get(path, headers=AUTH)
    assert built.status_code == 200 and built.json(), "a list that is empty proves little"
    # Every non-empty whole list is now streamed, one row per chunk (by a server with nothing remembered).
    monkeypatch.setattr(queries, "STREAM_ROWS", 0)
    monkeypatch.setattr(streaming, "BATCH_ROWS", 1)
    with make_client(handle) as fresh, fresh.stream("GET", path, headers=AUTH) as response:
        chunks = list(response.iter_raw())
    assert response.status_code == 200
    assert "content-length" not in response.headers  # sent as it is read: its length is not known up front
    assert len(chunks) >= len(built.json())
    assert b"".join(chunks) == built.content
    for header in ("x-result-count", "x-read-model-position", "content-type"):
        assert response.headers[header] == built.headers[header]


def test_an_empty_whole_list_is_an_empty_array(
    served: tuple[TestClient, ReadModelHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    _client, handle = served
    monkeypatch.setattr(queries, "STREAM_ROWS", 0)
    response = make_client(handle).get(f"{PREFIX}/by-user/{'f' * 64}/", headers=AUTH)
    assert response.status_code == 200 and response.json() == [] and response.headers["x-result-count"] == "0"


@pytest.mark.parametrize("query", ["query=qqqxyzzy", "total_tokens_min=999999999", "is_flagged=true&query=qqqxyzzy"])
def test_an_empty_conversations_list_is_an_empty_array(served: tuple[TestClient, ReadModelHandle], query: str) -> None:
    client, _handle = served
    response = client.get(f"{PREFIX}/conversations/?{query}", headers=AUTH)
    assert response.status_code == 200 and response.json() == [] and response.headers["x-result-count"] == "0"


def test_the_read_lease_is_given_back_after_a_stream_whole_or_cut_short(
    served: tuple[TestClient, ReadModelHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    _client, handle = served
    monkeypatch.setattr(queries, "STREAM_ROWS", 0)
    monkeypatch.setattr(streaming, "BATCH_ROWS", 1)
    client = make_client(handle)
    client.get(f"{PREFIX}/by-user/{USER_A}/", headers=AUTH)
    with client.stream("GET", f"{PREFIX}/conversations/", headers=AUTH) as response:
        next(response.iter_raw())  # the client reads one chunk and goes away
    assert lease_is_free(handle)
    assert client.get(f"{PREFIX}/by-user/{USER_A}/", headers=AUTH).status_code == 200


def test_a_streamed_list_still_needs_a_staff_token(
    served: tuple[TestClient, ReadModelHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    _client, handle = served
    monkeypatch.setattr(queries, "STREAM_ROWS", 0)
    assert make_client(handle).get(f"{PREFIX}/by-user/{USER_A}/").status_code == 401


@pytest.mark.parametrize("path", WHOLE_LISTS)
@pytest.mark.parametrize("head", [0, 1, 2, 1000])
def test_a_list_sent_as_first_rows_then_the_rest_is_the_same_list(
    served: tuple[TestClient, ReadModelHandle], monkeypatch: pytest.MonkeyPatch, path: str, head: int
) -> None:
    # A long transcript, and the conversations list without turn-level filters, sends its first rows
    # from a top-N and the others from a second statement: wherever the cut falls, the body is the list
    # in order, each row once, as its pages give it.
    client, handle = served
    pages = client.get(path + ("&" if "?" in path else "?") + "page_size=1000", headers=AUTH)
    assert pages.status_code == 200 and len(pages.json()) >= 2
    monkeypatch.setattr(queries, "STREAM_ROWS", 0)
    monkeypatch.setattr(queries, "STREAM_HEAD_ROWS", head)
    monkeypatch.setattr(streaming, "BATCH_ROWS", 2)
    with make_client(handle) as fresh:
        response = fresh.get(path, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == pages.json()
    assert response.headers["x-result-count"] == pages.headers["x-result-count"]


def test_a_chunk_asked_after_the_stream_was_closed_reads_nothing(
    served: tuple[TestClient, ReadModelHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk asked for after `close` must not open the rest of the rows on a cursor the stream's lease
    has given back, where the open result would hold a transaction for good. (Until the spool, a request
    cut short was closed from one thread while another could still ask for its next chunk.)"""
    _client, handle = served
    monkeypatch.setattr(queries, "STREAM_HEAD_ROWS", 1)
    stream = streaming.RowStream(
        handle,
        queries.stream_conversations(Filters(), ConversationFilters(), ("-last_active",)),
        "chat.events",
        streaming.JsonTextArray(),
        batch_rows=1,
    )
    assert stream.next_chunk()  # the first rows: the head's statement
    executed: list[str] = []
    cursor = stream._cur
    monkeypatch.setattr(stream, "_open", lambda query: executed.append(query) or stream._reader)
    stream.close()
    assert stream.next_chunk() is None
    assert executed == []  # the rest was not opened
    with pytest.raises(duckdb.ConnectionException):
        cursor.execute("SELECT 1")  # and the stream's cursor is closed, not lent to a later request
    assert lease_is_free(handle)
