"""The reference's generated Python client (waldur-api-client 8.1.x) against this server, over a real
loopback socket (uvicorn in a thread, over a read model folded from events; no broker needed).

The client only parses what its generated models expect: `feedback` must be an object with a
category (so: a thumbs-down), and the JSON arrays it types as "free-form objects" (offering_uuids,
injection_categories, pii_categories) must be empty. The turns here are ones it can parse; the last
tests pin down the limitation on a turn it cannot, and on a feedback record whose category is "".
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from uuid import UUID

import pytest
import uvicorn
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.anonymous_chat_feedbacks import (
    anonymous_chat_feedbacks_list,
    anonymous_chat_feedbacks_retrieve,
)
from waldur_api_client.api.anonymous_chat_interactions import (
    anonymous_chat_interactions_budget_retrieve,
    anonymous_chat_interactions_by_session_list,
    anonymous_chat_interactions_by_user_aggregate,
    anonymous_chat_interactions_by_user_list,
    anonymous_chat_interactions_conversations_list,
    anonymous_chat_interactions_kpi_retrieve,
    anonymous_chat_interactions_list,
    anonymous_chat_interactions_retrieve,
)
from waldur_api_client.models.anonymous_chat_feedback_o_enum import AnonymousChatFeedbackOEnum
from waldur_api_client.models.anonymous_chat_interaction_o_enum import AnonymousChatInteractionOEnum
from waldur_api_client.models.injection_severity_enum import InjectionSeverityEnum
from waldur_api_client.utils import parse_link_header

from api.app import create_app
from auth.tokens import TokenStore
from serving.handle import ReadModelHandle
from tests.support.api_data import D1, D2, D3, NOW, STAFF, TOKENS, USER_A, USER_B, at, build_read_model, uid
from tests.support.events import feedback, review, turn, usage


def parsable_events() -> list[dict]:
    t1 = turn(
        "s1", at=at(D1, 9), interaction_uuid=uid(1), user_slug=USER_A, user_input="gpu?", input_tokens=10, model="m-2"
    )
    t2 = turn(
        "s1", at=at(D2, 9), interaction_uuid=uid(2), user_slug=USER_A, user_input="more", output_tokens=20, model="m-1"
    )
    t3 = turn(
        "s2",
        at=at(D3, 9),
        interaction_uuid=uid(3),
        user_slug=USER_B,
        user_input="storage?",
        assistant_blocks=[{"type": "ask_user", "question": "which?"}],
        is_flagged=True,
        severity="high",
        action_taken="block",
        input_tokens=5,
        output_tokens=6,
    )
    return [
        t1,
        t2,
        t3,
        feedback(t1, -1, "inaccurate", at=at(D1, 10), comment="no", ip_address="192.0.2.7"),
        feedback(t2, -1, "slow_or_failed", at=at(D2, 10)),
        feedback(t3, -1, "other", at=at(D3, 10)),
        review(t2, 3, at=at(D2, 11), intent_category="compute", judge_input_tokens=40, judge_output_tokens=4),
        usage(100, 50, at=at(D3, 11)),
    ]


class ServerThread:
    def __init__(self, app: object) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture(scope="module")
def read_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadModelHandle]:
    handle = build_read_model(tmp_path_factory.mktemp("waldur") / "rm.duckdb", parsable_events())
    yield handle
    handle.close()


@pytest.fixture(scope="module")
def client(read_model: ReadModelHandle) -> Iterator[AuthenticatedClient]:
    app = create_app(read_model, tokens=TokenStore(TOKENS), clock=lambda: NOW)
    with (
        ServerThread(app) as server,
        AuthenticatedClient(base_url=f"http://127.0.0.1:{server.port}", token=STAFF) as c,
    ):
        yield c


def test_budget(client: AuthenticatedClient) -> None:
    budget = anonymous_chat_interactions_budget_retrieve.sync(client=client)
    assert budget is not None
    assert (budget.tokens_today, budget.tokens_limit) == (5 + 6 + 100 + 50, 5_000_000)
    assert budget.resets_at.isoformat() == "2026-11-29T00:00:00+00:00"
    assert budget.additional_properties == {"requests_today": 2}


def test_kpi(client: AuthenticatedClient) -> None:
    kpi = anonymous_chat_interactions_kpi_retrieve.sync(client=client)
    assert kpi is not None
    assert (kpi.interactions_total, kpi.sessions_total, kpi.unique_users) == (3, 2, 2)
    assert (kpi.feedback_positive, kpi.feedback_negative, kpi.satisfaction_rate) == (0, 3, 0.0)
    assert (kpi.reviewed_total, kpi.avg_llm_resolution_score, kpi.review_coverage) == (1, 3.0, 0.5)
    assert kpi.llm_intent_distribution.additional_properties == {"compute": 1}
    assert (kpi.clarification_requests_total, kpi.review_input_tokens_total) == (1, 40)
    assert len(kpi.daily_volume) == 30 and kpi.daily_volume[-1].date == D3 and kpi.daily_volume[-1].count == 1
    assert kpi.severity_by_day.labels[-1] == D3 and kpi.severity_by_day.series.high[-1] == 1
    filtered = anonymous_chat_interactions_kpi_retrieve.sync(client=client, user_slug=USER_A, created_after=D2)
    assert filtered is not None and filtered.interactions_total == 1


def test_by_user_aggregate(client: AuthenticatedClient) -> None:
    rows = anonymous_chat_interactions_by_user_aggregate.sync(client=client)
    assert rows is not None
    assert [(r.user_slug, r.total_interactions, r.negative_feedback, r.injection_strikes) for r in rows] == [
        (USER_A, 2, 2, 0),
        (USER_B, 1, 1, 1),
    ]
    assert rows[0].last_seen is not None and rows[0].last_seen.isoformat() == "2026-11-27T09:00:00+00:00"


def test_list_with_filters_ordering_and_pagination(client: AuthenticatedClient) -> None:
    response = anonymous_chat_interactions_list.sync_detailed(client=client, page_size=2)
    assert response.status_code == 200 and response.parsed is not None
    assert [str(i.uuid) for i in response.parsed] == [uid(3), uid(2)]
    assert response.headers["x-result-count"] == "3"
    links = parse_link_header(response.headers["link"])
    assert set(links) == {"first", "next", "last"} and links["next"].endswith("page=2")
    first = response.parsed[0]
    assert first.severity == "high" and first.is_flagged and first.click_count == 0
    assert first.feedback.category.value == "other" and first.feedback.modified_at.year == 2026
    by_o = anonymous_chat_interactions_list.sync(
        client=client, o=[AnonymousChatInteractionOEnum.CREATED], severity=InjectionSeverityEnum.NONE
    )
    assert by_o is not None and [str(i.uuid) for i in by_o] == [uid(1), uid(2)]
    since = anonymous_chat_interactions_list.sync(client=client, created_after=date(2026, 11, 27), has_feedback=True)
    assert since is not None and [str(i.uuid) for i in since] == [uid(3), uid(2)]


def test_retrieve(client: AuthenticatedClient) -> None:
    one = anonymous_chat_interactions_retrieve.sync(uuid=uid(1), client=client)
    assert one is not None
    assert one.user_input == "gpu?" and one.input_tokens == 10
    assert one.feedback.score == -1 and one.feedback.comment == "no"
    assert one.feedback.submitted_from_ip == "192.0.2.7"
    assert one.created.isoformat() == "2026-11-26T09:00:00+00:00"


def test_transcripts(client: AuthenticatedClient) -> None:
    session = anonymous_chat_interactions_by_session_list.sync("s1", client=client)
    assert session is not None and [str(i.uuid) for i in session] == [uid(1), uid(2)]
    reviewed = session[1].feedback
    assert (reviewed.llm_resolution_score, reviewed.llm_intent_category, reviewed.llm_judge_input_tokens) == (
        3,
        "compute",
        40,
    )
    user = anonymous_chat_interactions_by_user_list.sync(USER_A, client=client)
    assert user is not None and [str(i.uuid) for i in user] == [uid(1), uid(2)]


def test_the_client_cannot_parse_a_turn_without_feedback(tmp_path: Path) -> None:
    # The server is right to send `"feedback": null` (docs/api.md); the generated client raises on it.
    handle = build_read_model(tmp_path / "rm.duckdb", [turn("s9", interaction_uuid=uid(9), user_input="hi")])
    app = create_app(handle, tokens=TokenStore(TOKENS), clock=lambda: NOW)
    with ServerThread(app) as server, AuthenticatedClient(f"http://127.0.0.1:{server.port}", token=STAFF) as c:
        raw = anonymous_chat_interactions_retrieve.sync_detailed
        with pytest.raises((TypeError, AttributeError, ValueError)):
            raw(uuid=uid(9), client=c)
    handle.close()


def test_conversations_with_turn_and_conversation_level_filters(client: AuthenticatedClient) -> None:
    rows = anonymous_chat_interactions_conversations_list.sync(client=client)
    assert rows is not None
    assert [(r.session_id, r.message_count, r.total_tokens, r.models_used) for r in rows] == [
        ("s2", 1, 11, ""),
        ("s1", 2, 30, "m-1, m-2"),
    ]
    s2 = rows[0]
    assert (s2.max_severity, s2.is_flagged, s2.has_feedback, s2.is_reviewed) == ("high", True, True, False)
    assert s2.last_active.isoformat() == "2026-11-28T09:00:00+00:00"

    def sessions(**filters: object) -> list[str]:
        got = anonymous_chat_interactions_conversations_list.sync(client=client, **filters)
        assert got is not None
        return [r.session_id for r in got]

    assert sessions(total_tokens_min=20.0) == ["s1"]
    assert sessions(is_reviewed=True) == ["s1"]
    assert sessions(last_active_after=D3) == ["s2"]
    assert sessions(query="storage") == ["s2"]
    assert sessions(created_before=D1, input_tokens_max=10.0) == ["s1"]
    assert sessions(severity=InjectionSeverityEnum.HIGH, is_flagged=True) == ["s2"]
    assert sessions(o=[AnonymousChatInteractionOEnum.CREATED]) == ["s1", "s2"]  # created means started
    paged = anonymous_chat_interactions_conversations_list.sync_detailed(client=client, page_size=1)
    assert paged.parsed is not None and [r.session_id for r in paged.parsed] == ["s2"]
    assert paged.headers["x-result-count"] == "2" and "next" in parse_link_header(paged.headers["link"])


def test_kpi_with_conversation_level_filters(client: AuthenticatedClient) -> None:
    narrowed = anonymous_chat_interactions_kpi_retrieve.sync(client=client, total_tokens_min=20.0)
    assert narrowed is not None
    assert (narrowed.interactions_total, narrowed.sessions_total, narrowed.output_tokens_total) == (2, 1, 20)
    unreviewed = anonymous_chat_interactions_kpi_retrieve.sync(client=client, is_reviewed=False)
    assert unreviewed is not None and (unreviewed.interactions_total, unreviewed.reviewed_total) == (1, 0)


def test_feedbacks_list_and_retrieve(client: AuthenticatedClient) -> None:
    response = anonymous_chat_feedbacks_list.sync_detailed(client=client)
    assert response.status_code == 200 and response.parsed is not None
    assert [str(f.interaction_uuid) for f in response.parsed] == [uid(3), uid(2), uid(1)]
    assert response.headers["x-result-count"] == "3"
    assert [f.category.value for f in response.parsed] == ["other", "slow_or_failed", "inaccurate"]
    oldest_first = anonymous_chat_feedbacks_list.sync(client=client, o=[AnonymousChatFeedbackOEnum.SUBMITTED_AT])
    assert [str(f.interaction_uuid) for f in oldest_first] == [uid(1), uid(2), uid(3)]
    commented = anonymous_chat_feedbacks_list.sync(client=client, has_comment=True, score=-1)
    assert [str(f.interaction_uuid) for f in commented] == [uid(1)]
    in_range = anonymous_chat_feedbacks_list.sync(client=client, submitted_from=D2, submitted_to=D2, page_size=5)
    assert [str(f.interaction_uuid) for f in in_range] == [uid(2)]
    assert anonymous_chat_feedbacks_list.sync(client=client, category="other")[0].interaction_uuid == UUID(uid(3))
    one = anonymous_chat_feedbacks_retrieve.sync(UUID(uid(2)), client=client)
    assert (one.score, one.llm_resolution_score, one.llm_judge_input_tokens, one.llm_judge_model) == (-1, 3, 40, "")
    assert one.modified_at.isoformat() == "2026-11-27T11:00:00+00:00"


def test_the_client_cannot_parse_a_feedback_record_without_category(tmp_path: Path) -> None:
    # The server sends `"category": ""` for a thumbs-up or a review alone, as the reference does (and
    # docs/api.md); the client's enum accepts only the five categories and raises.
    t = turn("s9", interaction_uuid=uid(9), user_input="hi")
    handle = build_read_model(tmp_path / "rm.duckdb", [t, feedback(t, 1)])
    app = create_app(handle, tokens=TokenStore(TOKENS), clock=lambda: NOW)
    with ServerThread(app) as server, AuthenticatedClient(f"http://127.0.0.1:{server.port}", token=STAFF) as c:
        with pytest.raises(ValueError, match="''"):
            anonymous_chat_feedbacks_list.sync(client=c)
        with pytest.raises(ValueError, match="''"):
            anonymous_chat_feedbacks_retrieve.sync(UUID(uid(9)), client=c)
        # The answer itself is what the contract says.
        raw = c.get_httpx_client().get("/api/anonymous-chat-feedbacks/").json()
        assert [(r["score"], r["category"]) for r in raw] == [(1, "")]
    handle.close()
