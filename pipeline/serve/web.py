"""The search service's HTTP API and web page, on twisted.web in the crawler's own reactor.

``POST /search``  a photo → its matches (see README "Search service")
``GET /``         the web page (pipeline/serve/assets, served from here: no build step, no CDN)
``GET /healthz``  JSON: is the service calling the gateway, the quota left, the cache
``GET /metrics``  Prometheus text format (prometheus_client)

twisted.web, not an ASGI framework: Scrapy's reactor is already running, every gateway call must go
through its engine, and twisted.web serves on that reactor with no second event loop, thread or
dependency. Its handlers are plain functions that hand a coroutine to the reactor.
"""

from __future__ import annotations

import json
import logging
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

import multipart
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from scrapy.utils.defer import deferred_from_coro
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from pipeline.serve.service import Photo, ServiceError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from twisted.python.failure import Failure

    from pipeline.serve.service import SearchService

logger = logging.getLogger(__name__)

#: The web page's files, by URL path.
ASSETS = {
    b"": ("index.html", "text/html; charset=utf-8"),
    b"app.js": ("app.js", "text/javascript; charset=utf-8"),
    b"app.css": ("app.css", "text/css; charset=utf-8"),
}
#: The page loads its own files only; the listings' pictures come from wherever their pic_url points.
PAGE_POLICY = ("default-src 'self'; img-src * data: blob:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: Multipart and JSON wrappers around the image may add this much to its bytes (Base64 adds a third).
_ENVELOPE_BYTES = 64 * 1024


def _json(request: Request, status: int, body: dict[str, Any], retry_after: int | None = None) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    if retry_after is not None:
        request.setHeader(b"retry-after", str(retry_after).encode())
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _internal_error() -> ServiceError:
    return ServiceError(500, "internal_error", "the service failed on this search (see its log)")


def _multipart_fields(request: Request, max_upload: int) -> dict[str, bytes]:
    """The multipart/form-data body's fields (the first of each name), parsed with ``multipart``, all in
    memory (the body is at most the upload limit); ServiceError 400 for a body that is not multipart."""
    _, options = multipart.parse_options_header(request.getHeader("content-type") or "")
    boundary = options.get("boundary")
    if not boundary:
        raise ServiceError(400, "bad_multipart", "multipart/form-data without a boundary")
    content = request.content
    if content is None:
        raise ServiceError(400, "no_image", "send the photo as the multipart field 'photo'")
    content.seek(0)
    limit = max_upload + _ENVELOPE_BYTES
    fields: dict[str, bytes] = {}
    try:
        for part in multipart.MultipartParser(content, boundary, spool_limit=limit, memory_limit=limit,
                                              disk_limit=0):
            fields.setdefault(part.name, part.raw)
    except multipart.MultipartError as exc:
        raise ServiceError(400, "bad_multipart", f"the multipart body cannot be read: {exc}") from None
    return fields


class LimitedRequest(Request):
    """A request whose body is dropped, not buffered, once its length is over the service's limit."""

    max_body = 0  # set by ServiceSite

    def gotLength(self, length: int | None) -> None:
        self.too_large = length is not None and self.max_body > 0 and length > self.max_body
        super().gotLength(0 if self.too_large else length)

    def handleContentChunk(self, data: bytes) -> None:
        if getattr(self, "too_large", False):
            return
        # A chunked body gives no length: it is counted as it comes.
        if self.max_body and self.content is not None and self.content.tell() + len(data) > self.max_body:
            self.too_large = True
            return
        super().handleContentChunk(data)


class ServiceSite(Site):
    """twisted.web's Site with our request class and no access log of its own (the service logs each search)."""

    def __init__(self, root: Resource, max_body: int) -> None:
        request_class = type("ServiceRequest", (LimitedRequest,), {"max_body": max_body})
        # Bodies are read by SearchResource (multipart): twisted.web's own parse of them into request.args
        # (the email package, 0.6 ms a photo on the reactor thread) is off.
        super().__init__(root, requestFactory=request_class, parsePOSTFormSubmission=False)
        self.noisy = False

    def log(self, request: Any) -> None:
        return None


class Asset(Resource):
    isLeaf = True

    def __init__(self, name: str, content_type: str) -> None:
        super().__init__()
        self.body = resources.files("pipeline.serve").joinpath("assets", name).read_bytes()
        self.content_type = content_type.encode()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"content-security-policy", PAGE_POLICY.encode())
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        return self.body


class NotFound(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return _json(request, 404, {"error": "not_found", "message": "no such path: try POST /search or GET /"})


class ServiceResource(Resource):
    """Base of the API resources: the service may not be up yet (the crawler opens its spider after binding)."""

    isLeaf = True

    def __init__(self, get_service: Callable[[], SearchService | None]) -> None:
        super().__init__()
        self.get_service = get_service

    def service(self, request: Request) -> SearchService | None:
        return self.get_service()

    def render(self, request: Request) -> bytes | int:
        method = request.method.decode("ascii", "replace")
        allowed = [m for m in ("GET", "POST") if hasattr(self, f"render_{m}")]
        if method not in allowed:
            request.setHeader(b"allow", ", ".join(allowed).encode())
            return _json(request, 405, {"error": "method_not_allowed", "message": f"use {' or '.join(allowed)}"})
        service = self.get_service()
        if service is None:
            return _json(request, 503, {"error": "starting", "message": "the service is starting"}, retry_after=1)
        handler: Callable[[Request, SearchService], bytes | int] = getattr(self, f"render_{method}")
        return handler(request, service)


class SearchResource(ServiceResource):
    def render_POST(self, request: Request, service: SearchService) -> bytes | int:
        started = time.monotonic()
        try:
            photo, cat, pages = self._input(request, service)
        except ServiceError as error:
            service.metrics.searches[str(error.status)] += 1
            service.metrics.errors[error.code] += 1
            logger.info("POST /search %d %s: %s", error.status, error.code, error.message)
            return _json(request, error.status, error.body(), None)
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))

        def answer(result: dict[str, Any]) -> None:
            service.metrics.searches["200"] += 1
            logger.info("POST /search 200 sha256=%s cat=%s pages=%d (%d cached) calls=%d matches=%d %.0f ms",
                        (result["sha256"] or "-")[:12], cat or "-", result["pages_fetched"], result["pages_cached"],
                        result["calls"], len(result["matches"]), (time.monotonic() - started) * 1000)
            if not finished[0]:
                request.write(_json(request, 200, result))
                request.finish()

        def failed(failure: Failure) -> None:
            error = failure.value
            if not isinstance(error, ServiceError):
                logger.error("POST /search failed unexpectedly", exc_info=failure.value)
                error = _internal_error()
            service.metrics.searches[str(error.status)] += 1
            service.metrics.errors[error.code] += 1
            logger.info("POST /search %d %s: %s", error.status, error.code, error.message)
            if not finished[0]:
                retry = error.retry_seconds if error.retry_after is not None else None
                request.write(_json(request, error.status, error.body(), retry))
                request.finish()

        def last_resort(failure: Failure) -> None:
            logger.error("POST /search: answering failed", exc_info=failure.value)
            if not finished[0]:  # never a connection left open
                request.write(_json(request, 500, _internal_error().body()))
                request.finish()

        def store_fetched(_: Any) -> None:
            from twisted.internet import reactor  # the one Scrapy installed (importing it first installs one)

            # In the next turn: this answer is sent first (what a turn wrote goes out before its timers run).
            reactor.callLater(0, service.store_fetched)

        deferred = deferred_from_coro(service.search(photo, cat, pages))
        deferred.addCallbacks(answer, failed)
        deferred.addErrback(last_resort)
        deferred.addBoth(store_fetched)
        return NOT_DONE_YET

    def _input(self, request: Request, service: SearchService) -> tuple[Photo, str | None, int]:
        if getattr(request, "too_large", False):
            raise ServiceError(413, "image_too_large_bytes",
                               f"the request is over {service.max_upload} bytes (IMAGESEARCH_SERVE_MAX_UPLOAD_BYTES)")
        kind = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                body = json.loads((request.content.read() if request.content is not None else b"") or b"null")
            except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
                raise ServiceError(400, "bad_json", "the body is not JSON") from None
            if not isinstance(body, dict):
                raise ServiceError(400, "bad_request", 'give a JSON object: {"url": ...} or {"image_base64": ...}')
            unknown = sorted(set(body) - {"url", "image_base64", "cat", "pages"})
            if unknown:
                raise ServiceError(400, "bad_request", f"unknown field {unknown[0]!r}: give url or image_base64, "
                                                       "and optionally cat and pages")
            if ("url" in body) == ("image_base64" in body):
                raise ServiceError(400, "no_image", "give exactly one of url and image_base64")
            if "url" in body:
                if not isinstance(body["url"], str):
                    raise ServiceError(400, "bad_url", "url must be a string")
                photo = Photo(url=body["url"])
            else:
                photo = Photo(data=service.decode_base64(body["image_base64"]))
            return photo, service.parse_cat(body.get("cat")), service.parse_pages(body.get("pages"))
        if kind == "multipart/form-data":
            fields = _multipart_fields(request, service.max_upload)
            data = fields.get("photo") or fields.get("image")
            if not data:
                raise ServiceError(400, "no_image", "send the photo as the multipart field 'photo'")

            def field(name: str) -> str | None:
                value = fields.get(name)
                return value.decode("utf-8", "replace") if value is not None else None

            return Photo(data=data), service.parse_cat(field("cat")), service.parse_pages(field("pages"))
        raise ServiceError(415, "unsupported_media_type",
                           "send multipart/form-data with a 'photo' file, or application/json with url or image_base64")


class HealthResource(ServiceResource):
    def render_GET(self, request: Request, service: SearchService) -> bytes:
        health = health_of(service)
        return _json(request, 200 if health["status"] == "ok" else 503, health)


def health_of(service: SearchService) -> dict[str, Any]:
    middleware = service.middleware
    quota = middleware.pacer.quota
    metrics = service.metrics
    looked_up = metrics.cache_hits + metrics.cache_misses
    status, reason = "ok", None
    if middleware.resumes_at is not None:
        status, reason = "quota_spent", f"no call until {middleware.resumes_at:%Y-%m-%d %H:%M} UTC"
    elif middleware.fatal is not None:
        status, reason = "stopped", f"a fatal answer ({middleware.fatal}) stopped the calls: fix and restart"
    return {
        "status": status, "reason": reason, "gateway": service.gateway.name,
        "endpoint_host": service.endpoint_host,
        "quota": f"{quota.calls}/{quota.seconds:g}" if quota else None,
        "quota_left": service.quota_left(), "quota_wait_seconds": round(service.quota_wait(), 3),
        "calls": metrics.calls,
        "cache": {"hits": metrics.cache_hits, "misses": metrics.cache_misses, "errors": metrics.cache_errors,
                  "hit_rate": round(metrics.cache_hits / looked_up, 4) if looked_up else None},
        "searches": dict(metrics.searches), "searches_in_progress": metrics.in_progress,
        "errors": dict(metrics.errors),
    }


class ServiceCollector:
    """The service's metrics, read from it when Prometheus scrapes."""

    def __init__(self, get_service: Callable[[], SearchService | None]) -> None:
        self.get_service = get_service

    def collect(self) -> Iterator[Any]:
        service = self.get_service()
        if service is None:
            return
        metrics = service.metrics
        searches = CounterMetricFamily("imagesearch_serve_searches", "Searches answered, by HTTP status.",
                                       labels=["status"])
        for status, count in sorted(metrics.searches.items()):
            searches.add_metric([status], count)
        yield searches
        errors = CounterMetricFamily("imagesearch_serve_errors", "Searches answered with an error, by code.",
                                     labels=["code"])
        for code, count in sorted(metrics.errors.items()):
            errors.add_metric([code], count)
        yield errors
        yield GaugeMetricFamily("imagesearch_serve_searches_in_progress", "Searches begun and not yet answered.",
                                value=metrics.in_progress)
        yield CounterMetricFamily("imagesearch_serve_photos_decoded",
                                  "Callers' photos decoded and checked (each once, off the reactor thread).",
                                  value=metrics.photos_decoded)
        yield CounterMetricFamily("imagesearch_serve_decode_seconds", "Time spent decoding callers' photos.",
                                  value=metrics.decode_seconds)
        yield CounterMetricFamily("imagesearch_serve_cache_hits", "Pages answered from the cache.",
                                  value=metrics.cache_hits)
        yield CounterMetricFamily("imagesearch_serve_cache_misses", "Pages the cache did not hold.",
                                  value=metrics.cache_misses)
        yield CounterMetricFamily("imagesearch_serve_shared_pages",
                                  "Pages answered by another caller's call for the same page, in flight.",
                                  value=metrics.shared_calls)
        yield CounterMetricFamily("imagesearch_serve_cache_errors",
                                  "Cache reads and stores that failed (Redis or the cache file did not answer).",
                                  value=metrics.cache_errors)
        yield CounterMetricFamily("imagesearch_gateway_calls", "Gateway calls sent (retries included).",
                                  value=metrics.calls)
        left = service.quota_left()
        if left is not None:
            yield GaugeMetricFamily("imagesearch_quota_left", "Calls that could go now without waiting for the quota.",
                                    value=left)
        yield GaugeMetricFamily("imagesearch_quota_wait_seconds", "Seconds until the next call could go.",
                                value=service.quota_wait())
        up = service.middleware.fatal is None and service.middleware.resumes_at is None
        yield GaugeMetricFamily("imagesearch_serve_up", "1 while the service calls the gateway.", value=int(up))


class MetricsResource(ServiceResource):
    def __init__(self, get_service: Callable[[], SearchService | None]) -> None:
        super().__init__(get_service)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServiceCollector(get_service))

    def render_GET(self, request: Request, service: SearchService) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.registry)


class Root(Resource):
    def __init__(self, get_service: Callable[[], SearchService | None]) -> None:
        super().__init__()
        self.api: dict[bytes, Resource] = {
            b"search": SearchResource(get_service), b"healthz": HealthResource(get_service),
            b"metrics": MetricsResource(get_service),
        }
        self.assets = {path: Asset(*spec) for path, spec in ASSETS.items()}

    def getChild(self, path: bytes, request: Request) -> Resource:
        if request.postpath:  # only one level: /search, /app.js
            return NotFound()
        return self.api.get(path) or self.assets.get(path) or NotFound()


def build_site(get_service: Callable[[], SearchService | None], max_body: int) -> Site:
    return ServiceSite(Root(get_service), max_body + max_body // 3 + _ENVELOPE_BYTES)

