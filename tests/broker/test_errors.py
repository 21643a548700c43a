"""The one line a command or the projector's status gives for an exception (broker/errors.py)."""

from __future__ import annotations

from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from broker.errors import one_line


def test_an_error_is_named_once_then_what_it_says() -> None:
    # kafka-python's errors say their own class name first: it is not repeated.
    assert one_line(KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1")) == (
        "KafkaTimeoutError: Unable to bootstrap from 127.0.0.1:1"
    )
    assert one_line(KafkaConnectionError("111 ECONNREFUSED")) == "KafkaConnectionError: 111 ECONNREFUSED"
    assert one_line(KafkaTimeoutError()) == "KafkaTimeoutError"
    assert one_line(ValueError("not a number")) == "ValueError: not a number"
    assert one_line(TimeoutError()) == "TimeoutError"
