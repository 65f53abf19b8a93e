"""What the HTTP server hands a protocol (the call's parameters and files) and gets back (an answer's bytes)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = b"application/json;charset=UTF-8"
XML_TYPE = b"text/xml;charset=UTF-8"

#: ``fetch(url) -> bytes``, awaited by an upload of an image URL; raises on failure.
Fetcher = Callable[[str], Awaitable[bytes]]


@dataclass(frozen=True)
class Call:
    """One request to an API path: its text parameters (query string and form, the form winning), the
    names of those that came in the query string, its file parts, and the ``host:port`` the client used."""

    path: str
    params: dict[str, str]
    query_names: frozenset[str] = frozenset()
    files: dict[str, bytes] = field(default_factory=dict)
    host: str = "127.0.0.1"
    #: Set when the body was over the size limit and dropped unread.
    body_too_large: bool = False
    #: The HTTP method, the headers (lower-cased names, repeated values joined by ","), the query string's
    #: pairs as sent and the raw body: what a signature over the request itself (aliyun's V3) covers.
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    query_pairs: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class Answer:
    """An answer's body and content type; HTTP 200, as TOP and Onebound answer errors too, unless ``status``
    says otherwise (aliyun's errors come with their HTTP status), with any ``headers`` of its own."""

    body: bytes
    content_type: bytes = JSON_TYPE
    status: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_bytes(payload: Any) -> bytes:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (half an emoji) in a catalogue value: sent escaped, as JSON allows
        return json.dumps(payload, separators=(",", ":")).encode("ascii")


def json_answer(payload: Any) -> Answer:
    return Answer(json_bytes(payload), JSON_TYPE)


def new_request_id() -> str:
    """A request id shaped like real TOP's (12 lower-case alphanumerics)."""
    return secrets.token_hex(6)


#: A page number: ASCII digits only (str.isdigit() also takes "٢" and "²"), no surrounding spaces, and
#: at most 18 digits (fits TOP's Java long), which also keeps int() far from its 4300-digit limit.
_PAGE_RE = re.compile(r"[0-9]{1,18}")


def parse_page(value: str, refuse: Callable[[str], Exception]) -> int:
    """A page parameter (absent: 1); ``refuse(message)`` is raised for anything but a positive integer."""
    if value == "":
        return 1
    if not _PAGE_RE.fullmatch(value) or int(value) < 1:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise refuse(f"page must be a positive integer, got {shown!r}")
    return int(value)
