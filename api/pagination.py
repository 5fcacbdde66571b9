"""Keyset pages behind opaque, signed cursors: a client can pass a cursor back but not forge or edit
one, and a cursor only continues the query that made it (same listing, filters and sort), so a page
can never silently come from another query."""

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from events.errors import Invalid

_SIG = 16


def encode_cursor(secret: str, key: list) -> str:
    payload = msgspec.json.encode(key)
    sig = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:_SIG]
    return base64.urlsafe_b64encode(payload + sig).decode().rstrip("=")


def decode_cursor(secret: str, cursor: str) -> list:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload, sig = raw[:-_SIG], raw[-_SIG:]
        if len(raw) <= _SIG or not hmac.compare_digest(
                sig, hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:_SIG]):
            raise ValueError
        return msgspec.json.decode(payload, type=list)
    except (ValueError, msgspec.DecodeError):
        raise Invalid("cursor", "the cursor is malformed or was tampered with") from None


class Sort(msgspec.Struct, frozen=True):
    """A keyset order: its columns (the last one unique), their SQL types, and the direction."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    descending: bool = False

    @property
    def order_by(self) -> str:
        return ", ".join(f"{c} DESC" if self.descending else c for c in self.columns)

    @property
    def after(self) -> str:
        """The condition for the rows after a cursor's row, with one parameter per column."""
        values = ", ".join(f"%s::{t}" for t in self.types)
        return f"({', '.join(self.columns)}) {'<' if self.descending else '>'} ({values})"

    def key(self, row: Any) -> list:
        return [_text(getattr(row, c)) for c in self.columns]


def _text(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else str(value)


class Pager:
    """One page of a listing: the keyset condition to add to its query, and the page's next cursor.

    `query` names the listing and every filter and the sort that shape it; a cursor made under one
    query is refused (422) under another."""

    def __init__(self, secret: str, keyset: Sort, limit: int, cursor: str | None, /, **query: object):
        self.secret, self.sort, self.limit = secret, keyset, limit
        scope = msgspec.json.encode({k: _text(v) for k, v in sorted(query.items()) if v is not None})
        self.scope = hashlib.sha256(scope).hexdigest()[:16]
        self.key: list | None = None
        if cursor is not None:
            decoded = decode_cursor(secret, cursor)
            if len(decoded) != len(keyset.columns) + 1 or decoded[0] != self.scope:
                raise Invalid("cursor", "the cursor belongs to another query: pass the filters and the sort it"
                                        " came with")
            self.key = decoded[1:]

    def condition(self) -> tuple[str, list] | None:
        """(SQL condition, its parameters) for the rows after the cursor; None on the first page."""
        return None if self.key is None else (self.sort.after, self.key)

    @property
    def fetch(self) -> int:
        """Rows to ask for: one more than the page, to know whether another page follows."""
        return self.limit + 1

    def page(self, rows: Sequence) -> tuple[list, str | None]:
        """The page's rows (at most `limit`) and the cursor of the next page (None on the last)."""
        rows = list(rows)
        if len(rows) <= self.limit:
            return rows, None
        rows = rows[:self.limit]
        return rows, encode_cursor(self.secret, [self.scope, *self.sort.key(rows[-1])])
