"""Extensions: SecretRedaction keeps credentials out of the log; EmbeddedSandbox serves the sandbox in-process."""

from __future__ import annotations

import contextlib
import logging
import shlex
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future

from pipeline.alerts import parse_urls, url_secrets
from pipeline.configuration import json_list, wants_sandbox
from pipeline.errors import ConfigurationError
from pipeline.gateways.base import load_gateway
from pipeline.redaction import Redactor, install

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

    from pipeline.gateways.base import Gateway
    from sandbox.config import SandboxConfig
    from sandbox.server import RunningSandbox

logger = logging.getLogger(__name__)

#: The stat (and so the manifest's stats key) that says the run searched the embedded sandbox, and
#: its catalogue ("builtin" or the --catalog file): the run's report renders its pictures from it.
SANDBOX_STAT = "imagesearch/embedded_sandbox_catalog"


class SecretRedaction:
    """Masks the gateway's app keys and secrets, a Redis URL's password and the alert webhooks' secrets
    (``***``), in every log line of the crawl, at every level.

    The secrets should never reach a log line in the first place (the download handler signs a copy
    of each call that nothing else sees); this is the net under that, for text that names a request
    URL from inside Scrapy or Twisted. The filter goes on the log handlers in place when the crawler
    is built and comes off when the engine stops.
    """

    def __init__(self, redactor: Redactor) -> None:
        self.installed = install(redactor)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        secrets = load_gateway(crawler).secrets()
        # A shared run's Redis URL may carry a password: it is masked like the app secrets.
        if (password := urlsplit(str(crawler.settings.get("IMAGESEARCH_REDIS_URL") or "")).password) is not None:
            secrets = (*secrets, password)
        # And the alert webhooks' tokens and signing secrets (checked already: a bad URL list stops the crawl).
        with contextlib.suppress(ValueError):
            for url in parse_urls(crawler.settings.get("IMAGESEARCH_ALERT_URLS")):
                secrets = (*secrets, *url_secrets(url))
        extension = cls(Redactor(secrets))
        crawler.signals.connect(extension.engine_stopped, signal=signals.engine_stopped)
        return extension

    def engine_stopped(self) -> None:
        for handler, log_filter in self.installed:
            handler.removeFilter(log_filter)
        self.installed = []


class EmbeddedSandbox:
    """Starts ``sandbox.server.listen`` on a free loopback port when the spider opens (before any
    request), logs one warning that results are the sandbox's, and stops it when the spider closes.

    Disabled (NotConfigured) when IMAGESEARCH_ENDPOINT names a real gateway. IMAGESEARCH_SANDBOX_ARGS
    holds extra ``python -m sandbox`` flags. The spider reads the address from :func:`resolve_endpoint`.
    """

    def __init__(self, crawler: Crawler, config: SandboxConfig) -> None:
        self.crawler = crawler
        self.config = config
        self.running: RunningSandbox | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not wants_sandbox(crawler.settings.get("IMAGESEARCH_ENDPOINT")):
            raise NotConfigured("IMAGESEARCH_ENDPOINT names a gateway")
        extension = cls(crawler, sandbox_config(sandbox_args(crawler.settings.get("IMAGESEARCH_SANDBOX_ARGS"))))
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    @property
    def base_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` once it listens; each gateway's endpoint is below it."""
        return self.running.url if self.running else None

    def spider_opened(self) -> None:
        from sandbox.server import listen  # imports the reactor: only once Scrapy has installed it

        self.running = listen(self.config, host="127.0.0.1", port=0)
        # The run's report renders the listings' pictures from this catalogue once the sandbox is gone.
        self.crawler.stats.set_value(SANDBOX_STAT, str(self.config.catalog) if self.config.catalog else "builtin")
        logger.warning(
            "Searching the embedded sandbox at %s: results are synthetic test data, not Taobao listings "
            "(set IMAGESEARCH_ENDPOINT to the gateway's URL to search the real one)",
            self.running.url,
        )

    async def spider_closed(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            await maybe_deferred_to_future(running.stop())


def sandbox_args(value: Any) -> list[str]:
    """IMAGESEARCH_SANDBOX_ARGS as a list: a list, a JSON list (``-s 'X=["--page-size", "5"]'``) or shell words."""
    if value is None:
        return []
    if not isinstance(value, str):
        return [str(arg) for arg in value]
    if value.strip().startswith("["):
        return json_list(value, "IMAGESEARCH_SANDBOX_ARGS")
    return shlex.split(value)


def sandbox_config(args: list[str]) -> SandboxConfig:
    """SandboxConfig.from_args, with a bad flag reported as ConfigurationError instead of argparse's exit."""
    from sandbox.config import SandboxConfig, build_parser

    parser = build_parser()

    def refuse(message: str) -> Any:
        raise ConfigurationError(f"IMAGESEARCH_SANDBOX_ARGS={args!r}: {message}")

    parser.error = refuse  # type: ignore[method-assign]
    try:
        return SandboxConfig.from_namespace(parser.parse_args([str(a) for a in args]))
    except ValueError as exc:
        raise ConfigurationError(f"IMAGESEARCH_SANDBOX_ARGS={args!r}: {exc}") from None


def resolve_endpoint(crawler: Crawler, gateway: Gateway) -> str:
    """The URL calls go to: the embedded sandbox's endpoint for ``gateway`` once it runs, else IMAGESEARCH_ENDPOINT."""
    extension = crawler.get_extension(EmbeddedSandbox)
    if extension is not None and extension.base_url:
        return gateway.sandbox_endpoint(extension.base_url)
    endpoint = (crawler.settings.get("IMAGESEARCH_ENDPOINT") or "").strip()
    if wants_sandbox(endpoint):
        raise ConfigurationError(
            "IMAGESEARCH_ENDPOINT asks for the embedded sandbox but EmbeddedSandbox is not enabled in EXTENSIONS"
        )
    return endpoint
