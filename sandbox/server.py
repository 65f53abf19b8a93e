"""The sandbox over HTTP: twisted.web resources for each protocol's paths, images and /_sandbox, and listen().

``/router/rest`` speaks TOP (sandbox.top), ``/taobao/item_search_img/`` and ``/taobao/upload_img/``
speak Onebound (sandbox.onebound), ``/`` speaks Alibaba Cloud Image Search's RPC (sandbox.aliyun); all
search one catalogue and count one set of app accounts.
"""

from __future__ import annotations

import email.policy
import logging
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from pipeline.gateways.aliyun.wire import PATH as ALIYUN_PATH
from pipeline.gateways.onebound.wire import SEARCH_PATH, UPLOAD_PATH
from pipeline.gateways.top.wire import ROUTER_PATH
from sandbox.accounts import Accounts
from sandbox.aliyun import AliyunProtocol
from sandbox.calls import JSON_TYPE, Answer, Call, json_bytes
from sandbox.config import SandboxConfig
from sandbox.faults import FaultDecision, FaultInjector
from sandbox.models import ImageSearchBackend
from sandbox.onebound import OneboundProtocol
from sandbox.top import TopProtocol

logger = logging.getLogger(__name__)

#: Largest image ``taobao.upload.img`` will fetch from an ``image_url``.
MAX_FETCH_BYTES = 20 * 1024 * 1024
#: Largest request body an API path takes.  A phone photo (~12 MP, a few MB of JPEG) as Base64 is
#: well under this; twisted.web would otherwise buffer and parse any size on the reactor thread.
MAX_BODY_BYTES = 10 * 1024 * 1024
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def _form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """The text fields and the file parts of a request body (urlencoded or multipart), first value of each.

    A multipart part is a file when it has a filename or, as TOP SDKs send ``byte[]`` arguments, the
    disposition ``file``; anything else is text, decoded as its charset or UTF-8.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    if kind == "application/x-www-form-urlencoded":
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            fields.setdefault(key, value)
    elif kind == "multipart/form-data":
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
        )
        for part in message.iter_parts() if message.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str) or not name:
                continue
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            if part.get_filename() is not None or part.get_content_disposition() == "file":
                files.setdefault(name, data)
            else:
                fields.setdefault(name, data.decode(part.get_content_charset() or "utf-8", "replace"))
    return fields, files


def _call(request: Request, path: str) -> Call:
    """The call a request makes to an API path: query string and body, the body winning on a name in both."""
    pairs = tuple(parse_qsl(urlsplit(request.uri.decode("latin-1")).query, keep_blank_values=True))
    query = dict(reversed(pairs))
    too_large = bool(getattr(request, "body_too_large", False))
    body = b""
    if not too_large and request.content is not None:
        request.content.seek(0)
        body = request.content.read()
    content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
    fields, files = _form(content_type, body) if body else ({}, {})
    headers = {
        name.decode("latin-1").lower(): ",".join(v.decode("latin-1") for v in values)
        for name, values in request.requestHeaders.getAllRawHeaders()
    }
    return Call(path, {**query, **fields}, frozenset(query), files, _served_host(request), too_large,
                method=request.method.decode("latin-1"), headers=headers, query_pairs=pairs, body=body)


def _served_host(request: Request) -> str:
    """``host:port`` the client used (so links in answers work from where it stands)."""
    header = (request.getHeader(b"host") or b"").decode("ascii", "replace")
    if _HOST_RE.match(header):
        return header
    address = request.getHost()
    return f"{address.host}:{address.port}"


class _CappedRequest(Request):
    """A Request that stops keeping its body past MAX_BODY_BYTES and marks itself ``body_too_large``.

    The rest of an oversized body is read and dropped as it arrives (cheap, and the client can still
    read our answer), so twisted.web neither buffers nor parses it; the router then answers an
    error_response without running the call.  Both a Content-Length and a chunked body are capped.
    """

    body_too_large = False
    _body_bytes = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > MAX_BODY_BYTES:
            self.body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_bytes += len(data)
        if self._body_bytes > MAX_BODY_BYTES:
            self.body_too_large = True
            # An empty body is not parsed into args at all.
            if self.content is not None:
                self.content.seek(0)
                self.content.truncate()
            return
        super().handleContentChunk(data)


class _FetchTooLarge(ValueError):
    """An ``image_url`` body over MAX_FETCH_BYTES."""


class _CappedBody(Protocol):
    """Collects a response body into ``finished``, aborting the connection past ``limit`` bytes.

    Unlike ``readBody``, a body ended by the server closing the connection (no Content-Length, not
    chunked: twisted reports PotentialDataLoss) is complete, as HTTP/1.0 servers send them.
    """

    def __init__(self, finished: Deferred[bytes], limit: int, url: str, length_known: bool) -> None:
        self.finished = finished
        self.limit = limit
        self.url = url
        self.length_known = length_known
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self.finished.called:
            return
        self._size += len(data)
        if self._size > self.limit:
            self._chunks.clear()
            self.abort()
            if not self.finished.called:
                self.finished.errback(_FetchTooLarge(f"image at {self.url} is larger than {self.limit} bytes"))
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self.finished.called:
            return
        if reason.check(ResponseDone) or (reason.check(PotentialDataLoss) and not self.length_known):
            self.finished.callback(b"".join(self._chunks))
        else:
            self.finished.errback(reason)

    def abort(self) -> None:
        """Stop reading and close the connection to the image server."""
        if self.transport is None:
            return
        # The body's transport is twisted's TransportProxyProducer: no abortConnection, but
        # stopProducing reaches the TCP transport, which stops reading and closes.
        abort = getattr(self.transport, "abortConnection", None) or getattr(self.transport, "stopProducing", None)
        if abort is not None:
            abort()


def _read_capped(response: IResponse, url: str, limit: int) -> Deferred[bytes]:
    """The body of ``response``, or a failure once it passes ``limit`` bytes; cancelling aborts the connection."""
    body = _CappedBody(Deferred(lambda _d: body.abort()), limit, url, response.length is not UNKNOWN_LENGTH)
    response.deliverBody(body)
    return body.finished


def _hang_up(response: IResponse, url: str) -> None:
    """Close the connection of a response whose body we won't read (twisted holds it paused, open, otherwise)."""
    _read_capped(response, url, 0).addErrback(lambda _failure: None).cancel()


class _Tracked:
    """Whether the client went away before we answered."""

    def __init__(self, request: Request) -> None:
        self.gone = False
        request.notifyFinish().addErrback(self._on_gone)

    def _on_gone(self, _failure: Any) -> None:
        self.gone = True


class ApiProtocol(typing.Protocol):
    """What an API path needs of its protocol (sandbox.top.TopProtocol, sandbox.onebound.OneboundProtocol,
    sandbox.aliyun.AliyunProtocol)."""

    def record(self, call: Call) -> None: ...

    def handle(self, call: Call) -> Awaitable[Answer]: ...

    def too_large(self, call: Call, limit: int) -> Answer: ...

    def remote_error(self, call: Call, variant: float) -> Answer: ...

    def internal_error(self, call: Call) -> Answer: ...

    def garbage_body(self) -> bytes: ...


class ApiResource(Resource):
    """One API path: GET query string or POST form/multipart, answered by its protocol, through the faults."""

    isLeaf = True

    def __init__(self, path: str, protocol: ApiProtocol, faults: FaultInjector, accounts: Accounts,
                 reactor: Any) -> None:
        super().__init__()
        self.path = path
        self.protocol = protocol
        self.faults = faults
        self.accounts = accounts
        self.reactor = reactor

    def render_GET(self, request: Request) -> Any:
        return self._render(request)

    def render_POST(self, request: Request) -> Any:
        return self._render(request)

    def render_HEAD(self, request: Request) -> bytes:
        # twisted.web would otherwise run HEAD as a GET (the call executes and costs quota, and only
        # the body is dropped); raising UnsupportedMethod does the same.  HEAD is no API call: answer
        # 405 before anything is counted.
        request.setResponseCode(405)
        request.setHeader(b"allow", b"GET, POST")
        return b""

    def _render(self, request: Request) -> Any:
        call = _call(request, self.path)
        self.protocol.record(call)
        tracked = _Tracked(request)
        if call.body_too_large:
            # The body was dropped unread (see _CappedRequest): answer without running the call.
            self._write(self.protocol.too_large(call, MAX_BODY_BYTES), request, tracked)
            return NOT_DONE_YET
        # Faults are decided before the call is looked at: a faulted call costs no quota, runs nothing.
        decision = self.faults.draw()
        if decision.slow:
            self.accounts.stats.faults["slow"] += 1
            self.reactor.callLater(self.faults.config.slow_seconds, self._answer, request, call, decision, tracked)
        else:
            self._answer(request, call, decision, tracked)
        return NOT_DONE_YET

    def _answer(self, request: Request, call: Call, decision: FaultDecision, tracked: _Tracked) -> None:
        if tracked.gone:
            # The client gave up during a slow fault: nothing is processed or counted against quota.
            return
        if decision.failure is not None:
            self.accounts.stats.faults[decision.failure] += 1
            self._write_fault(request, call, decision)
            return
        d = Deferred.fromCoroutine(self._handle(call))
        d.addCallback(self._write, request, tracked)

    async def _handle(self, call: Call) -> Answer:
        try:
            return await self.protocol.handle(call)
        except Exception:  # a sandbox bug answers as the platform's own internal error
            logger.exception("sandbox internal error on %s", self.path)
            return self.protocol.internal_error(call)

    def _write(self, answer: Answer, request: Request, tracked: _Tracked) -> None:
        if tracked.gone:
            return
        # HTTP 200 for error answers too, like TOP and Onebound; aliyun's carry their status.
        request.setResponseCode(answer.status)
        for name, value in answer.headers:
            request.setHeader(name, value)
        request.setHeader(b"content-type", answer.content_type)
        request.write(answer.body)
        request.finish()

    def _write_fault(self, request: Request, call: Call, decision: FaultDecision) -> None:
        kind = decision.failure
        if kind == "5xx":
            status = (500, 502, 503)[min(2, int(decision.variant * 3))]
            request.setResponseCode(status)
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.write(
                f"<html><head><title>{status} Error</title></head><body><h1>{status}</h1>"
                f"<p>The gateway is having trouble (sandbox fault).</p></body></html>".encode()
            )
            request.finish()
        elif kind == "garbage":
            request.setResponseCode(200)
            if decision.variant < 0.5:
                body = self.protocol.garbage_body()
                request.setHeader(b"content-type", JSON_TYPE)
                request.write(body[: len(body) // 2])
            else:
                request.setHeader(b"content-type", b"text/html; charset=utf-8")
                request.write(b"<html><body><h1>System busy, please retry later</h1></body></html>")
            request.finish()
        elif kind == "drop":
            body = self.protocol.garbage_body()
            request.setHeader(b"content-type", JSON_TYPE)
            request.setHeader(b"content-length", str(len(body)).encode())
            request.write(body[: len(body) // 2])
            transport = request.channel.transport if request.channel is not None else None
            if ITCPTransport.providedBy(transport):
                transport.abortConnection()
        else:  # remote: a transient error answer
            self._write(self.protocol.remote_error(call, decision.variant), request, _Tracked(request))


class ImageFetcher:
    """Fetches an ``image_url`` for taobao.upload.img over HTTP, capped at MAX_FETCH_BYTES and ``timeout``."""

    def __init__(self, reactor: Any, timeout: float) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self._agent = Agent(reactor, connectTimeout=timeout)

    async def __call__(self, url: str) -> bytes:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url[:100]!r}")
        d = self._agent.request(b"GET", url.encode("utf-8"), Headers({b"user-agent": [b"imagesearch-sandbox"]}))
        d.addTimeout(self.timeout, self.reactor)
        response = await d
        if response.code != 200:
            _hang_up(response, url)
            raise ValueError(f"HTTP {response.code} from {url}")
        if response.length is not UNKNOWN_LENGTH and response.length > MAX_FETCH_BYTES:
            # Announced too large: close the connection rather than read a byte of it.
            _hang_up(response, url)
            raise ValueError(f"image at {url} is larger than {MAX_FETCH_BYTES} bytes")
        # Counted as it arrives: a chunked or close-delimited body announces no length.
        body_d = _read_capped(response, url, MAX_FETCH_BYTES)
        body_d.addTimeout(self.timeout, self.reactor)
        return await body_d


class _BytesDirectory(Resource):
    """``/<prefix>/<key>.jpg`` served from a lookup function."""

    isLeaf = True

    def __init__(self, lookup: Any) -> None:
        super().__init__()
        self.lookup = lookup

    def render_GET(self, request: Request) -> bytes:
        postpath = request.postpath or []
        name = postpath[0].decode("utf-8", "replace") if len(postpath) == 1 else ""
        return _picture(request, self.lookup(name[: -len(".jpg")]) if name.endswith(".jpg") else None, "image/jpeg")


class _CdnDirectory(Resource):
    """``/img/<name>``: the listings' pictures, in the sizes and formats Taobao's CDN names (a 503 for each
    while the CDN is down), counted in the stats."""

    isLeaf = True

    def __init__(self, backend: ImageSearchBackend, accounts: Accounts, down: bool) -> None:
        super().__init__()
        self.backend, self.accounts, self.down = backend, accounts, down

    def render_GET(self, request: Request) -> bytes:
        postpath = request.postpath or []
        name = postpath[0].decode("utf-8", "replace") if len(postpath) == 1 else ""
        self.accounts.stats.pictures[f"/img/{name}"] += 1
        if self.down:
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"the CDN is down (--cdn-down)\n"
        found = self.backend.cdn_picture(name)
        return _picture(request, found[0] if found else None, found[1] if found else "")


def _picture(request: Request, data: bytes | None, content_type: str) -> bytes:
    if data is None:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"not found\n"
    request.setHeader(b"content-type", content_type.encode())
    request.setHeader(b"cache-control", b"max-age=86400")
    return bytes(data)


class _StatsResource(Resource):
    isLeaf = True

    def __init__(self, accounts: Accounts) -> None:
        super().__init__()
        self.accounts = accounts

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", JSON_TYPE)
        return json_bytes(self.accounts.stats.snapshot())


class _ControlAction(Resource):
    """A ``POST /_sandbox/<name>`` that changes the sandbox's state: ``action()``'s answer, as JSON.

    ``reset``: zero the stats, the quota windows and the day's counts (uploads are kept). ``next-day``: the
    day ends now, as at 00:00 China time: each app's calls for the day start again at 0 (stats and quota
    windows are kept); tests of the day's quota use it instead of waiting."""

    isLeaf = True

    def __init__(self, action: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self.action = action

    def render_POST(self, request: Request) -> bytes:
        answer = self.action()
        request.setHeader(b"content-type", JSON_TYPE)
        return json_bytes(answer)


class _QuietSite(Site):
    """A Site without per-request access logging (Scrapy would forward it into the crawl log)."""

    noisy = False

    def log(self, request: object) -> None:
        pass


def build_site(config: SandboxConfig, reactor: Any) -> tuple[Site, Accounts]:
    """The twisted.web site of a sandbox (builds the catalogue and its index synchronously), and its accounts."""
    backend = ImageSearchBackend.from_catalog_path(config.catalog, config.page_size, config.max_results)
    accounts = Accounts(config)
    faults = FaultInjector(config.faults)
    top = TopProtocol(config, backend, accounts, ImageFetcher(reactor, config.fetch_timeout))
    onebound = OneboundProtocol(config, backend, accounts)
    aliyun = AliyunProtocol(config, backend, accounts, ImageFetcher(reactor, config.fetch_timeout))
    root = Resource()
    # Alibaba Cloud's RPC style: every action is a POST (or GET) of the endpoint's root.
    root.putChild(b"", ApiResource(ALIYUN_PATH, aliyun, faults, accounts, reactor))
    router = Resource()
    router.putChild(b"rest", ApiResource(ROUTER_PATH, top, faults, accounts, reactor))
    root.putChild(b"router", router)
    taobao = Resource()
    for path in (SEARCH_PATH, UPLOAD_PATH):
        name = path.strip("/").split("/")[-1].encode()
        taobao.putChild(name, ApiResource(path, onebound, faults, accounts, reactor))
    root.putChild(b"taobao", taobao)
    control = Resource()
    control.putChild(b"stats", _StatsResource(accounts))

    def reset() -> dict[str, Any]:
        accounts.reset()
        return {"reset": True}

    control.putChild(b"reset", _ControlAction(reset))
    control.putChild(b"next-day", _ControlAction(lambda: {"day": accounts.next_day()}))
    root.putChild(b"_sandbox", control)
    root.putChild(b"img", _CdnDirectory(backend, accounts, config.cdn_down))
    root.putChild(b"upload", _BytesDirectory(backend.upload_jpeg))
    return _QuietSite(root, requestFactory=_CappedRequest), accounts


@dataclass
class RunningSandbox:
    """A sandbox listening in this process; ``stop()`` returns a Deferred that fires when it no longer listens."""

    listening_port: IListeningPort
    host: str
    accounts: Accounts

    @property
    def port(self) -> int:
        address = self.listening_port.getHost()
        assert isinstance(address, IPv4Address | IPv6Address)
        return address.port

    @property
    def url(self) -> str:
        """``http://host:port``: each protocol's paths are below it."""
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The TOP router's URL."""
        return self.url + ROUTER_PATH

    def stats(self) -> dict[str, Any]:
        return self.accounts.stats.snapshot()

    def stop(self) -> Deferred[None]:
        stopped = self.listening_port.stopListening()
        return stopped if stopped is not None else succeed(None)


def listen(config: SandboxConfig, host: str = "127.0.0.1", port: int = 0, reactor: Any = None) -> RunningSandbox:
    """Serve ``config`` on ``host:port`` (0: any free port) on ``reactor``.

    Without a reactor, the global one is used: import this after the crawl's reactor is installed
    (Scrapy's asyncio reactor works), because importing ``twisted.internet.reactor`` installs the
    default one if none is.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    site, accounts = build_site(config, reactor)
    listening_port = reactor.listenTCP(port, site, interface=host)
    url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    if ":" in url_host and not url_host.startswith("["):
        url_host = f"[{url_host}]"
    running = RunningSandbox(listening_port, url_host, accounts)
    logger.info("sandbox listening on %s", running.url)
    return running
