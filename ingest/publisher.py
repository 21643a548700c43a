"""The Python publisher: one method per event type, validated before it leaves the process.

    with Publisher("127.0.0.1:9092") as publisher:
        publisher.turn_recorded(interaction_uuid=..., session_id="s1", user_input="hi", ip_address="203.0.113.7").get()

Every method fills `event_id` and `occurred_at` unless given, encodes the event to JSON, validates
exactly those bytes with the registry the projector uses, and only then hands them to Kafka, keyed
by the session. The producer is idempotent with `acks='all'`: a record is acknowledged only once
every in-sync replica has it, and the producer's own retries never write it twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any
from uuid import UUID

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata, RecordMetadata
from kafka.record.default_records import DefaultRecordBatchBuilder
from pydantic import BaseModel

from broker.clients import made
from ingest.envelope import CURRENT_VERSION, complete, encode, key_of
from schemas.events import (
    ERASURE_REQUESTED,
    FEEDBACK_SUBMITTED,
    OFFERING_CLICKED,
    SESSION_REVIEWED,
    TURN_RECORDED,
    USAGE_RECORDED,
)
from schemas.registry import DEFAULT_REGISTRY, EventRegistry, EventRejected, FieldError, Rejection
from schemas.settings import DEFAULT_TOPIC, ENV_USER_SLUG_SALT, Settings
from schemas.settings import ip_policy as _ip_policy

log = logging.getLogger(__name__)
_salt_warned = False
SALT_WARNING = (
    f"{ENV_USER_SLUG_SALT} is empty: turns get no user_slug, so no visitor can be told apart or erased by "
    "pseudonym (docs/privacy.md)"
)


def warn_once_if_no_salt(salt: str) -> None:
    """Logs SALT_WARNING once per process when `salt` is empty."""
    global _salt_warned
    if not salt and not _salt_warned:
        _salt_warned = True
        log.warning("%s", SALT_WARNING)


log = logging.getLogger(__name__)

Timestamp = datetime | str
Uuid = UUID | str

# Throughput settings for bulk publishing (publish_raw); a single send is still sent within 5 ms.
_PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger_ms": 5,
    "batch_size": 256 * 1024,
    "compression_type": None,
    "client_id": "chat-analytics-ingest",
}


# A server's producer (serve's ingest endpoint) must never hold a request long: without a broker,
# `send()` gives up after `max_block_ms` instead of 60 s, and an unacknowledged record fails after
# `delivery_timeout_ms` instead of 2 minutes.
SERVER_PRODUCER_CONFIG: dict[str, Any] = {
    "max_block_ms": 3000,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 20_000,
    "bootstrap_timeout_ms": 5000,
}
CONNECT_BACKOFF_MAX_S = 30.0


class BrokerUnavailable(RuntimeError):
    """No producer yet: Kafka has not been reachable since start-up (a background connect retries)."""


class InvalidEvent(ValueError):
    """The event breaks a rule of docs/events.md; nothing was sent. `errors` names each broken field."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.reason}: {rejection.detail}")
        self.rejection = rejection
        self.errors: tuple[FieldError, ...] = rejection.errors


@dataclass(frozen=True, slots=True)
class Prepared:
    """An event ready to send: the validated model and the exact bytes that were validated."""

    event: BaseModel
    key: bytes
    value: bytes

    @property
    def event_id(self) -> str:
        return str(self.event.event_id)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class SendResult:
    """A sent event: `get()` blocks until Kafka acknowledges it (or raises Kafka's error)."""

    event_id: str
    event: BaseModel
    future: FutureRecordMetadata

    def get(self, timeout: float | None = None) -> RecordMetadata:
        return self.future.get(timeout)

    @property
    def is_done(self) -> bool:
        return bool(self.future.is_done)


def _drop_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    # An omitted keyword means "the contract's default", which is what an absent field means too.
    return {k: v for k, v in fields.items() if v is not None}


class Publisher:
    def __init__(
        self,
        bootstrap_servers: str | list[str],
        topic: str = DEFAULT_TOPIC,
        *,
        user_slug_salt: str | None = None,
        registry: EventRegistry = DEFAULT_REGISTRY,
        ip_policy: str | None = None,
        connect_in_background: bool = False,
        **producer_config: Any,
    ) -> None:
        """`user_slug_salt` defaults to CHAT_ANALYTICS_USER_SLUG_SALT and `ip_policy` ("keep" or "drop")
        to CHAT_ANALYTICS_IP_POLICY; extra keywords go to KafkaProducer (except `enable_idempotence`
        and `acks`, which stay on and 'all'). With `connect_in_background` the constructor does not
        wait for a broker: a thread connects (retrying with back-off) and until it has, `send` raises
        BrokerUnavailable."""
        self.topic = topic
        self.registry = registry
        self.user_slug_salt = Settings.from_env().user_slug_salt if user_slug_salt is None else user_slug_salt
        self.drop_ip = (ip_policy or _ip_policy()) == "drop"
        warn_once_if_no_salt(self.user_slug_salt)
        self._config = {
            **_PRODUCER_DEFAULTS,
            **producer_config,
            "bootstrap_servers": bootstrap_servers,
            "enable_idempotence": True,
            "acks": "all",
        }
        self._raw_error: BaseException | None = None
        self._raw_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._closed = threading.Event()
        self._producer: KafkaProducer | None = None
        if connect_in_background:
            threading.Thread(target=self._connect_until_done, name="ingest-connect", daemon=True).start()
        else:
            self._producer = made(KafkaProducer, **self._config)

    def _connect_until_done(self) -> None:
        backoff = 1.0
        while not self._closed.is_set():
            try:
                producer = made(KafkaProducer, **self._config)
            except Exception as exc:
                log.warning("ingest: Kafka not reachable (%s); retrying in %.0f s", type(exc).__name__, backoff)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, CONNECT_BACKOFF_MAX_S)
                continue
            with self._swap_lock:
                if self._closed.is_set():
                    producer.close(timeout=0)
                    return
                self._producer = producer
            log.info("ingest: connected to Kafka")
            return

    @property
    def connected(self) -> bool:
        """Whether a producer exists (it may still be unable to reach a broker that went away since)."""
        return self._producer is not None

    # ---- the event types ----

    def turn_recorded(
        self,
        *,
        interaction_uuid: Uuid,
        session_id: str,
        user_input: str,
        user_slug: str | None = None,
        ip_address: str | None = None,
        assistant_blocks: list[Any] | None = None,
        offering_uuids: list[Uuid] | None = None,
        result_count: int | None = None,
        is_flagged: bool | None = None,
        severity: str | None = None,
        injection_categories: list[str] | None = None,
        pii_categories: list[str] | None = None,
        action_taken: str | None = None,
        warning: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        last_active_at: Timestamp | None = None,
        event_id: Uuid | None = None,
        occurred_at: Timestamp | None = None,
    ) -> SendResult:
        """One chat turn. Without `user_slug`, it is derived from `ip_address` (or "" when there is
        no IP either: the turn then belongs to no user); `user_input` is cut to 2000 characters."""
        data = _drop_none(
            {
                "interaction_uuid": interaction_uuid,
                "session_id": session_id,
                "user_slug": user_slug,
                "ip_address": ip_address,
                "user_input": user_input,
                "assistant_blocks": assistant_blocks,
                "offering_uuids": offering_uuids,
                "result_count": result_count,
                "is_flagged": is_flagged,
                "severity": severity,
                "injection_categories": injection_categories,
                "pii_categories": pii_categories,
                "action_taken": action_taken,
                "warning": warning,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "last_active_at": last_active_at,
            }
        )
        if user_slug is None and ip_address is None:
            data["user_slug"] = ""
        return self._publish(TURN_RECORDED, data, event_id, occurred_at)

    def feedback_submitted(
        self,
        *,
        interaction_uuid: Uuid,
        session_id: str,
        score: int,
        category: str | None = None,
        comment: str | None = None,
        ip_address: str | None = None,
        event_id: Uuid | None = None,
        occurred_at: Timestamp | None = None,
    ) -> SendResult:
        """A thumbs up (1) or down (-1, with a category) on one turn."""
        data = _drop_none(
            {
                "interaction_uuid": interaction_uuid,
                "session_id": session_id,
                "score": score,
                "category": category,
                "comment": comment,
                "ip_address": ip_address,
            }
        )
        return self._publish(FEEDBACK_SUBMITTED, data, event_id, occurred_at)

    def offering_clicked(
        self,
        *,
        interaction_uuid: Uuid,
        session_id: str,
        offering_uuid: Uuid,
        event_id: Uuid | None = None,
        occurred_at: Timestamp | None = None,
    ) -> SendResult:
        """A click on one of the offerings the turn suggested."""
        data = {"interaction_uuid": interaction_uuid, "session_id": session_id, "offering_uuid": offering_uuid}
        return self._publish(OFFERING_CLICKED, data, event_id, occurred_at)

    def session_reviewed(
        self,
        *,
        session_id: str,
        interaction_uuid: Uuid,
        resolution_score: int,
        intent_category: str,
        hallucination_detected: bool,
        hallucination_details: str | None = None,
        summary: str | None = None,
        judge_model: str | None = None,
        judge_input_tokens: int | None = None,
        judge_output_tokens: int | None = None,
        event_id: Uuid | None = None,
        occurred_at: Timestamp | None = None,
    ) -> SendResult:
        """The LLM judge's verdict on a finished session, stored on the reviewed turn."""
        data = _drop_none(
            {
                "session_id": session_id,
                "interaction_uuid": interaction_uuid,
                "resolution_score": resolution_score,
                "intent_category": intent_category,
                "hallucination_detected": hallucination_detected,
                "hallucination_details": hallucination_details,
                "summary": summary,
                "judge_model": judge_model,
                "judge_input_tokens": judge_input_tokens,
                "judge_output_tokens": judge_output_tokens,
            }
        )
        return self._publish(SESSION_REVIEWED, data, event_id, occurred_at)

    def usage_recorded(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        source: str | None = None,
        event_id: Uuid | None = None,
        occurred_at: Timestamp | None = None,
    ) -> SendResult:
        """Tokens the assistant spent outside the anonymous flow (they count towards the daily budget)."""
        data = _drop_none({"input_tokens": input_tokens, "output_tokens": output_tokens, "source": source})
        return self._publish(USAGE_RECORDED, data, event_id, occurred_at)

    def request_erasure(
        self,
        *,
        user_slug: str | None = None,
        session_id: str | None = None,
        reason: str | None = None,
        event_id: Uuid | None = None,
        occurred_at: Timestamp | None = None,
    ) -> SendResult:
        """Forget one visitor (`user_slug`) or one session (`session_id`), exactly one of the two: every
        turn of it up to now leaves the read model for good (docs/privacy.md). Keyed by the session,
        else by the user."""
        data = _drop_none({"user_slug": user_slug, "session_id": session_id, "reason": reason})
        return self._publish(ERASURE_REQUESTED, data, event_id, occurred_at)

    # ---- generic paths ----

    def prepare(self, event: Mapping[str, Any]) -> Prepared:
        """Completes, encodes and validates one event given as an envelope mapping; raises InvalidEvent."""
        completed = complete(dict(event), self.user_slug_salt, drop_ip=self.drop_ip)
        try:
            value = encode(completed)
        except TypeError as exc:
            error = FieldError("(event)", f"cannot be encoded as JSON: {exc}")
            raise InvalidEvent(Rejection("invalid_json", f"{error.field}: {error.message}", errors=(error,))) from None
        return self.validate(value)

    def validate(self, value: bytes) -> Prepared:
        """Validates already-encoded bytes exactly as the projector will read them; raises InvalidEvent."""
        try:
            event = self.registry.parse(value)
        except EventRejected as exc:
            raise InvalidEvent(exc.rejection) from None
        return Prepared(event, key_of(event), value)

    @property
    def max_record_bytes(self) -> int:
        """The largest record (batch overhead included) the producer accepts (`max_request_size`)."""
        return int(self._config.get("max_request_size", KafkaProducer.DEFAULT_CONFIG["max_request_size"]))

    def fits(self, prepared: Prepared) -> bool:
        """Whether `send` will accept it; too large, it raises before anything is sent."""
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(prepared.key, prepared.value, [])
        return bool(size <= self.max_record_bytes)

    def send(self, prepared: Prepared) -> SendResult:
        """Hands a prepared event to Kafka; the result's `get()` waits for the acknowledgement."""
        future = self._usable_producer().send(self.topic, value=prepared.value, key=prepared.key)
        return SendResult(prepared.event_id, prepared.event, future)

    def _usable_producer(self) -> KafkaProducer:
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("no connection to Kafka yet")
        # kafka-python 3 puts an idempotent (non-transactional) producer into a fatal state on any
        # non-retriable error, such as one record over the topic's max.message.bytes: every later send
        # would fail too. That error has reached its caller; carry on with a fresh producer (and id).
        manager = getattr(producer, "_transaction_manager", None)
        if manager is not None and manager.has_fatal_error():
            with self._swap_lock:
                if self._producer is producer:
                    self._producer = made(KafkaProducer, **self._config)
                    producer.close(timeout=0)
        return self._producer

    def publish(self, event: Mapping[str, Any]) -> SendResult:
        """Any event of the contract, as an envelope mapping (`type`, `version`, `data`, ...)."""
        return self.send(self.prepare(event))

    def _publish(
        self, type_: str, data: dict[str, Any], event_id: Uuid | None, occurred_at: Timestamp | None
    ) -> SendResult:
        envelope: dict[str, Any] = {"type": type_, "version": CURRENT_VERSION, "data": data}
        if event_id is not None:
            envelope["event_id"] = event_id
        if occurred_at is not None:
            envelope["occurred_at"] = occurred_at
        return self.publish(envelope)

    def publish_raw(self, records: Iterable[tuple[bytes | None, bytes]], *, flush: bool = True) -> int:
        """Sends already-encoded (key, value) pairs as they are, without validation (the demo generator
        and the benchmarks use it for speed). Returns how many were handed to Kafka. A delivery error
        is raised by this call when `flush` is true, else by the next `flush()`."""
        send = self._usable_producer().send
        topic = self.topic
        count = 0
        for key, value in records:
            send(topic, value=value, key=key).add_errback(self._remember_raw_error)
            count += 1
        if flush:
            self.flush()
        return count

    def _remember_raw_error(self, exc: BaseException) -> None:
        with self._raw_lock:
            if self._raw_error is None:
                self._raw_error = exc

    def flush(self, timeout: float | None = None) -> None:
        """Waits until every event sent so far is acknowledged; raises the first error of publish_raw."""
        if self._producer is not None:
            self._producer.flush(timeout)
        with self._raw_lock:
            error, self._raw_error = self._raw_error, None
        if error is not None:
            raise error

    def close(self, timeout: float | None = None) -> None:
        self._closed.set()
        try:
            self.flush(timeout)
        finally:
            with self._swap_lock:
                producer = self._producer
            if producer is not None:
                producer.close(timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
