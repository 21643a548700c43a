"""One line for an exception, in a command's message or the projector's status: its class name, then
what it says.

kafka-python's errors already begin their text with their class name (`KafkaTimeoutError: Unable to
bootstrap from ...`); naming the class again printed it twice."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name
