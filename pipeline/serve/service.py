"""The search service's core: a photo in, the normalised, deduplicated matches out, through the crawl's own parts.

Each gateway call is the Scrapy request the crawl would send (``Gateway.build_search`` /
``build_upload`` / ``to_request``), downloaded with ``ExecutionEngine.download_async``: the
downloader middlewares (``GatewayMiddleware``: pacing on the shared quota, backoff, retries, the
error table, call stats) and the signing download handler all apply, as in a crawl. Answers are
read by ``Gateway.parse_search`` and their hits go through the crawl's ``ValidatePipeline`` and
``NormalizePipeline``. What is the service's own: the cache (pipeline.serve.cache), one call at a
time per (image, category, page) however many callers ask for it at once, and refusing a call
with 429 when its quota slot (or a ban) is further away than IMAGESEARCH_SERVE_MAX_WAIT.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import math
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from scrapy import Request
from scrapy.exceptions import DropItem
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from items.schema import MATCHES, PRODUCTS
from pipeline.components.middlewares import CALL_TICKET_META_KEY, CallTicket, GatewayMiddleware
from pipeline.components.pipelines import NormalizePipeline, ValidatePipeline
from pipeline.configuration import list_setting
from pipeline.errors import GatewayError, GatewayStopped, ImageRejected, MalformedResponse
from pipeline.gateways.actions import FATAL, SEED_ERROR, STOP, THROTTLE, ErrorActions
from pipeline.gateways.base import HIT_FIELDS, METHOD_META_KEY
from pipeline.images import ImageRef, is_platform_cdn, prepare_image
from pipeline.redaction import Redactor
from pipeline.seeds import category_id, is_category_id
from pipeline.serve.cache import NoCache, open_cache

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response

    from pipeline.gateways.base import ApiCall, Gateway, SearchPage

logger = logging.getLogger(__name__)

#: The columns of a match in the service's answer: the products table's listing, then page, position, score.
MATCH_COLUMNS: tuple[str, ...] = (
    *(c.name for c in PRODUCTS.columns if c.name not in ("first_seed_id", "run_id", "run_started_at")),
    *(c.name for c in MATCHES.columns if c.name in ("page", "position", "score")),
)
_MAX_MESSAGE = 300
#: Redirects followed when downloading a caller's image URL.
_MAX_REDIRECTS = 3


class ServiceError(Exception):
    """A search the service answers with an error: HTTP ``status``, a ``code`` and one line of ``message``."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message[:_MAX_MESSAGE]
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.retry_after is not None:
            body["retry_after"] = self.retry_seconds
        return body

    @property
    def retry_seconds(self) -> int:
        return max(1, math.ceil(self.retry_after or 0))


@dataclass
class Photo:
    """What a caller sent: the image's bytes, or a URL."""

    data: bytes | None = None
    url: str | None = None


@dataclass
class Budget:
    """One search's spending: the calls it cost, and the pacer-clock time its caller stops waiting."""

    deadline: float
    calls: int = 0


@dataclass
class Metrics:
    """What /metrics and /healthz report (counted since the service started)."""

    searches: Counter[str] = field(default_factory=Counter)  # by HTTP status
    errors: Counter[str] = field(default_factory=Counter)  # by code
    cache_hits: int = 0
    cache_misses: int = 0
    calls: int = 0
    shared_calls: int = 0  # pages another caller's call answered while it was in flight
    cache_errors: int = 0  # reads and stores the cache failed (each read counted as a miss too)
    in_progress: int = 0  # searches begun and not yet answered
    photos_decoded: int = 0  # callers' photos decoded and checked (once each, in a thread)
    decode_seconds: float = 0.0  # their decoding's time, in all


def _host_port(parts: SplitResult) -> tuple[str | None, int]:
    """(hostname, port) of an http(s) URL, the scheme's port when it names none; ValueError for a bad port."""
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


#: The types a match's value is answered in as they are (most of them: checked first, by type).
_JSON_AS_IS = frozenset({str, int, float, bool, type(None)})


def _json_value(value: Any) -> Any:
    if type(value) in _JSON_AS_IS:
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


class SearchService:
    """Searches by photo for callers of the HTTP API (pipeline.serve.web), on one open crawler."""

    def __init__(self, crawler: Crawler, gateway: Gateway, endpoint: str) -> None:
        self.crawler = crawler
        self.gateway = gateway
        self.endpoint = endpoint
        settings = crawler.settings
        self.max_image_side = settings.getint("IMAGESEARCH_MAX_IMAGE_SIDE")
        self.max_image_pixels = settings.getint("IMAGESEARCH_MAX_IMAGE_PIXELS")
        self.cdn_hosts = list_setting(settings, "IMAGESEARCH_CDN_HOSTS")
        self.default_page_size = settings.getint("IMAGESEARCH_PAGE_SIZE")
        self.default_pages = settings.getint("IMAGESEARCH_SERVE_PAGES")
        self.max_pages = settings.getint("IMAGESEARCH_SERVE_MAX_PAGES")
        self.max_wait = settings.getfloat("IMAGESEARCH_SERVE_MAX_WAIT")
        self.timeout = settings.getfloat("IMAGESEARCH_SERVE_TIMEOUT")
        self.max_upload = settings.getint("IMAGESEARCH_SERVE_MAX_UPLOAD_BYTES")
        self.download_urls = settings.getbool("IMAGESEARCH_SERVE_DOWNLOAD_URLS")
        self.actions = ErrorActions.from_settings(settings, gateway.error_actions)
        self.redactor = Redactor(gateway.secrets())
        self.cache = open_cache(settings)
        self.metrics = Metrics()
        self.validate = ValidatePipeline(crawler.stats)
        self.normalize = NormalizePipeline(crawler.stats, "serve")
        middleware = crawler.get_downloader_middleware(GatewayMiddleware)
        if middleware is None:
            raise RuntimeError("the search service needs pipeline.components.middlewares.GatewayMiddleware in "
                               "DOWNLOADER_MIDDLEWARES: it paces and signs the calls")
        self.middleware = middleware
        #: Calls being made now, by cache key: a second caller of the same page waits for that call.
        self._in_flight: dict[str, list[Deferred[dict[str, Any]]]] = {}
        #: Answers fetched and not yet in the cache: stored once their search is answered (store_fetched).
        self._unstored: dict[str, dict[str, Any]] = {}
        self._cache_warned_at: float | None = None
        #: The calls sent and not yet answered.
        self._tickets: set[CallTicket] = set()
        parts = urlsplit(endpoint)
        # host[:port], never a user:password@ the endpoint may carry.
        self.endpoint_host = (f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname or "") or endpoint
        # A cached answer is an equal call's (ApiCall.key: method, parameters, the picture's identity) to
        # the same gateway and host.
        self._scope = f"{gateway.name}|{self.endpoint_host}"
        self._endpoint_address = _host_port(parts)

    def close(self) -> None:
        self.store_fetched()
        self.cache.close()

    # -- the caller's input --------------------------------------------------------------------

    def parse_cat(self, raw: Any) -> str | None:
        cat = category_id(None if raw is None else str(raw))
        if cat is not None and not is_category_id(cat):
            raise ServiceError(400, "bad_cat", f"cat={str(raw)[:40]!r} is not a category id: give digits 0-9")
        return cat

    def parse_pages(self, raw: Any) -> int:
        if raw is None or raw == "":
            return self.default_pages
        try:
            pages = int(str(raw))
        except ValueError:
            pages = 0
        if not 1 <= pages <= self.max_pages:
            raise ServiceError(400, "bad_pages", f"pages={str(raw)[:20]!r}: give a whole number from 1 to "
                                                 f"{self.max_pages} (IMAGESEARCH_SERVE_MAX_PAGES)")
        return pages

    def decode_base64(self, text: Any) -> bytes:
        if not isinstance(text, str):
            raise ServiceError(400, "bad_request", "image_base64 must be a string of Base64")
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]  # a data: URL, as a browser's FileReader gives
        if len(text) > self.max_upload * 4 // 3 + 4:
            raise ServiceError(413, "image_too_large_bytes", f"the image is over {self.max_upload} bytes "
                                                             "(IMAGESEARCH_SERVE_MAX_UPLOAD_BYTES)")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ServiceError(400, "bad_base64", "image_base64 is not valid Base64") from None

    # -- a search --------------------------------------------------------------------------------

    async def search(self, photo: Photo, cat: str | None, pages: int) -> dict[str, Any]:
        """The answer to one POST /search; ServiceError for what is answered with an error."""
        self.metrics.in_progress += 1
        try:
            return await self._search(photo, cat, pages)
        finally:
            self.metrics.in_progress -= 1

    async def _search(self, photo: Photo, cat: str | None, pages: int) -> dict[str, Any]:
        started = time.monotonic()
        budget = Budget(deadline=self.middleware.pacer.clock() + self.timeout)
        image_data: str | ImageRef
        sha256: str | None = None
        if photo.url is not None:
            url = photo.url.strip()
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise ServiceError(400, "bad_url", "url must be an http(s) URL of an image")
            if is_platform_cdn(url, self.cdn_hosts):
                image_data = url
            elif not self.download_urls:
                raise ServiceError(400, "url_not_allowed", "only URLs of the platform's CDN "
                                   "(IMAGESEARCH_CDN_HOSTS) are searched here: send the image itself")
            else:
                photo = Photo(data=await self._download(url, budget))
        if photo.data is not None:
            image = await self._prepare(photo.data)
            sha256, image_data = image.sha256, image
            if self.gateway.uploads_local_images:
                image_data = await self._upload(image_data, budget)
        rows: list[dict[str, Any]] = []
        cached = 0
        total: int | None = None
        fetched = 0
        page_size = 0
        for page in range(1, pages + 1):
            entry, from_cache = await self._page(image_data, cat, page, page_size, budget)
            cached += from_cache
            fetched += 1
            if page == 1:
                total = entry["total_results"]
                page_size = entry["page_size"] or entry["hits"] or self.default_page_size
            rows += entry["items"]
            if not self._has_more(entry, page, page_size, pages):
                break
        matches = self._dedupe(rows)
        return {
            "sha256": sha256, "cat": cat, "gateway": self.gateway.name, "total_results": total,
            "pages_fetched": fetched, "pages_cached": cached, "calls": budget.calls, "matches": matches,
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
        }

    async def _prepare(self, data: bytes) -> ImageRef:
        """The caller's photo decoded once, checked and re-encoded, in a thread of the reactor's pool (one
        large photo never stalls the other callers' searches): the picture its calls send as it is."""
        if len(data) > self.max_upload:
            raise ServiceError(413, "image_too_large_bytes", f"the image is {len(data)} bytes, over "
                               f"{self.max_upload} (IMAGESEARCH_SERVE_MAX_UPLOAD_BYTES)")
        began = time.monotonic()
        try:
            prepared = await maybe_deferred_to_future(
                deferToThread(prepare_image, data, self.max_image_side, self.max_image_pixels))
        except ImageRejected as rejection:
            status = 413 if rejection.reason == "image_too_large" else 422
            raise ServiceError(status, rejection.reason, rejection.detail) from None
        finally:
            self.metrics.photos_decoded += 1
            self.metrics.decode_seconds += time.monotonic() - began
        if problem := self.gateway.picture_problem(prepared.original_size, prepared.size):
            raise ServiceError(422, *problem)
        return ImageRef.checked(prepared, self.max_image_side, self.max_image_pixels)

    async def _download(self, url: str, budget: Budget) -> bytes:
        """The picture at a caller's URL: only from public addresses (or the endpoint's host), redirects
        followed by hand so that each hop is checked, one retry, within the search's time; unsigned."""
        for _ in range(_MAX_REDIRECTS + 1):
            await self._check_address(url)
            left = budget.deadline - self.middleware.pacer.clock()
            request = Request(url, dont_filter=True, meta={
                "download_maxsize": self.max_upload, "dont_redirect": True, "dont_merge_cookies": True,
                "handle_httpstatus_list": [301, 302, 303, 307, 308], "max_retry_times": 1,
                "download_timeout": max(1.0, min(left, self.crawler.settings.getfloat("DOWNLOAD_TIMEOUT")))})
            try:
                response = await self._engine().download_async(request)
            except ServiceError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to fetch the caller's URL is the caller's to see
                raise ServiceError(422, "image_unreachable", f"{type(exc).__name__} fetching {url}: {exc}") from None
            location = response.headers.get(b"Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                url = response.urljoin(location.decode("latin-1"))
                continue
            if response.status != 200:
                raise ServiceError(422, "image_unreachable", f"HTTP {response.status} from {url}")
            body: bytes = response.body
            return body
        raise ServiceError(422, "image_unreachable", f"more than {_MAX_REDIRECTS} redirects from {url}")

    async def _check_address(self, url: str) -> None:
        """ServiceError unless ``url`` is http(s) on a host whose every address is public, or the endpoint's host."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServiceError(400, "bad_url", "url must be an http(s) URL of an image")
        try:
            hostname, port = _host_port(parts)
        except ValueError:
            raise ServiceError(400, "bad_url", "url has a port that is not a number") from None
        if (hostname, port) == self._endpoint_address:
            return
        try:
            found = await maybe_deferred_to_future(deferToThread(socket.getaddrinfo, parts.hostname, port,
                                                                 type=socket.SOCK_STREAM))
        except OSError as exc:
            raise ServiceError(422, "image_unreachable", f"{parts.hostname} does not resolve ({exc})") from None
        for *_, address in found:
            if not ipaddress.ip_address(str(address[0]).split("%")[0]).is_global:
                raise ServiceError(400, "url_not_allowed", f"{parts.hostname} is not a public address: only public "
                                   "image URLs are fetched (or send the image itself)")

    def _engine(self) -> Any:
        engine = self.crawler.engine
        if engine is None or not engine.running:
            raise ServiceError(503, "shutting_down", "the service is shutting down", retry_after=5)
        return engine

    def _has_more(self, entry: dict[str, Any], page: int, page_size: int, pages: int) -> bool:
        """The crawl's paging rule (Gateway.has_more_pages) on the cached page."""
        return self.gateway.has_more_pages(page, entry["hits"], max_pages=pages, page_size=page_size,
                                           page_count=entry["page_count"], total_results=entry["total_results"])

    @staticmethod
    def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One row per num_iid, at its best position (rows come in page order)."""
        seen: set[int] = set()
        out = []
        for row in rows:
            if row["num_iid"] not in seen:
                seen.add(row["num_iid"])
                out.append(row)
        return out

    # -- pages: the cache, then the gateway -------------------------------------------------------

    async def _page(self, image_data: str | ImageRef, cat: str | None, page: int, page_size: int,
                    budget: Budget) -> tuple[dict[str, Any], bool]:
        """Page ``page`` of the search, from the cache or a call; positions run on from page 1's ``page_size``
        (0 for page 1 itself: its own length), as in the crawl's matches table."""
        call = self.gateway.build_search(image_data, page, cat)

        async def fetch() -> dict[str, Any]:
            response = await self._call(call, budget)
            try:
                result = self.gateway.parse_search(response)
            except GatewayError as error:
                raise self._gateway_error(error, response) from None
            size = page_size or result.page_size or len(result.items) or self.default_page_size
            return {
                "total_results": result.total_results, "page_size": result.page_size,
                "page_count": result.page_count, "hits": len(result.items),  # before validation, as the crawl counts
                "items": self._rows(result, page, size, cat, datetime.now(UTC)),
            }

        return await self._once(call, fetch)

    async def _once(self, call: ApiCall, fetch: Callable[[], Awaitable[dict[str, Any]]]) -> tuple[dict[str, Any], bool]:
        """``call``'s answer from the cache (True), else fetched (False): once, however many callers ask
        for it at the same moment (they share the one call's answer, or its error)."""
        key = f"{self._scope}|{call.key}"
        entry = self._cached(key)
        if entry is not None:
            self.metrics.cache_hits += 1
            return entry, True
        waiting = self._in_flight.get(key)
        if waiting is not None:  # the same call is being made for another caller: its answer is ours
            self.metrics.shared_calls += 1
            mine: Deferred[dict[str, Any]] = Deferred()
            waiting.append(mine)
            return await maybe_deferred_to_future(mine), True
        self.metrics.cache_misses += 1
        self._in_flight[key] = []
        try:
            entry = await fetch()
        except BaseException as exc:
            for other in self._in_flight.pop(key):
                other.errback(exc)
            raise
        if not isinstance(self.cache, NoCache):
            # Kept here until store_fetched(), which the HTTP layer calls once the answer is written (0.3 ms of
            # JSON and SQLite a page off every uncached search's latency); a caller asking meanwhile gets it here.
            self._unstored[key] = entry
        for other in self._in_flight.pop(key):
            other.callback(entry)
        return entry, False

    def store_fetched(self) -> None:
        """Put the pages fetched since the last call into the cache.

        Not done as a page arrives: its search's answer would wait for it. The HTTP layer calls this in
        the reactor turn after it wrote an answer, so the answer goes out first (under Scrapy's asyncio
        reactor a turn sends what was written before it runs the calls scheduled for it); close() stores
        what is left."""
        pending, self._unstored = self._unstored, {}
        for key, entry in pending.items():
            try:
                self.cache.put(key, entry)
            except Exception as exc:  # noqa: BLE001 - an answer not kept costs a call later, not this search
                self._cache_failed("keep", exc)

    def _cached(self, key: str) -> dict[str, Any] | None:
        if (entry := self._unstored.get(key)) is not None:
            return entry
        try:
            return self.cache.get(key)
        except Exception as exc:  # noqa: BLE001 - a cache that does not answer is a miss
            self._cache_failed("read", exc)
            return None

    def _cache_failed(self, what: str, exc: Exception) -> None:
        """A warning, at most one a minute, while the cache (Redis, the SQLite file) fails."""
        self.metrics.cache_errors += 1
        now = time.monotonic()
        if self._cache_warned_at is None or now - self._cache_warned_at >= 60:
            self._cache_warned_at = now
            logger.warning("The answer cache could not %s an answer (%s: %s): searching on without it",
                           what, type(exc).__name__, self.redactor.redact(str(exc))[:200])

    def _rows(self, result: SearchPage, page: int, page_size: int, cat: str | None,
              crawled_at: datetime) -> list[dict[str, Any]]:
        """The page's hits as the crawl's pipelines validate and normalise them (their checks, on dicts)."""
        rows = []
        for rank, raw in enumerate(result.items, start=1):
            hit = {name: raw[name] for name in HIT_FIELDS if name in raw}
            hit.update(seed_id="serve", seed_rank=0, page=page, position=(page - 1) * page_size + rank, cat=cat,
                       crawled_at=crawled_at)
            try:
                self.validate.check_product(hit)
            except DropItem:
                continue
            self.normalize.normalize_product(hit)
            rows.append({name: _json_value(hit.get(name)) for name in MATCH_COLUMNS})
        return rows

    async def _upload(self, image: ImageRef, budget: Budget) -> str:
        """The uploaded picture's reference, for a gateway that uploads first (cached, and shared, like a page)."""
        call = self.gateway.build_upload(image)

        async def fetch() -> dict[str, Any]:
            response = await self._call(call, budget)
            try:
                return {"image": self.gateway.parse_upload(response)}
            except GatewayError as error:
                raise self._gateway_error(error, response) from None

        entry, _ = await self._once(call, fetch)
        return str(entry["image"])

    def quota_wait(self, calls: int = 1) -> float:
        """Seconds until ``calls`` more calls could go, under the shared quota and any ban."""
        pacer = self.middleware.pacer
        # The service's calls not yet booked (between its check and the middleware) hold no slot yet.
        unbooked = sum(not ticket.booked for ticket in self._tickets)
        end = pacer.projected_end(calls + unbooked)
        if end is None:
            return pacer.ban_left()
        return max(0.0, end - pacer.clock())

    def quota_left(self) -> int | None:
        """Calls that could go right now without waiting (None without a quota)."""
        pacer = self.middleware.pacer
        quota = pacer.quota
        if quota is None:
            return None
        low, high = 0, quota.calls
        while low < high:  # the most calls whose last could go now
            middle = (low + high + 1) // 2
            if self.quota_wait(middle) <= 0.001:
                low = middle
            else:
                high = middle - 1
        return low

    async def _call(self, call: ApiCall, budget: Budget) -> Response:
        wait = self.quota_wait()
        left = budget.deadline - self.middleware.pacer.clock()
        if wait > min(self.max_wait, left):
            raise self._quota_wait(wait, left)
        # The check above sees the slots booked so far; the slot itself is booked only if it is still within
        # the wait (another crawl on the same Redis may have booked the next ones meanwhile), and the deadline
        # (the middleware bounds the wait by both).
        ticket = CallTicket(deadline=budget.deadline, max_wait=self.max_wait)
        request = self.gateway.to_request(call, self.endpoint, dont_filter=True, meta={CALL_TICKET_META_KEY: ticket})
        self._tickets.add(ticket)
        try:
            response: Response = await self._engine().download_async(request)
        except GatewayStopped:
            raise self._refused(ticket) from None
        except ImageRejected as rejection:
            raise ServiceError(422, rejection.reason, rejection.detail) from None
        except ServiceError:
            raise
        except Exception as exc:  # noqa: BLE001 - the retries are spent: the gateway did not answer
            if ticket.expired(self.middleware.pacer.clock()):
                raise self._timed_out() from None
            message = self.redactor.redact(f"{type(exc).__name__}: {exc}")
            raise ServiceError(502, "gateway_unreachable", f"the gateway did not answer ({message})") from None
        finally:
            self.middleware.release_probe(request)  # a first call over without the gateway's answer
            self._tickets.discard(ticket)
            budget.calls += ticket.calls
            self.metrics.calls += ticket.calls
        if response.status != 200 and response.status not in self.gateway.error_statuses:
            raise ServiceError(502, f"http_{response.status}", f"the gateway answered HTTP {response.status}")
        return response

    def _quota_wait(self, wait: float, left: float) -> ServiceError:
        limit = (f"IMAGESEARCH_SERVE_MAX_WAIT={self.max_wait:g} s" if wait > self.max_wait
                 else f"the {left:.1f} s left of IMAGESEARCH_SERVE_TIMEOUT={self.timeout:g} s")
        return ServiceError(429, "quota_wait", f"the next call may go in {wait:.1f} s, over {limit}: "
                            "try again later", retry_after=max(1.0, wait - self.max_wait))

    def _timed_out(self) -> ServiceError:
        return ServiceError(504, "gateway_timeout", f"no answer from the gateway within IMAGESEARCH_SERVE_TIMEOUT="
                            f"{self.timeout:g} s: try again later", retry_after=5)

    def _refused(self, ticket: CallTicket) -> ServiceError:
        """A call the middleware did not send (or not again): why, for its caller."""
        if ticket.refusal == "timeout":
            return self._timed_out()
        if ticket.refusal == "quota_wait":
            return self._quota_wait(ticket.wait, (ticket.deadline or 0.0) - self.middleware.pacer.clock())
        if ticket.refusal == "redis":
            return ServiceError(503, "redis_unavailable", "the quota store (IMAGESEARCH_REDIS_URL) did not answer: "
                                "try again later", retry_after=5)
        return self._stopped()

    def _stopped(self) -> ServiceError:
        """A call refused because the gateway takes no more (a fatal answer, the day's quota spent)."""
        middleware = self.middleware
        if middleware.resumes_at is not None:
            seconds = max(1.0, (middleware.resumes_at - datetime.now(UTC)).total_seconds())
            return ServiceError(503, "quota_spent", f"the gateway's quota for the day is spent: calls go again at "
                                f"{middleware.resumes_at:%Y-%m-%d %H:%M} UTC", retry_after=seconds)
        if middleware.fatal is not None:
            return ServiceError(503, middleware.fatal, "the service stopped calling the gateway after a fatal "
                                "answer (see its log): fix the settings and restart it")
        return ServiceError(503, "shutting_down", "the service is shutting down", retry_after=5)

    def _gateway_error(self, error: GatewayError, response: Response) -> ServiceError:
        """An error answer the middleware passed on, per the error table."""
        description = self.redactor.redact(error.describe())
        if isinstance(error, MalformedResponse):
            return ServiceError(502, error.code, f"the gateway's answer is not its format: {description}")
        action = self.actions.action_for(error)
        if action == FATAL:
            method = str(response.meta.get(METHOD_META_KEY, "the call"))
            logger.error("%s", self.redactor.redact(self.gateway.fatal_message(error, method)))
            return ServiceError(502, error.code, description)
        if action == SEED_ERROR:  # the gateway refused this picture or search
            return ServiceError(422, error.code, description)
        if action in (THROTTLE, STOP):  # banned for longer than its caller waits, or the throttle budget is spent
            return ServiceError(429, error.code, description, retry_after=max(1.0, self.quota_wait()))
        return ServiceError(502, error.code, description)  # retries spent
