"""The gateway download handler: each attempt signed as it leaves, the signed copy seen by the network only."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, parse_qsl, quote_plus, unquote_plus, urlencode, urlsplit

import pytest
from PIL import Image
from scrapy import Request, Spider
from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.http import Response
from scrapy.utils.test import get_crawler
from twisted.internet.error import TimeoutError as TxTimeoutError

from pipeline import settings as project_settings
from pipeline.components.handlers import GatewayDownloadHandler
from pipeline.errors import ImageRejected
from pipeline.gateways.base import CALL_KEY_META_KEY, form_quote, form_unquote, load_gateway, parse_form
from pipeline.images import ImageRef, prepare_image, sha256_hex

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


def _top_handler() -> GatewayDownloadHandler:
    crawler: Any = get_crawler(Spider, {**{k: v for k, v in vars(project_settings).items() if k.isupper()},
                                        "ADDONS": {}, "IMAGESEARCH_APP_SECRET": SECRET,
                                        "IMAGESEARCH_DOWNLOAD_HANDLER": f"{__name__}.RecordingHandler"})
    RecordingHandler.seen, RecordingHandler.fail = [], False
    return GatewayDownloadHandler(crawler)


def _photo(path: Path, colour: tuple[int, int, int] = (200, 40, 40)) -> ImageRef:
    Image.new("RGB", (1600, 1200), colour).save(path, "JPEG")
    return ImageRef(path, sha256_hex(path.read_bytes()), max_side=512, max_pixels=10_000_000)


def test_a_call_waits_without_its_picture_and_leaves_with_it_prepared_and_signed(tmp_path: Path) -> None:
    """Memory does not grow with the calls waiting for their quota slot: they carry a file, not a picture."""
    top = _top_handler()
    gateway = load_gateway(top.crawler)
    image = _photo(tmp_path / "seed.jpg")
    request = gateway.to_request(gateway.build_search(image, 1, None), "http://127.0.0.1:1/router/rest")
    assert b"image_data=" not in request.body and len(request.body) < 200  # what waits in the scheduler
    asyncio.run(top.download_request(request))
    (sent,) = RecordingHandler.seen
    params = parse_qs(sent.body.decode())
    with Image.open(io.BytesIO(base64.b64decode(params["image_data"][0]))) as picture:
        assert picture.format == "JPEG" and picture.size == (512, 384)  # prepared as it left
    assert params["sign"] and params["page"] == ["1"]
    # The call's key (the journal's) names the picture by its content, not by its Base64.
    assert gateway.build_search(image, 1, None).key == gateway.build_search(image, 1, None).key
    assert gateway.build_search(_photo(tmp_path / "other.jpg", (0, 90, 0)), 1, None).key != \
        gateway.build_search(image, 1, None).key


def test_a_picture_changed_after_its_seed_was_read_is_refused_and_not_sent(tmp_path: Path) -> None:
    top = _top_handler()
    gateway = load_gateway(top.crawler)
    image = _photo(tmp_path / "seed.jpg")
    request = gateway.to_request(gateway.build_search(image, 1, None), "http://127.0.0.1:1/router/rest")
    _photo(tmp_path / "seed.jpg", (0, 0, 255))  # the user replaced the file while the crawl ran
    with pytest.raises(ImageRejected) as info:
        asyncio.run(top.download_request(request))
    assert info.value.reason == "image_changed" and RecordingHandler.seen == []
    (tmp_path / "seed.jpg").unlink()
    with pytest.raises(ImageRejected, match="no such file") as info:
        asyncio.run(top.download_request(request))
    assert info.value.reason == "file_not_found" and RecordingHandler.seen == []


@pytest.mark.parametrize("value", [
    base64.b64encode(bytes(range(256)) * 40).decode(), "", "a+b/c==", "a b&c=d", "中文 photo.jpg", "100%~_.-",
    "\n\t\x00", "+/=" * 10,
])
def test_form_quote_is_quote_plus(value: str) -> None:
    # The fast way for Base64 pictures gives what urlencode's own quote_plus gives, for any value.
    assert form_quote(value) == quote_plus(value)
    form = {"image_data": value, "p": "1"}
    assert urlencode(form, quote_via=form_quote) == urlencode(form)
    assert form_quote(value.encode("utf-8")) == quote_plus(value.encode("utf-8"))


_QUOTED = [
    "", "a", "a+b", "%2B", "%2b", "%%2B", "%2B%", "%2", "%2F%3D%2B", "%25", "%252B", "%E4%B8%AD%E6%96%87", "%E4%B8",
    "%FF", "%zz", "%2B+%2F", "中文%2B", "==", "a%3Db%26c", "%3D" * 50, "x%20y",
    form_quote(base64.b64encode(bytes(range(256)) * 40).decode()),
]


@pytest.mark.parametrize("value", _QUOTED)
def test_form_unquote_is_unquote_plus(value: str) -> None:
    # The fast way back for Base64 pictures gives what parse_qsl's own unquoting gives, for any value.
    assert form_unquote(value) == unquote_plus(value)


def test_parse_form_is_parse_qsl() -> None:
    bodies = ["", "&", "a", "a=", "=b", "a=1&&b=2", "a=1&a=2", "a==b", "a=1;b=2", "&a=%2B&", "+=+",
              *(f"image_data={v}&page=1" for v in _QUOTED), "&".join(f"k{i}={v}" for i, v in enumerate(_QUOTED))]
    for body in bodies:
        assert parse_form(body) == parse_qsl(body, keep_blank_values=True), body
    form = {"image_data": base64.b64encode(bytes(range(256)) * 40).decode(), "cat": "16", "title": "中文 a+b"}
    assert dict(parse_form(urlencode(form, quote_via=form_quote))) == form


def test_a_checked_picture_is_sent_as_it_was_prepared_without_reading_a_file() -> None:
    photo = io.BytesIO()
    Image.new("RGB", (800, 600), "teal").save(photo, "JPEG")
    prepared = prepare_image(photo.getvalue(), max_side=512, max_pixels=10_000_000)
    assert prepared.size == (512, 384) and Image.open(io.BytesIO(prepared.jpeg)).size == prepared.size
    ref = ImageRef.checked(prepared, max_side=512, max_pixels=10_000_000)
    assert ref.path is None and ref.prepare() is prepared
    assert ref.identity == ImageRef(Path("x.jpg"), prepared.sha256, 512, 10_000_000).identity
