"""Alibaba Cloud request signatures: V3 (``ACS3-HMAC-SHA256``, what the client sends) and the RPC V2 one
(HMAC-SHA1 over the sorted parameters), which the sandbox also accepts. One implementation for both sides.

V3, as Alibaba Cloud's "V3 request structure and signature" documents it and the official SDK
(``alibabacloud_tea_openapi``) sends it by default::

    CanonicalRequest = METHOD \\n PATH \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders \\n sha256hex(body)
    StringToSign     = "ACS3-HMAC-SHA256" \\n sha256hex(CanonicalRequest)
    Authorization    = ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<h1;h2..>,Signature=<hex>

with the signature ``hex(HMAC-SHA256(AccessKeySecret, StringToSign))``, the canonical headers the
lower-cased names of ``host``, ``content-type`` and every ``x-acs-*`` header, sorted, each ``name:value\\n``.

V2 (the RPC signature, ``SignatureVersion=1.0``)::

    StringToSign = METHOD & %2F & percent(k1=v1&k2=v2...)      (every parameter but Signature, sorted)
    Signature    = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))

Both are tested against Alibaba Cloud's published examples and against the SDK's own code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

V3_ALGORITHM = "ACS3-HMAC-SHA256"
V2_METHOD = "HMAC-SHA1"
V2_VERSION = "1.0"
SIGNATURE_VERSIONS: tuple[str, ...] = ("v3", "v2")
#: ``x-acs-date`` and the V2 ``Timestamp``: UTC, ISO 8601 to the second.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: How far a request's time may be from the server's, either way (the V3 documentation's 15 minutes).
MAX_SKEW_SECONDS = 900.0
#: The body's hash in a V3 request (``x-acs-content-sha256``).
CONTENT_SHA256_HEADER = "x-acs-content-sha256"
#: The headers a V3 request must sign (the server refuses one that leaves any out).
V3_REQUIRED_HEADERS: tuple[str, ...] = ("host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
                                        CONTENT_SHA256_HEADER)
_AUTHORIZATION_RE = re.compile(
    r"^(?P<algorithm>\S+)\s+Credential=(?P<key>[^,\s]*),\s*SignedHeaders=(?P<headers>[^,\s]*),\s*"
    r"Signature=(?P<signature>[0-9A-Fa-f]+)\s*$"
)


def percent(text: str) -> str:
    """RFC 3986 percent-encoding of UTF-8 text: only ``A-Z a-z 0-9 - _ . ~`` stay as they are."""
    return quote(text, safe="~", encoding="utf-8")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """``k1=v1&k2=v2...``, percent-encoded, sorted by key (then value)."""
    return "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(pairs))


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """A ``2023-10-26T09:01:01Z`` time; ValueError for anything else."""
    return datetime.strptime(text.strip(), TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def nonce() -> str:
    """A fresh signature nonce (the server refuses one it has seen)."""
    return secrets.token_hex(16)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- V3 -------------------------------------------------------------------------------------------


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """The headers a V3 signature covers: host, content-type and every x-acs-* one, lower-cased, sorted."""
    names = {name.lower() for name in headers}
    return sorted(name for name in names if name in ("host", "content-type") or name.startswith("x-acs-"))


def v3_signature(method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str],
                 signed_headers: Iterable[str], payload_hash: str, secret: str) -> str:
    """The hex V3 signature of a request; ``headers`` by lower-cased name, ``signed_headers`` the names it covers."""
    names = list(signed_headers)
    lowered = {name.lower(): value for name, value in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered.get(name, '').strip()}\n" for name in names)
    canonical_request = "\n".join((
        method.upper(), quote(path or "/", safe="/~", encoding="utf-8"), canonical_query(query), canonical_headers,
        ";".join(names), payload_hash,
    ))
    string_to_sign = f"{V3_ALGORITHM}\n{sha256_hex(canonical_request.encode('utf-8'))}"
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def v3_authorization(method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str],
                     key_id: str, secret: str) -> str:
    """The ``Authorization`` header of a request whose ``headers`` already hold every x-acs-* header."""
    names = signed_header_names(headers)
    payload_hash = {k.lower(): v for k, v in headers.items()}.get(CONTENT_SHA256_HEADER, sha256_hex(b""))
    signature = v3_signature(method, path, query, headers, names, payload_hash, secret)
    return f"{V3_ALGORITHM} Credential={key_id},SignedHeaders={';'.join(names)},Signature={signature}"


@dataclass(frozen=True)
class Authorization:
    """A parsed V3 ``Authorization`` header."""

    algorithm: str
    key_id: str
    signed_headers: tuple[str, ...]
    signature: str

    @classmethod
    def parse(cls, header: str) -> Authorization | None:
        match = _AUTHORIZATION_RE.match(header.strip())
        if match is None:
            return None
        names = tuple(name.strip().lower() for name in match.group("headers").split(";") if name.strip())
        return cls(match.group("algorithm"), match.group("key"), names, match.group("signature").lower())


# -- V2 -------------------------------------------------------------------------------------------


def v2_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """The RPC (V2) signature of every parameter but ``Signature``."""
    query = canonical_query((k, v) for k, v in params.items() if k != "Signature")
    string_to_sign = f"{method.upper()}&{percent('/')}&{percent(query)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two signatures."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
