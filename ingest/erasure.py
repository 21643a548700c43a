"""Checking an erasure request before anything is published, for the command line and the admin
endpoint alike: the same model as the fold's (`schemas.events.ErasureData`), errors by parameter."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from schemas.events import ErasureData

FIELDS = ("user_slug", "session_id", "reason")


def request_errors(fields: dict[str, Any]) -> dict[str, list[str]]:
    """{parameter: [message]} for an erasure request (`user_slug` or `session_id`, and `reason`); empty
    when it is valid. The "exactly one" rule names both keys."""
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(fields) - set(FIELDS))
    for name in unknown:
        errors[name] = [f"unknown field; an erasure takes {', '.join(FIELDS)}"]
    try:
        ErasureData.model_validate({k: v for k, v in fields.items() if k in FIELDS})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            message = str(error["msg"]).removeprefix("Value error, ")
            names = [str(error["loc"][0])] if error["loc"] else ["user_slug", "session_id"]
            for name in names:
                errors.setdefault(name, []).append(message)
    return errors
