"""The spider ``scrapy serve`` runs: it yields nothing, never closes while the service runs, and hosts the site."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from scrapy import Spider, signals
from scrapy.exceptions import DontCloseSpider
from twisted.internet.error import CannotListenError

from pipeline.components.checks import check_settings
from pipeline.components.extensions import resolve_endpoint
from pipeline.errors import ConfigurationError
from pipeline.gateways.base import load_gateway
from pipeline.serve.web import build_site

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings
    from twisted.internet.interfaces import IListeningPort

    from pipeline.gateways.base import Gateway
    from pipeline.serve.service import SearchService

logger = logging.getLogger(__name__)


class ServeSpider(Spider):
    """Not in SPIDER_MODULES (``scrapy list`` shows the crawl's spider only): ``scrapy serve`` names it."""

    name = "serve"
    #: pipeline.components.middlewares.GatewayMiddleware keeps serving when the day's quota is spent (calls wait
    #: for the day).
    serves = True

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        """No dataset run (nothing is staged or committed), no item pipelines (the service runs the crawl's
        validation and normalisation itself) and no crawl progress lines; the rest as configured."""
        super().update_settings(settings)
        for name in ("ADDONS", "EXTENSIONS", "ITEM_PIPELINES"):
            components = dict(settings.getdict(name))
            for component in ("pipeline.components.datasetrun.DatasetAddon", "pipeline.monitor.progress.CrawlProgress",
                              *(path for path in components if name == "ITEM_PIPELINES")):
                if component in components:
                    components[component] = None
            settings.set(name, components, priority="spider")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service: SearchService | None = None
        self.port: IListeningPort | None = None
        #: What kept the service from starting (scrapy serve then says it in one line and exits non-zero).
        self.startup_error: Exception | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        check_settings(settings)
        pages, most = settings.getint("IMAGESEARCH_SERVE_PAGES"), settings.getint("IMAGESEARCH_SERVE_MAX_PAGES")
        if pages > most:
            raise ConfigurationError(f"IMAGESEARCH_SERVE_PAGES={pages} is over IMAGESEARCH_SERVE_MAX_PAGES={most}")
        spider.gateway = load_gateway(crawler)
        spider.bind(settings.get("IMAGESEARCH_SERVE_HOST"), settings.getint("IMAGESEARCH_SERVE_PORT"),
                    settings.getint("IMAGESEARCH_SERVE_MAX_UPLOAD_BYTES"))
        crawler.signals.connect(spider.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(spider.spider_closed, signal=signals.spider_closed)
        return spider

    gateway: Gateway

    def bind(self, host: str, port: int, max_upload: int) -> None:
        """Listen now, so that a port in use is a startup error (exit 2); searches get 503 until start()."""
        from twisted.internet import reactor

        try:
            site: Any = build_site(lambda: self.service, max_upload)
            self.port = reactor.listenTCP(port, site, interface=host)
        except CannotListenError as exc:
            reason = exc.socketError.strerror if hasattr(exc.socketError, "strerror") else exc.socketError
            raise ConfigurationError(f"cannot listen on {host}:{port} ({reason}): set IMAGESEARCH_SERVE_HOST / "
                                     "IMAGESEARCH_SERVE_PORT") from None

    async def start(self) -> AsyncIterator[Any]:
        from pipeline.serve.service import SearchService

        try:
            endpoint = resolve_endpoint(self.crawler, self.gateway)
            self.service = SearchService(self.crawler, self.gateway, endpoint)
        except Exception as exc:  # noqa: BLE001 - said by scrapy serve in one line; the spider then closes
            self.startup_error = exc
            return
        assert self.port is not None
        address = self.port.getHost()
        shown = f"[{address.host}]" if ":" in address.host else address.host  # type: ignore[attr-defined]
        logger.info("Search service at http://%s:%d/ (gateway %s at %s; POST /search, GET /healthz, GET /metrics)",
                    shown, address.port, self.gateway.name, self.service.endpoint_host)  # type: ignore[attr-defined]
        nothing: tuple[Any, ...] = ()  # an async generator that yields nothing
        for output in nothing:
            yield output

    def spider_idle(self) -> None:
        if self.startup_error is None:
            raise DontCloseSpider

    def spider_closed(self, reason: str) -> None:
        if self.port is not None:
            self.port.stopListening()
        if self.service is not None:
            self.service.close()
