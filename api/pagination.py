"""Opaque, signed keyset cursors: a client can pass one back but not forge or edit one."""

import base64
import hashlib
import hmac

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


class Page(msgspec.Struct):
    items: list
    next_cursor: str | None
