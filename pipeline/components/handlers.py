"""The download handler of gateway calls: each attempt is signed as it leaves, and the signed copy goes nowhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.utils.misc import build_from_crawler, load_object

from pipeline.gateways.base import METHOD_META_KEY, load_gateway, with_image
from pipeline.redaction import Redactor

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response



class GatewayDownloadHandler(BaseDownloadHandler):
    """DOWNLOAD_HANDLERS for http and https: signs gateway calls, then downloads with IMAGESEARCH_DOWNLOAD_HANDLER.

    The call's picture (``IMAGE_META_KEY``) is read from its file and prepared here too, so the
    calls waiting for their quota slot hold none. Signing here, at the last moment, gives every
    attempt (retries included, and a call that waited an hour for its quota slot) a fresh
    timestamp and signature. The signed copy (a TOP body with
    ``sign``, an Onebound URL with the secret in it) is handed to the real download handler and to
    nothing else: the engine, the middlewares, the retry logic, the journal and the spider see the
    unsigned request and a response carrying it. Errors of the download come back with the
    credentials masked. The real handler's own warnings (a body cut short, a body over
    DOWNLOAD_WARNSIZE) name the signed URL: SecretRedaction masks them in the log. Any other
    request is downloaded as it is.
    """

    lazy = False

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.gateway = load_gateway(crawler)
        self.redactor = Redactor(self.gateway.secrets())
        handler_cls = load_object(crawler.settings.get("IMAGESEARCH_DOWNLOAD_HANDLER"))
        self.handler: BaseDownloadHandler = build_from_crawler(handler_cls, crawler)

    async def download_request(self, request: Request) -> Response:
        if request.meta.get(METHOD_META_KEY) is None:
            return await self.handler.download_request(request)
        # The picture joins the body here, as the call leaves: no waiting call holds one.
        signed = self.gateway.sign(with_image(request))
        try:
            response = await self.handler.download_request(signed)
        except Exception as exc:  # re-raised as it is, its message masked
            # A timeout's message names the URL, and an Onebound URL names the secret.
            self.redactor.redact_exception(exc)
            raise
        return response.replace(url=request.url, request=request)

    async def close(self) -> None:
        await self.handler.close()
