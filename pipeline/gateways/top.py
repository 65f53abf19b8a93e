"""The TOP router gateway (``taobao.image.search`` / ``taobao.upload.img`` over ``POST /router/rest``)."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scrapy import FormRequest
from scrapy.http import TextResponse

from pipeline.errors import ConfigurationError, GatewayError, MalformedResponse
from pipeline.gateways.base import METHOD_META_KEY, ApiCall, Gateway, SearchPage
from pipeline.signing import SIGN_METHODS, sign, top_timestamp

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)

SEARCH_METHOD = "taobao.image.search"
UPLOAD_METHOD = "taobao.upload.img"
#: Request meta flag: this request's form body gets TOP's common parameters and ``sign`` at send time.
SIGN_META_KEY = "top_sign"
#: The parameters TopSigningMiddleware owns; any already in a body (a retried copy) are replaced.
COMMON_PARAMS: tuple[str, ...] = ("app_key", "timestamp", "format", "v", "sign_method", "sign")
_BAN_SECONDS_RE = re.compile(r"ban will last for (\d+(?:\.\d+)?) more seconds", re.IGNORECASE)


def response_key(method: str) -> str:
    """``taobao.image.search`` → ``image_search_response``: the envelope key of a success answer."""
    name = method[len("taobao."):] if method.startswith("taobao.") else method
    return name.replace(".", "_") + "_response"


def check_sign_method(sign_method: str) -> str:
    """``sign_method`` if TOP knows it, else ConfigurationError naming the setting."""
    if sign_method not in SIGN_METHODS:
        raise ConfigurationError(
            f"IMAGESEARCH_SIGN_METHOD={sign_method!r} is not a TOP sign method: use one of {', '.join(SIGN_METHODS)}"
        )
    return sign_method


def signed_params(params: Mapping[str, str], app_key: str, secret: str, sign_method: str) -> dict[str, str]:
    """``params`` with fresh common parameters (GMT+8 timestamp) and their ``sign``; old ones are dropped."""
    fresh = {k: v for k, v in params.items() if k not in COMMON_PARAMS}
    fresh.update(app_key=app_key, timestamp=top_timestamp(), format="json", v="2.0", sign_method=sign_method)
    fresh["sign"] = sign(fresh, secret, sign_method)
    return fresh


def ban_seconds(error: GatewayError) -> float | None:
    """The wait a quota answer asks for ("This ban will last for N more seconds"), if it says."""
    match = _BAN_SECONDS_RE.search(f"{error.sub_msg} {error.msg}")
    return float(match.group(1)) if match else None


class TopGateway(Gateway):
    """Speaks the TOP router protocol of api.md §1; signing happens later, in TopSigningMiddleware."""

    name = "top"

    def __init__(self, sign_method: str = "md5") -> None:
        self.sign_method = check_sign_method(sign_method)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TopGateway:
        return cls(crawler.settings.get("IMAGESEARCH_SIGN_METHOD") or "md5")

    def build_search(self, image_data: str, page: int, cat: str | None) -> ApiCall:
        params = {"image_data": image_data, "page": str(page)}
        if cat:
            params["cat"] = str(cat)
        return ApiCall(SEARCH_METHOD, params)

    def build_upload(self, *, image_url: str | None = None, image_bytes: bytes | None = None) -> ApiCall:
        if (image_url is None) == (image_bytes is None):
            raise ValueError("build_upload needs exactly one of image_url and image_bytes")
        if image_url is not None:
            return ApiCall(UPLOAD_METHOD, {"image_url": image_url})
        return ApiCall(UPLOAD_METHOD, {"image": base64.b64encode(image_bytes or b"").decode("ascii")})

    def to_request(self, call: ApiCall, endpoint: str, **kwargs: Any) -> Request:
        meta = dict(kwargs.pop("meta", None) or {})
        meta.update({METHOD_META_KEY: call.method, SIGN_META_KEY: True})
        # The form body, never the URL, carries the parameters: request reprs in logs stay "<POST endpoint>".
        return FormRequest(endpoint, formdata={"method": call.method, **call.params}, meta=meta, **kwargs)

    # -- answers ---------------------------------------------------------------------------------

    def _json(self, response: Response) -> dict[str, Any]:
        if not isinstance(response, TextResponse):
            raise MalformedResponse(f"non-text body ({len(response.body)} bytes)")
        try:
            body = response.json()  # cached on the response: the middleware and the spider share one parse
        except ValueError:
            raise MalformedResponse(f"body is not JSON ({len(response.body)} bytes)") from None
        if not isinstance(body, dict):
            raise MalformedResponse("body is JSON but not an object")
        return body

    def parse_error(self, response: Response) -> GatewayError | None:
        try:
            body = self._json(response)
        except MalformedResponse as error:
            return error
        envelope = body.get("error_response")
        if isinstance(envelope, dict):
            return GatewayError(
                str(envelope.get("code", "")), str(envelope.get("sub_code") or ""),
                str(envelope.get("msg") or ""), str(envelope.get("sub_msg") or ""),
            )
        if not any(key.endswith("_response") for key in body):
            return MalformedResponse("JSON without a *_response envelope")
        return None

    def _envelope(self, response: Response, method: str) -> dict[str, Any]:
        error = self.parse_error(response)
        if error is not None:
            raise error
        envelope = self._json(response).get(response_key(method))
        if not isinstance(envelope, dict):
            raise MalformedResponse(f"no {response_key(method)} envelope")
        return envelope

    def parse_search(self, response: Response) -> SearchPage:
        envelope = self._envelope(response, SEARCH_METHOD)
        items: Any = envelope.get("items") or []
        if isinstance(items, dict):  # {"items": {"item": [...]}}, TOP's usual nesting
            items = items.get("item") or []
        if isinstance(items, dict):  # a lone item, as XML-to-JSON converters sometimes give
            items = [items]
        if not isinstance(items, list):
            raise MalformedResponse("items is neither a list nor {item: [...]}")
        hits = [item for item in items if isinstance(item, dict)]
        return SearchPage(hits, _count(envelope.get("total_results"), default=len(hits)))

    def ban_seconds(self, error: GatewayError) -> float | None:
        return ban_seconds(error)

    def parse_upload(self, response: Response) -> str:
        envelope = self._envelope(response, UPLOAD_METHOD)
        image = envelope.get("image")
        if isinstance(image, dict):
            ref = image.get("url") or image.get("id")
        else:
            ref = image or envelope.get("url") or envelope.get("id")
        if not ref:
            raise MalformedResponse("upload answer without an image id or url")
        return str(ref)


def _count(value: Any, default: int) -> int:
    """A count the gateway may send as a number or a string ("37"); ``default`` when absent or unreadable."""
    try:
        return max(0, int(str(value).strip()))
    except (TypeError, ValueError):
        return default
