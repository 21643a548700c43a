"""API tokens: who may call what.

Tokens come from two places: `CHAT_ANALYTICS_API_TOKENS` (comma-separated `token:role` pairs, handy
for deployments that inject secrets by environment) and a tokens file that holds only SHA-256
hashes of tokens, managed with `chat-analytics token create|list|revoke`. A token is never stored
in clear in the file and never logged; every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROLES: tuple[str, ...] = ("staff", "support", "user", "ingest")
READ_ROLES = frozenset({"staff", "support"})
INGEST_ROLES = frozenset({"ingest", "staff"})


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
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [TokenRecord(**item) for item in raw]

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
        self._write([*self.records(), record])
        return record, token

    def revoke(self, token_id: str) -> bool:
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
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


class TokenStore:
    """Resolves a presented token to its role."""

    def __init__(self, env_pairs: list[tuple[str, str]], token_file: TokenFile | None = None) -> None:
        # Environment tokens are hashed too, so every lookup is the same hash-then-compare.
        self._env = [(sha256_hex(token), role) for token, role in env_pairs]
        self._file = token_file
        self._file_cache: tuple[float, list[tuple[str, str]]] | None = None

    @classmethod
    def from_settings(cls, api_tokens: str, tokens_file: str | None) -> TokenStore:
        return cls(parse_env_tokens(api_tokens), TokenFile(tokens_file) if tokens_file else None)

    def _file_pairs(self) -> list[tuple[str, str]]:
        if self._file is None:
            return []
        try:
            mtime = self._file.path.stat().st_mtime
        except FileNotFoundError:
            return []
        # Re-read when the file changes, so `token revoke` takes effect on a running server.
        if self._file_cache is None or self._file_cache[0] != mtime:
            self._file_cache = (mtime, [(r.sha256, r.role) for r in self._file.records()])
        return self._file_cache[1]

    def role_for(self, token: str) -> str | None:
        digest = sha256_hex(token)
        role: str | None = None
        # No early exit: the time taken does not depend on which entry (if any) matched.
        for known, known_role in (*self._env, *self._file_pairs()):
            if hmac.compare_digest(known, digest):
                role = known_role
        return role
