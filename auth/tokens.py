"""API tokens: who may call what.

Tokens come from two places: `CHAT_ANALYTICS_API_TOKENS` (comma-separated `token:role` pairs, handy
for deployments that inject secrets by environment) and a tokens file that holds only SHA-256
hashes of tokens, managed with `chat-analytics token create|list|revoke`. A token is never stored
in clear in the file and never logged; every comparison is constant-time.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("staff", "support", "user", "ingest")
READ_ROLES = frozenset({"staff", "support"})
# Only publishers publish: a staff token reads and administers, and a leaked dashboard token must not
# be able to write events into the log (which nothing ever deletes).
INGEST_ROLES = frozenset({"ingest"})


class TokensUnavailable(Exception):
    """The tokens file cannot be read (corrupt, unreadable): nobody can be authenticated meanwhile."""


@dataclass(frozen=True)
class Identity:
    """Who presented a token: its id (the file's id, or `env-N` for the N-th environment token), never
    the token itself, so that it can be logged."""

    id: str
    role: str


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    id: str
    role: str
    sha256: str
    created_at: str


def parse_env_tokens(value: str) -> list[tuple[str, str]]:
    """`token:role,token:role` to pairs; raises ValueError naming the bad entry (but not the token)."""
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(part.strip() for part in value.split(",")):
        if not item:
            continue
        token, sep, role = item.rpartition(":")
        if not sep or not token or role not in ROLES:
            raise ValueError(f"entry {index + 1} of the token list is not 'token:role' with a role of {ROLES}")
        pairs.append((token, role))
    return pairs


class TokenFile:
    """The hashed tokens file. Writes go through a temporary file and a rename, so a reader never
    sees half a file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def records(self) -> list[TokenRecord]:
        """The file's tokens; raises TokensUnavailable when it is not a tokens file."""
        try:
            raw = json.loads(self.path.read_text())
            return [TokenRecord(**item) for item in raw]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError) as exc:
            raise TokensUnavailable(
                f"the tokens file {self.path} cannot be read: {type(exc).__name__}: {exc}"
            ) from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Read-modify-write under an exclusive lock on a file beside it: two `token create` at once must
        # not both read the old list and the last rename win (one token would be lost).
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(f".{self.path.name}.lock")
        with lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def create(self, role: str) -> tuple[TokenRecord, str]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        token = secrets.token_urlsafe(32)
        record = TokenRecord(
            id=secrets.token_hex(4),
            role=role,
            sha256=sha256_hex(token),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        with self._locked():
            self._write([*self.records(), record])
        return record, token

    def revoke(self, token_id: str) -> bool:
        with self._locked():
            records = self.records()
            kept = [r for r in records if r.id != token_id]
            if len(kept) == len(records):
                return False
            self._write(kept)
        return True

    def _write(self, records: list[TokenRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-")
        with os.fdopen(fd, "w") as out:
            json.dump([r.__dict__ for r in records], out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


class TokenStore:
    """Resolves a presented token to its role."""

    def __init__(self, env_pairs: list[tuple[str, str]], token_file: TokenFile | None = None) -> None:
        # Environment tokens are hashed too, so every lookup is the same hash-then-compare.
        self._env = [(sha256_hex(token), Identity(f"env-{n}", role)) for n, (token, role) in enumerate(env_pairs, 1)]
        self._file = token_file
        self._file_cache: tuple[float, list[tuple[str, Identity]]] | None = None
        self._logged_broken: float | None = None

    @classmethod
    def from_settings(cls, api_tokens: str, tokens_file: str | None) -> TokenStore:
        return cls(parse_env_tokens(api_tokens), TokenFile(tokens_file) if tokens_file else None)

    def _file_pairs(self) -> list[tuple[str, Identity]]:
        if self._file is None:
            return []
        try:
            mtime = self._file.path.stat().st_mtime
        except FileNotFoundError:
            return []
        # Re-read when the file changes, so `token revoke` takes effect on a running server.
        if self._file_cache is None or self._file_cache[0] != mtime:
            try:
                records = self._file.records()
            except TokensUnavailable as exc:
                if self._logged_broken != mtime:  # once per version of the file, not per request
                    self._logged_broken = mtime
                    log.error("%s; every authenticated request answers 503 until it is fixed", exc)
                raise
            self._file_cache = (mtime, [(r.sha256, Identity(r.id, r.role)) for r in records])
        return self._file_cache[1]

    def identify(self, token: str) -> Identity | None:
        """Who holds `token`, or None for an unknown one; raises TokensUnavailable (the file is broken)."""
        digest = sha256_hex(token)
        found: Identity | None = None
        # No early exit: the time taken does not depend on which entry (if any) matched.
        for known, identity in (*self._env, *self._file_pairs()):
            if hmac.compare_digest(known, digest):
                found = identity
        return found

    def role_for(self, token: str) -> str | None:
        identity = self.identify(token)
        return None if identity is None else identity.role
