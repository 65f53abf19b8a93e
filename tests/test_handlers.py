"""The gateway download handler: each attempt signed as it leaves, the signed copy seen by the network only."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from scrapy import Request, Spider
from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.http import Response
from scrapy.utils.test import get_crawler
from twisted.internet.error import TimeoutError as TxTimeoutError

from pipeline import settings as project_settings
from pipeline.gateways.base import CALL_KEY_META_KEY, load_gateway
from pipeline.handlers import GatewayDownloadHandler

KEY, SECRET = "onebound-key-42", "s3cret+value/with=marks"


class RecordingHandler(BaseDownloadHandler):
    """Stands in for the network: keeps what it was asked to download, answers or fails as told."""

    seen: ClassVar[list[Request]] = []
    fail: ClassVar[bool] = False

    async def download_request(self, request: Request) -> Response:
        RecordingHandler.seen.append(request)
        if RecordingHandler.fail:
            raise TxTimeoutError(string=f"Getting {request.url} took longer than 1 seconds.")
        return Response(request.url, body=b"{}", request=request)


@pytest.fixture
def handler() -> GatewayDownloadHandler:
    settings = {k: v for k, v in vars(project_settings).items() if k.isupper()}
    settings.pop("ADDONS", None)
    settings.update(IMAGESEARCH_GATEWAY="onebound", IMAGESEARCH_APP_KEY=KEY, IMAGESEARCH_APP_SECRET=SECRET,
                    IMAGESEARCH_DOWNLOAD_HANDLER=f"{__name__}.RecordingHandler")
    RecordingHandler.seen, RecordingHandler.fail = [], False
    return GatewayDownloadHandler(get_crawler(Spider, settings))


def _call(handler: GatewayDownloadHandler) -> Request:
    gateway = load_gateway(handler.crawler)
    call = gateway.build_search("https://img.alicdn.com/a.jpg", 1, None)
    return gateway.to_request(call, "http://127.0.0.1:1", meta={CALL_KEY_META_KEY: call.key})


def test_the_network_gets_a_signed_copy_and_the_crawl_the_request_it_sent(handler: GatewayDownloadHandler) -> None:
    request = _call(handler)
    response = asyncio.run(handler.download_request(request))
    (sent,) = RecordingHandler.seen
    assert parse_qs(urlsplit(sent.url).query)["secret"] == [SECRET]
    assert response.url == request.url and response.request is request
    assert SECRET not in request.url and "secret" not in request.url


def test_a_download_error_comes_back_with_the_credentials_masked(handler: GatewayDownloadHandler) -> None:
    RecordingHandler.fail = True
    with pytest.raises(TxTimeoutError) as info:
        asyncio.run(handler.download_request(_call(handler)))
    text = str(info.value)
    assert "took longer" in text and SECRET not in text and KEY not in text
    assert "secret=***" in text


def test_other_requests_are_downloaded_as_they_are(handler: GatewayDownloadHandler) -> None:
    plain = Request("http://127.0.0.1:1/photo.jpg")
    response = asyncio.run(handler.download_request(plain))
    assert RecordingHandler.seen == [plain] and response.url == plain.url


def test_each_attempt_is_signed_afresh(handler: GatewayDownloadHandler) -> None:
    crawler: Any = get_crawler(Spider, {**{k: v for k, v in vars(project_settings).items() if k.isupper()},
                                        "ADDONS": {}, "IMAGESEARCH_APP_SECRET": SECRET,
                                        "IMAGESEARCH_DOWNLOAD_HANDLER": f"{__name__}.RecordingHandler"})
    top = GatewayDownloadHandler(crawler)
    gateway = load_gateway(crawler)
    request = gateway.to_request(gateway.build_search("aW1n", 1, None), "http://127.0.0.1:1/router/rest")
    RecordingHandler.seen = []
    asyncio.run(top.download_request(request))
    asyncio.run(top.download_request(request.copy()))
    first, second = (parse_qs(r.body.decode()) for r in RecordingHandler.seen)
    assert first["sign"] and second["sign"] and b"sign=" not in request.body
