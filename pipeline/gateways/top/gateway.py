"""The TOP router gateway: ``taobao.image.search`` / ``taobao.upload.img`` over ``POST /router/rest``."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from scrapy import FormRequest

from pipeline.errors import ConfigurationError, GatewayError, MalformedResponse
from pipeline.gateways.actions import FATAL, RETRY, SEED_ERROR, STOP, THROTTLE
from pipeline.gateways.base import LISTING_FIELDS, ApiCall, Gateway, SearchPage, count, form_quote, form_unquote
from pipeline.gateways.top.signing import SIGN_METHODS, sign, top_timestamp
from pipeline.gateways.top.wire import (
    API_LIMIT_SUB_CODE,
    API_VERSION,
    APP_API_LIMIT_SUB_CODE,
    APP_QUOTA_SUB_CODE,
    COMMON_PARAMS,
    IMAGE_DATA_PARAM,
    ROUTER_PATH,
    SEARCH_METHOD,
    UPLOAD_IMAGE_PARAM,
    UPLOAD_METHOD,
    response_key,
)
from pipeline.images import ImageRef
from pipeline.pacing.apps import Credentials

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings


_BAN_SECONDS_RE = re.compile(r"ban will last for (\d+(?:\.\d+)?) more seconds", re.IGNORECASE)

#: The default action per error. Covers both the article's code table and real TOP's (api.md
#: section 1), which disagree on 15 and 21: 15 is a signature error unless its sub_code is isp.* or
#: its msg says remote service error (TOP); 21 is a bad image unless it says missing method (TOP),
#: which this client never causes. isp.* codes (TOP's remote errors, the ones its SDKs retry among
#: them) are retried; isv.* ones are the caller's and never are. Code 7 has three sub codes: this
#: app's quota for the day (the crawl stops: no wait of minutes helps; run it again once it resets),
#: and two call-frequency limits (the platform's on the method, the app's on the method), whose
#: bans are waited out.
ERROR_ACTIONS: Mapping[str, str] = {
    "7": THROTTLE,
    f"7:{APP_QUOTA_SUB_CODE}": STOP,
    f"7:{API_LIMIT_SUB_CODE}": THROTTLE,
    f"7:{APP_API_LIMIT_SUB_CODE}": THROTTLE,
    "16": THROTTLE,
    "10": RETRY,
    "15:isp.*": RETRY,
    "15:remote service*": RETRY,
    "*:isp.*": RETRY,
    "malformed": RETRY,
    "11": FATAL,
    "15": FATAL,
    "21:isv.missing-method": FATAL,
    "21:missing method*": FATAL,
    "21": SEED_ERROR,
    "22": FATAL,
    "25": FATAL,
    "28": FATAL,
    "29": FATAL,
    "30": FATAL,
    "31": FATAL,
    "40": FATAL,
    "41": SEED_ERROR,
    "*": SEED_ERROR,
}

#: What a user should fix when a code is fatal (the article's and real TOP's meanings, api.md section 1).
FIX_HINTS: Mapping[str, str] = {
    "11": "the app lacks permission for this API: ask the platform to grant it, or check IMAGESEARCH_APP_KEY",
    "15": "check IMAGESEARCH_APP_SECRET and IMAGESEARCH_SIGN_METHOD",
    "25": "check IMAGESEARCH_APP_SECRET and IMAGESEARCH_SIGN_METHOD",
    "28": "set IMAGESEARCH_APP_KEY",
    "29": "check IMAGESEARCH_APP_KEY",
    "30": "the timestamp was not sent: check the gateway setup",
    "31": "check this machine's clock (TOP allows 10 minutes of skew)",
    "21": "the gateway does not know this method: check IMAGESEARCH_ENDPOINT and IMAGESEARCH_GATEWAY",
    "22": "the gateway does not know this method: check IMAGESEARCH_ENDPOINT and IMAGESEARCH_GATEWAY",
    "40": "a required parameter is missing: check IMAGESEARCH_GATEWAY matches the endpoint",
}

#: What each of code 7's limits is, for the lines that say why calls wait or the crawl stops.
LIMIT_NAMES: Mapping[str, str] = {
    APP_QUOTA_SUB_CODE: "this app's call quota for the day",
    API_LIMIT_SUB_CODE: "the platform's call limit on this method",
    APP_API_LIMIT_SUB_CODE: "this app's call limit on this method",
}


def check_sign_method(sign_method: str) -> str:
    """``sign_method`` if TOP knows it, else ConfigurationError naming the setting."""
    if sign_method not in SIGN_METHODS:
        raise ConfigurationError(
            f"IMAGESEARCH_SIGN_METHOD={sign_method!r} is not a TOP sign method: use one of {', '.join(SIGN_METHODS)}"
        )
    return sign_method


def common_params(app_key: str, sign_method: str) -> dict[str, str]:
    """The common parameters of a call made now (GMT+8 timestamp), without its ``sign``."""
    return {"app_key": app_key, "timestamp": top_timestamp(), "format": "json", "v": API_VERSION,
            "sign_method": sign_method}


def signed_params(params: Mapping[str, str], app_key: str, secret: str, sign_method: str) -> dict[str, str]:
    """``params`` with fresh common parameters (GMT+8 timestamp) and their ``sign``; old ones are dropped."""
    fresh = {k: v for k, v in params.items() if k not in COMMON_PARAMS}
    fresh.update(common_params(app_key, sign_method))
    fresh["sign"] = sign(fresh, secret, sign_method)
    return fresh


def ban_seconds(error: GatewayError) -> float | None:
    """The wait a quota answer asks for ("This ban will last for N more seconds"), if it says."""
    match = _BAN_SECONDS_RE.search(f"{error.sub_msg} {error.msg}")
    return float(match.group(1)) if match else None


class TopGateway(Gateway):
    """Speaks the TOP router protocol of api.md section 1: form bodies, md5/hmac/hmac-sha256 signatures."""

    name = "top"
    public_endpoint = "https://eco.taobao.com/router/rest"
    error_actions: ClassVar[Mapping[str, str]] = ERROR_ACTIONS
    fix_hints: ClassVar[Mapping[str, str]] = FIX_HINTS
    credential_codes = frozenset({"15", "25", "28", "29"})

    def __init__(self, credentials: Credentials, sign_method: str = "md5") -> None:
        super().__init__(credentials)
        self.sign_method = check_sign_method(sign_method)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TopGateway:
        return cls(Credentials.from_settings(crawler), crawler.settings.get("IMAGESEARCH_SIGN_METHOD") or "md5")

    @classmethod
    def check_settings(cls, settings: BaseSettings) -> None:
        check_sign_method(settings.get("IMAGESEARCH_SIGN_METHOD") or "md5")

    def sandbox_endpoint(self, base_url: str) -> str:
        return base_url + ROUTER_PATH

    def build_search(self, image_data: str | ImageRef, page: int, cat: str | None) -> ApiCall:
        params = {"page": str(page)}
        if cat:
            params["cat"] = str(cat)
        if isinstance(image_data, ImageRef):  # Base64 of the file, put in when the call is sent
            return ApiCall(SEARCH_METHOD, params, image=image_data, image_param=IMAGE_DATA_PARAM)
        return ApiCall(SEARCH_METHOD, {IMAGE_DATA_PARAM: image_data, **params})

    def build_upload(self, image: bytes | ImageRef) -> ApiCall:
        # The crawl never needs it (image_data takes the Base64 picture); a gateway that uploads first does.
        if isinstance(image, ImageRef):
            return ApiCall(UPLOAD_METHOD, image=image, image_param=UPLOAD_IMAGE_PARAM)
        return ApiCall(UPLOAD_METHOD, {UPLOAD_IMAGE_PARAM: base64.b64encode(image).decode("ascii")})

    def to_request(self, call: ApiCall, endpoint: str, **kwargs: Any) -> Request:
        meta = self.call_meta(call, kwargs)
        # The form body, never the URL, carries the parameters: request reprs in logs stay "<POST endpoint>".
        return FormRequest(endpoint, formdata={"method": call.method, **call.params}, meta=meta, **kwargs)

    def sign(self, request: Request) -> Request:
        """The body's business parameters as they are, then fresh common ones and ``sign`` (signed_params'
        order and values). Each business piece is sent as it was quoted: a picture of hundreds of KB is
        unquoted once, to be signed, and never quoted again."""
        credentials = self.credentials_for(request)
        pieces: dict[str, str] = {}  # by name: a name given twice is sent once, with its last value
        params: dict[str, str] = {}
        for piece in request.body.decode("utf-8").split("&"):
            name, _, value = piece.partition("=")
            name = form_unquote(name)
            if piece and name not in COMMON_PARAMS:
                pieces[name] = piece
                params[name] = form_unquote(value)
        common = common_params(credentials.key, self.sign_method)
        common["sign"] = sign({**params, **common}, credentials.secret, self.sign_method)
        body = "&".join([*pieces.values(), urlencode(common, quote_via=form_quote)])
        return request.replace(body=body.encode("utf-8"))

    # -- answers ---------------------------------------------------------------------------------

    def parse_error(self, response: Response) -> GatewayError | None:
        try:
            body = self.json_object(response)
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
        envelope = self.json_object(response).get(response_key(method))
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
        # TOP's hit fields are ours, under the same names.
        hits = [{name: item[name] for name in LISTING_FIELDS if name in item} for item in items
                if isinstance(item, dict)]
        return SearchPage(hits, count(envelope.get("total_results"), default=len(hits)))

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

    def ban_seconds(self, error: GatewayError) -> float | None:
        return ban_seconds(error)

    def limit_name(self, error: GatewayError) -> str | None:
        return LIMIT_NAMES.get(error.sub_code)
