"""TOP router request signing and timestamps: the one implementation the client and the sandbox share."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from pipeline.timezones import CHINA_TZ

SIGN_METHODS: tuple[str, ...] = ("md5", "hmac", "hmac-sha256")

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


class UnknownSignMethod(ValueError):
    """Raised for a ``sign_method`` other than md5, hmac or hmac-sha256."""


def signing_string(params: Mapping[str, object], empty_as_key: bool = False) -> str:
    """Concatenate ``key1value1key2value2...`` over the parameters except ``sign``, sorted by key.

    Parameters with an empty value are left out (the documented rule), or with ``empty_as_key``
    signed as their bare key, as TOP's Python SDKs do.
    """
    pairs = sorted(
        (str(k), str(v))
        for k, v in params.items()
        if k != "sign" and k != "" and v is not None and (empty_as_key or str(v) != "")
    )
    # Byte-order sort: sorting the UTF-8 encodings, which for str equals code-point order.
    pairs.sort(key=lambda kv: kv[0].encode("utf-8"))
    return "".join(k + v for k, v in pairs)


def sign(params: Mapping[str, object], secret: str, sign_method: str = "md5", empty_as_key: bool = False) -> str:
    """Return the upper-case hex TOP signature of ``params`` with ``secret``.

    md5: ``MD5(secret + s + secret)``; hmac: ``HMAC-MD5(secret, s)``; hmac-sha256: ``HMAC-SHA256(secret, s)``.
    """
    message = signing_string(params, empty_as_key).encode("utf-8")
    key = secret.encode("utf-8")
    if sign_method == "md5":
        digest = hashlib.md5(key + message + key).hexdigest()
    elif sign_method == "hmac":
        digest = hmac.new(key, message, hashlib.md5).hexdigest()
    elif sign_method == "hmac-sha256":
        digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    else:
        raise UnknownSignMethod(
            f"unknown sign method {sign_method!r}: use one of {', '.join(SIGN_METHODS)}"
        )
    return digest.upper()


def verify(params: Mapping[str, object], secret: str) -> bool:
    """True when ``params['sign']`` is the right signature for its ``sign_method`` (constant-time compare).

    A missing or empty ``sign_method`` is md5. When a parameter was sent empty, a signature made
    either way is accepted: with it left out (the documented rule; the Java SDK never sends one) or
    signed as its bare key (the Python SDKs).
    """
    given = str(params.get("sign", "")).upper().encode()
    method = str(params.get("sign_method") or "md5")
    readings = [False]
    if any(v is not None and str(v) == "" for k, v in params.items() if k != "sign"):
        readings.append(True)
    try:
        expected = [sign(params, secret, method, empty_as_key) for empty_as_key in readings]
    except UnknownSignMethod:
        return False
    matches = [hmac.compare_digest(given, digest.encode()) for digest in expected]
    return any(matches)


def top_timestamp(now: datetime | None = None) -> str:
    """The ``timestamp`` parameter: ``YYYY-MM-DD HH:MM:SS`` in GMT+8, independent of the local zone."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("top_timestamp needs an aware datetime")
    return now.astimezone(CHINA_TZ).strftime(TIMESTAMP_FORMAT)


def parse_top_timestamp(value: str) -> datetime:
    """Parse a TOP ``timestamp``: GMT+8 ``YYYY-MM-DD HH:MM:SS`` or epoch milliseconds (old SDKs).

    Returns an aware UTC datetime; raises ``ValueError`` on anything else.
    """
    value = value.strip()
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    parsed = datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=CHINA_TZ)
    return parsed.astimezone(UTC)
