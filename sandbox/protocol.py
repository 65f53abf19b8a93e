"""The TOP router protocol: parameter checks in real TOP's order, quota, permissions and envelopes (no HTTP)."""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline.signing import SIGN_METHODS, parse_top_timestamp, verify
from sandbox.config import AppConfig, SandboxConfig
from sandbox.exceptions import TopError
from sandbox.models import (
    ImageSearchBackend,
    MalformedImageReference,
    UnknownImageReference,
    decode_base64,
)
from sandbox.search import ImageDecodeError

logger = logging.getLogger(__name__)

SEARCH_METHOD = "taobao.image.search"
UPLOAD_METHOD = "taobao.upload.img"
METHODS: tuple[str, ...] = (SEARCH_METHOD, UPLOAD_METHOD)

#: ``fetch(url) -> bytes``, awaited by ``taobao.upload.img`` for an ``image_url``; raises on failure.
Fetcher = Callable[[str], Awaitable[bytes]]


def new_request_id() -> str:
    """A request id shaped like real TOP's (12 lower-case alphanumerics)."""
    return secrets.token_hex(6)


def response_key(method: str) -> str:
    """``taobao.image.search`` → ``image_search_response``."""
    name = method[len("taobao."):] if method.startswith("taobao.") else method
    return name.replace(".", "_") + "_response"


class SandboxStats:
    """What the sandbox saw, served at ``/_sandbox/stats``; ``calls.total`` counts every request to the router."""

    FAULT_KINDS: tuple[str, ...] = ("5xx", "slow", "garbage", "drop", "remote")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls_total = 0
        self.by_method: Counter[str] = Counter()
        self.by_app: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.quota_refused = 0
        self.faults: Counter[str] = Counter(dict.fromkeys(self.FAULT_KINDS, 0))

    def record_call(self, params: Mapping[str, str]) -> None:
        self.calls_total += 1
        if params.get("method"):
            self.by_method[params["method"]] += 1
        if params.get("app_key"):
            self.by_app[params["app_key"]] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": {"total": self.calls_total, "by_method": dict(self.by_method), "by_app": dict(self.by_app)},
            "errors": dict(self.errors),
            "quota_refused": self.quota_refused,
            "faults": dict(self.faults),
        }


class QuotaLedger:
    """Per-app sliding-window quota: at most ``calls`` accepted calls in any ``seconds``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._accepted: defaultdict[str, deque[float]] = defaultdict(deque)

    def acquire(self, app: AppConfig) -> int | None:
        """Count a call and return None, or refuse it (not counted) and return the whole seconds (>= 1)
        until the window frees a call."""
        now = self._clock()
        window = self._accepted[app.key]
        while window and window[0] <= now - app.seconds:
            window.popleft()
        if len(window) >= app.calls:
            return max(1, math.ceil(window[0] + app.seconds - now))
        window.append(now)
        return None

    def reset(self) -> None:
        self._accepted.clear()


class TopProtocol:
    """Checks a router call like real TOP and runs it against the backend; returns the JSON envelope."""

    def __init__(
        self,
        config: SandboxConfig,
        backend: ImageSearchBackend,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.backend = backend
        self.stats = SandboxStats()
        self.quota = QuotaLedger(clock)
        self._now = now

    def reset(self) -> None:
        self.stats.reset()
        self.quota.reset()

    def error_envelope(self, error: TopError) -> dict[str, Any]:
        envelope = error.envelope(self.config.codes, new_request_id())
        self.stats.errors[str(envelope["error_response"]["code"])] += 1
        return envelope

    async def handle(self, params: Mapping[str, str], host: str, fetch: Fetcher) -> dict[str, Any]:
        """The response envelope of one call (success or ``error_response``); never raises TopError.

        ``host`` is the ``host:port`` the client used, for the URLs in the answer.
        """
        try:
            method = self.authenticate(params)
            if method == SEARCH_METHOD:
                body = self.image_search(params, host)
            else:
                body = await self.upload_img(params, host, fetch)
        except TopError as error:
            logger.info("error_response %s for %s", error, params.get("method"))
            return self.error_envelope(error)
        body["request_id"] = new_request_id()
        return {response_key(method): body}

    # -- common parameters, in real TOP's order ---------------------------------------------------

    def authenticate(self, params: Mapping[str, str]) -> str:
        """Check the common parameters, permissions and quota; return the method.  Raises TopError."""
        method = params.get("method", "")
        if not method:
            raise TopError("missing_method", "the method parameter is required")
        if method not in METHODS:
            raise TopError("invalid_method", f"method {method} does not exist", "method")

        app_key = params.get("app_key", "")
        if not app_key:
            raise TopError("missing_app_key", "the app_key parameter is required")
        app = self.config.app(app_key)
        if app is None:
            raise TopError("invalid_app_key", f"app_key {app_key} does not exist", "app_key")

        self._check_timestamp(params.get("timestamp", ""))

        sign_method = params.get("sign_method", "")
        if sign_method and sign_method not in SIGN_METHODS:
            raise TopError(
                "invalid_argument", f"sign_method must be one of {', '.join(SIGN_METHODS)}", "sign_method"
            )
        if not params.get("sign"):
            raise TopError("missing_signature", "the sign parameter is required")
        # verify() reads sign_method itself; TOP treats a missing one as md5.  An empty one is
        # missing too: empty-valued parameters are left out of the signing string, so the client
        # signed as if it had not sent it at all.
        signed = params if sign_method else {k: v for k, v in params.items() if k != "sign_method"}
        if not verify(signed, app.secret):
            raise TopError("invalid_signature", "Invalid signature", "sign")

        version = params.get("v", "")
        if not version:
            raise TopError("missing_argument", "the v parameter is required", "v")
        if version != "2.0":
            raise TopError("invalid_argument", f"unsupported API version {version}; use 2.0", "v")

        if (app_key, method) in self.config.denies:
            raise TopError(
                "permission_denied", f"app {app_key} has no permission for {method}", "method"
            )

        wait = self.quota.acquire(app)
        if wait is not None:
            self.stats.quota_refused += 1
            raise TopError("quota_exceeded", f"This ban will last for {wait} more seconds")
        # format: real TOP answers XML by default; this sandbox always answers JSON.
        return method

    def _check_timestamp(self, value: str) -> None:
        if not value:
            raise TopError("missing_timestamp", "the timestamp parameter is required")
        try:
            sent = parse_top_timestamp(value)
        except (ValueError, OverflowError, OSError):
            raise TopError(
                "invalid_timestamp",
                "timestamp must be 'YYYY-MM-DD HH:MM:SS' (GMT+8) or epoch milliseconds",
                "timestamp",
            ) from None
        # Whole seconds on both sides: the timestamp has no fraction but the server clock does, and
        # comparing the raw difference made exactly 600 s behind fail while 600 s ahead passed.
        skew = abs(math.floor(self._now().timestamp()) - math.floor(sent.timestamp()))
        if skew > self.config.max_skew_seconds:
            raise TopError(
                "invalid_timestamp",
                f"timestamp {value} is {skew:.0f} s away from the server time (GMT+8); at most "
                f"{self.config.max_skew_seconds:.0f} s of skew is allowed",
                "timestamp",
            )

    # -- business methods ---------------------------------------------------------------------------

    def image_search(self, params: Mapping[str, str], host: str) -> dict[str, Any]:
        image_data = params.get("image_data", "")
        if not image_data:
            raise TopError("missing_argument", "the image_data parameter is required", "image_data")
        page = _parse_page(params.get("page", ""))
        try:
            result = self.backend.search(image_data, params.get("cat") or None, page, host)
        except (ImageDecodeError, UnknownImageReference) as exc:
            raise TopError("invalid_image", str(exc), "image_data") from None
        return {"items": {"item": result.items}, "total_results": str(result.total_results)}

    async def upload_img(self, params: Mapping[str, str], host: str, fetch: Fetcher) -> dict[str, Any]:
        image, image_url = params.get("image", ""), params.get("image_url", "")
        if not image and not image_url:
            raise TopError("missing_argument", "image_url or image (Base64) is required", "image_url")
        name = "image" if image else "image_url"
        try:
            if image:
                data = decode_base64(image)
            elif (local := self._local_image(image_url)) is not None:
                data = local
            else:
                try:
                    data = await fetch(image_url)
                except Exception as exc:  # noqa: BLE001 - any fetch failure is the client's bad URL
                    raise ImageDecodeError(f"cannot fetch image_url: {exc}") from None
            upload_id = self.backend.upload(data)
        except (ImageDecodeError, UnknownImageReference) as exc:
            raise TopError("invalid_image", str(exc), name) from None
        return {"image": {"id": upload_id, "url": f"http://{host}/upload/{upload_id}.jpg"}}

    def _local_image(self, url: str) -> bytes | None:
        """An image this sandbox itself serves (matched on the path), without a network round trip."""
        try:
            return self.backend.resolve_reference(url)
        except MalformedImageReference:
            # Not a URL at all: there is nothing to fetch either.
            raise
        except UnknownImageReference:
            return None


#: A page number: ASCII digits only (str.isdigit() also takes "٢" and "²"), no surrounding spaces, and
#: at most 18 digits (fits TOP's Java long), which also keeps int() far from its 4300-digit limit.
_PAGE_RE = re.compile(r"[0-9]{1,18}")


def _parse_page(value: str) -> int:
    if value == "":
        return 1
    if not _PAGE_RE.fullmatch(value) or int(value) < 1:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise TopError("invalid_argument", f"page must be a positive integer, got {shown!r}", "page")
    return int(value)
