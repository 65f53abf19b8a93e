"""Pure normalisers for the messy values gateways return (prices, sales, ids, URLs, flags, titles).

Every function takes whatever a gateway sent (string, number, ``None``...) and returns a clean
Python value or ``None``; none of them ever raises. ``None`` means "could not tell", never a guess:
callers keep the raw value beside it (``price_raw``, ``sales_raw``).
"""

from __future__ import annotations

import html
import ipaddress
import logging
import math
import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

INT64_MAX = 2**63 - 1
#: Prices are stored as decimal128(14, 2): at most 12 integer digits.
PRICE_MAX = Decimal("999999999999.99")
_CENT = Decimal("0.01")

# A number as gateways write it: "39.50", "1,299.00", "1.2".
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
# A price with its currency on either or both ends of a range: "¥200-¥600", "39.50元-59.00元"; a unit
# after it ("88.8元/件", "/双"), ignored; "起" after it ("￥39.9起": from 39.90) gives the lower bound
# only; "券后" before it ("券后 29.9") makes it the price after a coupon, not the listing's price.
_SIGN, _YUAN = r"(?:[¥￥]|RMB|CNY)?\s*", r"\s*元?"
_PER = r"(?:\s*/\s*[\u4e00-\u9fffA-Za-z]{1,3})?"
_PRICE_RE = re.compile(
    rf"^(?P<coupon>券后\s*[:：]?\s*)?{_SIGN}(?P<low>{_NUMBER}){_YUAN}"
    rf"(?:\s*[-~～–—至]\s*{_SIGN}(?P<high>{_NUMBER}){_YUAN})?{_PER}(?P<from>\s*起)?{_PER}$",
    re.IGNORECASE,
)
# Sales: exactly one number, an optional unit and '+', wrapped in words ("月销", "人付款") but no
# other digits: "30天销量 200" is ambiguous and stays unparsed rather than guessed.
_WORDS = r"[\s\u3000\u4e00-\u9fff:：]*"
_SALES_RE = re.compile(
    rf"^{_WORDS}(?P<num>{_NUMBER})\s*(?P<unit>[万萬w千k亿億])?\s*(?P<plus>[+＋])?{_WORDS}$", re.IGNORECASE
)
_SALES_UNITS = {"万": 10_000, "萬": 10_000, "w": 10_000, "千": 1_000, "k": 1_000, "亿": 100_000_000, "億": 100_000_000}
# The host of an http URL's remainder after "http://": skip userinfo, stop at port, path, query.
_HOST_RE = re.compile(r"(?:[^/?#@]*@)?(\[[^\]/?#]*\]?|[^/?#:]*)")
# Only what is shaped like a tag: "<span class=H>", "</b>", "<br/>"; "3 < 5 > 4" is text.
_TAG_RE = re.compile(r"</?[A-Za-z][^<>]*>")
_SPACE_RE = re.compile(r"\s+")
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


def _decimal(raw: Any) -> Decimal | None:
    """A finite Decimal from a number or a plain numeric string ("1,299.00" allowed), else None."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        if isinstance(raw, float):
            if not math.isfinite(raw):
                return None
            value = Decimal(repr(raw))  # repr gives the shortest exact text: 39.5 -> "39.5"
        elif isinstance(raw, (int, Decimal)):
            value = Decimal(raw)
        elif isinstance(raw, str):
            value = Decimal(raw.replace(",", ""))
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _price(raw: Any) -> Decimal | None:
    """Yuan with fen precision; a value finer than a fen ("0.001") is no price: None, never rounded."""
    value = _decimal(raw)
    if value is None or value < 0 or value > PRICE_MAX:
        return None
    fen = value.quantize(_CENT, rounding=ROUND_HALF_UP)
    return fen if fen == value else None


def normalize_price(raw: Any) -> tuple[Decimal | None, Decimal | None]:
    """``(min, max)`` in yuan, fen precision: "39.50" -> (39.50, 39.50), "200-600" -> (200.00, 600.00).

    Accepts numbers, currency signs (¥, ￥, RMB, 元), thousands separators, ranges ("200-600",
    "200 - 600", "200~600") and units ("88.8元/件" -> 88.80). "￥39.9起" ("from") gives
    (39.90, None). Anything else, sub-fen ("0.001"), negative or too large: ``(None, None)``; so
    does a coupon price ("券后 29.9"), which is not the listing's (``split_price`` gives it).
    """
    low, high, _ = split_price(raw)
    return low, high


def split_price(raw: Any) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """``(min, max, after_coupon)``: normalize_price's two, and "券后 29.9" -> (None, None, 29.90)."""
    if isinstance(raw, str):
        return _parse_price_text(raw)
    value = _price(raw)
    return value, value, None


# Listings repeat the same few thousand price and sales strings ("39.90", "1万+人付款": Taobao
# shows sales in buckets), so the text parsers are memoised. Results are immutable (Decimal,
# int, tuples) and the caches bounded.
@lru_cache(maxsize=16_384)
def _parse_price_text(raw: str) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    match = _PRICE_RE.match(raw.strip())
    if match is None:
        return None, None, None
    low, high = _price(match["low"]), _price(match["high"] or match["low"])
    if low is None or high is None:
        return None, None, None
    low, high = (low, high) if low <= high else (high, low)
    if match["coupon"]:
        return None, None, low
    return (low, None, None) if match["from"] else (low, high, None)


def normalize_sales(raw: Any) -> int | None:
    """Sales as an int (``sales_kind`` says of what): "338人付款" -> 338, "1.2万+人付款" -> 12000, "1.5w+" -> 15000.

    万/w multiply by 10,000 (千/k by 1,000, 亿 by 10^8) with exact decimal arithmetic; a trailing
    '+' ("100+", "10万+") is read as the lower bound. Fractions left after the unit are truncated
    ("1.23456万" -> 12345); a fraction without a unit is not a count and gives ``None``.
    """
    if isinstance(raw, str):
        return _parse_sales_text(raw)
    return _to_int(raw, minimum=0)


@lru_cache(maxsize=16_384)
def _parse_sales_text(raw: str) -> int | None:
    match = _SALES_RE.match(raw.strip())
    if match is None:
        return None
    number = _decimal(match["num"])
    unit = match["unit"]
    if number is not None and unit:
        return _to_int(int(number * _SALES_UNITS[unit.lower()]), minimum=0)
    return _to_int(number, minimum=0)


#: What a sales figure counts, from the words around it: (kind, words), first match wins.
SALES_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("monthly", ("月销", "月售", "月成交", "30天")),
    ("received", ("收货",)),
    ("paid", ("付款",)),
    ("total", ("已售", "已卖", "累计", "总销", "销量")),
)
#: The words ``sales_kind`` gives (beside ``unknown``).
SALES_KIND_NAMES: frozenset[str] = frozenset({*(kind for kind, _words in SALES_KINDS), "unknown"})


def sales_kind(raw: Any) -> str | None:
    """What ``sales`` counts: ``monthly`` (月销), ``paid`` (人付款), ``received`` (人收货), ``total``
    (已售, 累计), or ``unknown`` (a bare number, other words); None when no sales were given."""
    if raw is None or isinstance(raw, bool) or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        for kind, words in SALES_KINDS:
            if any(word in raw for word in words):
                return kind
    return "unknown"


def _to_int(raw: Any, minimum: int) -> int | None:
    """An int in [minimum, INT64_MAX] from an int, an integral float/Decimal or a digit string."""
    if type(raw) is int:  # the common case first: this runs several times per item
        value = raw
    elif raw is None or isinstance(raw, bool):
        return None
    elif isinstance(raw, int):
        value = int(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if not text.isascii() or not text.isdigit():
            return None
        value = int(text)
    elif isinstance(raw, (float, Decimal)):
        number = _decimal(raw)
        if number is None or number != number.to_integral_value():
            return None
        value = int(number)
    else:
        return None
    return value if minimum <= value <= INT64_MAX else None


def normalize_num_iid(raw: Any) -> int | None:
    """A positive int64 item id from 123, "123" or 123.0; None for bools, fractions, text, <= 0, > int64."""
    return _to_int(raw, minimum=1)


def normalize_count(raw: Any) -> int | None:
    """A non-negative int64 from a number or a digit string (pages, positions, totals)."""
    return _to_int(raw, minimum=0)


def normalize_float(raw: Any) -> float | None:
    """A finite float from a number or numeric text (a gateway's similarity score); None otherwise."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@lru_cache(maxsize=256)  # a gateway's pictures come from a few hosts; ip_address() is 6 µs
def _is_loopback(host: str) -> bool:
    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    if not host[:1].isdigit() and ":" not in host:
        return False  # a name, not an IP address: skip ip_address() and its exception
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_url(raw: Any) -> str | None:
    """An absolute http(s) URL: "//x/y" and "//https://x/y" -> "https://x/y", "http://x" -> "https://x".

    Taobao's CDNs and item pages all serve https, so scheme-less and plain http URLs get https -
    except on loopback (localhost, 127.0.0.0/8, ::1), which gets http: the embedded sandbox serves
    its pictures as ``//127.0.0.1:PORT/img/...`` over plain http, and an https link there would be
    dead. Other schemes and relative paths: ``None``.
    """
    if not isinstance(raw, str):
        return None
    url = raw.strip()
    if url.startswith("//") and url[2:8].lower() in ("https:", "http:/"):
        url = url[2:]  # "//https://host/x", as some gateways send them
    if url.startswith("https://"):  # the common case, without parsing
        return url if len(url) > 8 and url[8] not in "/?#" else None
    if url.startswith("//"):
        scheme, rest = "http", url[2:]
    else:
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in ("http", "https"):
            return None
    if not rest or rest[0] in "/?#":
        return None
    if scheme == "http":
        authority = rest.partition("/")[0]
        if authority[:1].isalpha() and "@" not in authority and "localhost" not in authority.lower():
            return f"https://{rest}"  # a host name, not loopback: the common case, without the regex
        host = _HOST_RE.match(rest)[1]  # type: ignore[index]  # the pattern matches any string
        if host.startswith("[") and not host.endswith("]"):
            return None  # an unbalanced IPv6 bracket
        if not _is_loopback(host.strip("[]")):
            scheme = "https"
    return f"{scheme}://{rest}"


def normalize_bool(raw: Any) -> bool | None:
    """True/False from booleans, 1/0 and "true"/"false"/"1"/"0"/"yes"/"no" (any case); else None."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int):
        return {1: True, 0: False}.get(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def clean_title(raw: Any) -> str | None:
    """Title text: highlight tags (``<span class=H>``) removed, entities unescaped, whitespace collapsed.

    Tags are removed before unescaping so an escaped "&lt;b&gt;" in a title survives as text.
    """
    if raw is None:
        return None
    text = str(raw)
    if "<" in text:
        text = _TAG_RE.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return " ".join(text.split()) or None


def normalize_text(raw: Any) -> str | None:
    """A stripped string; numbers become their text (cat 50015374 -> "50015374"); empty -> None."""
    if type(raw) is str:
        return raw.strip() or None
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    text = str(raw).strip()
    return text or None


def normalize_timestamp(raw: Any) -> datetime | None:
    """An aware UTC datetime from a datetime (naive read as UTC), an ISO 8601 string or epoch seconds."""
    if type(raw) is datetime and raw.tzinfo is UTC:  # what the spider sends
        return raw
    try:
        if isinstance(raw, datetime):
            value = raw
        elif isinstance(raw, str) and raw.strip():
            value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = datetime.fromtimestamp(raw, tz=UTC)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
