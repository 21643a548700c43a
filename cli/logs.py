"""Logging of `serve` and `project`: one record per line on stderr, as text or as one JSON object.

The level of the project's own loggers and of kafka-python's are set apart: kafka-python writes a
line at INFO for every connection it opens or closes, which buries what the service says, so its
loggers stay at WARNING unless CHAT_ANALYTICS_KAFKA_LOG_LEVEL (or --kafka-log-level) asks for more.
Records written while an HTTP request runs carry its request id (api/request_id.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

from schemas.settings import (
    DEFAULT_KAFKA_LOG_LEVEL,
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    ENV_KAFKA_LOG_LEVEL,
    ENV_LOG_FORMAT,
    ENV_LOG_LEVEL,
    LOG_FORMATS,
    env,
)

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
KAFKA_LOGGERS = ("kafka",)
# The record attributes every LogRecord has: anything else was passed with `extra=` and is kept.
# uvicorn's `color_message` repeats the message with terminal colours.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


def _level(name: str, text: str) -> str:
    level = text.strip().upper()
    if level not in LEVELS:
        raise ValueError(f"{name} must be one of {', '.join(LEVELS)}, not {text!r}")
    return level


def _env_level(name: str, default: str) -> str:
    return _level(name, env(name, default) or default)


def _level_arg(text: str) -> str:
    try:
        return _level("the level", text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_log_args(parser: argparse.ArgumentParser) -> None:
    """--log-level, --log-format and --kafka-log-level, each defaulting to its variable."""
    parser.add_argument(
        "--log-level",
        default=_env_level(ENV_LOG_LEVEL, DEFAULT_LOG_LEVEL),
        type=_level_arg,
        help=f"level of the service's own logs (env {ENV_LOG_LEVEL}; default %(default)s)",
    )
    log_format = (env(ENV_LOG_FORMAT, DEFAULT_LOG_FORMAT) or DEFAULT_LOG_FORMAT).strip().lower()
    if log_format not in LOG_FORMATS:
        raise ValueError(f"{ENV_LOG_FORMAT} must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=log_format,
        help=f"text lines, or one JSON object per line (env {ENV_LOG_FORMAT}; default %(default)s)",
    )
    parser.add_argument(
        "--kafka-log-level",
        default=_env_level(ENV_KAFKA_LOG_LEVEL, DEFAULT_KAFKA_LOG_LEVEL),
        type=_level_arg,
        help=f"level of kafka-python's logs (env {ENV_KAFKA_LOG_LEVEL}; default %(default)s)",
    )


class _RequestId(logging.Filter):
    """Stamps each record with the id of the HTTP request it was written under, if any."""

    def __init__(self, request_id: ContextVar[str | None]) -> None:
        super().__init__()
        self.request_id = request_id

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = self.request_id.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request {request_id}]" if request_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, RFC 3339), level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str, log_format: str, kafka_level: str = DEFAULT_KAFKA_LOG_LEVEL) -> logging.Handler:
    """Replaces the root logger's handlers by one on stderr; returns it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in KAFKA_LOGGERS:
        logging.getLogger(name).setLevel(kafka_level)
    return handler


def stamp_request_ids(request_id: ContextVar[str | None]) -> None:
    """Every handler of the root logger stamps records with the current request id."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_RequestId(request_id))


def configure_from_args(args: argparse.Namespace) -> None:
    configure(args.log_level, args.log_format, args.kafka_log_level)
