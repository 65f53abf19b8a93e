"""Alibaba Cloud Image Search, Taobao-Union edition: ``SearchByPic`` / ``SearchByUrl`` as RPC ``POST /``.

Each call is a Scrapy request (the crawl's pacing, retries, journal and stats apply; the official
SDK's own HTTP client is not used), signed as it leaves with the V3 signature (``ACS3-HMAC-SHA256``,
what the SDK sends), or the older RPC one with ``IMAGESEARCH_ALIYUN_SIGNATURE=v2``. Pages are
``Start``/``Num`` windows of ``IMAGESEARCH_ALIYUN_NUM`` results; the answer has no total, so a search
goes on while its pages are full, up to ``Start`` 499.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from scrapy import FormRequest

from pipeline.errors import ConfigurationError, GatewayError, MalformedResponse
from pipeline.gateways.actions import FATAL, RETRY, SEED_ERROR, STOP, THROTTLE
from pipeline.gateways.aliyun.signing import (
    SIGNATURE_VERSIONS,
    V2_METHOD,
    V2_VERSION,
    nonce,
    sha256_hex,
    timestamp,
    v2_signature,
    v3_authorization,
)
from pipeline.gateways.aliyun.wire import (
    ACCESS_KEY_NOT_FOUND,
    ACTION_NOT_FOUND,
    API_VERSION,
    CATEGORY_PARAM,
    FORBIDDEN,
    INCOMPLETE_SIGNATURE,
    INTERNAL_ERROR,
    INVALID_PARAMETER,
    MAX_NUM,
    MAX_SIDE,
    MAX_START,
    MIN_SIDE,
    MISSING_PARAMETER,
    NONCE_USED,
    NUM_PARAM,
    PIC_CONTENT_PARAM,
    PIC_URL_PARAM,
    PID_PATTERN,
    PUBLIC_ENDPOINT,
    QUOTA_EXHAUSTED,
    RESULT_FIELDS,
    RETRY_AFTER_HEADER,
    SEARCH_BY_PIC,
    SEARCH_BY_URL,
    SERVICE_UNAVAILABLE,
    SIGNATURE_MISMATCH,
    START_PARAM,
    TIMESTAMP_EXPIRED,
    TIMESTAMP_FORMAT,
    TMALL,
    VERSION_NOT_FOUND,
)
from pipeline.gateways.base import METHOD_META_KEY, ApiCall, Gateway, SearchPage, parse_form
from pipeline.images import ImageRef
from pipeline.normalize import normalize_float
from pipeline.pacing.apps import Credentials

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings


#: The default action per ``Code``, as globs (``Throttling*`` covers Throttling, Throttling.User,
#: Throttling.Api...). Throttling (the account's QPS) is waited out; a bad AccessKey, signature, clock,
#: permission or an unpaid account stops the crawl at once (every call would fail alike); a replayed
#: nonce and server errors are sent again (with a fresh nonce and signature); a picture the service
#: cannot take fails its seed only.
ERROR_ACTIONS: Mapping[str, str] = {
    "Throttling*": THROTTLE,
    "DeniedRequest": THROTTLE,  # Image Search's own word for its instance's flow control
    SERVICE_UNAVAILABLE: RETRY,
    f"{INTERNAL_ERROR}*": RETRY,
    "UnknownError": RETRY,
    NONCE_USED: RETRY,
    "malformed": RETRY,
    "InvalidAccessKeyId*": FATAL,
    SIGNATURE_MISMATCH: FATAL,
    INCOMPLETE_SIGNATURE: FATAL,
    "InvalidTimeStamp*": FATAL,
    "Forbidden*": FATAL,
    "NoPermission": FATAL,
    "InstanceStatusError": FATAL,
    f"{ACTION_NOT_FOUND}*": FATAL,
    f"{VERSION_NOT_FOUND}*": FATAL,
    f"{MISSING_PARAMETER}*": FATAL,
    f"{INVALID_PARAMETER}.Pid": FATAL,
    QUOTA_EXHAUSTED: STOP,
    "*": SEED_ERROR,
}
FIX_HINTS: Mapping[str, str] = {
    ACCESS_KEY_NOT_FOUND: "Alibaba Cloud does not know this AccessKey ID: check IMAGESEARCH_APP_KEY",
    "InvalidAccessKeyId.Inactive": "this AccessKey is disabled: enable it in the RAM console, or set "
                                   "IMAGESEARCH_APP_KEY to an active one",
    SIGNATURE_MISMATCH: "check IMAGESEARCH_APP_SECRET (the AccessKey secret of IMAGESEARCH_APP_KEY)",
    INCOMPLETE_SIGNATURE: "check IMAGESEARCH_APP_KEY, IMAGESEARCH_APP_SECRET and IMAGESEARCH_ALIYUN_SIGNATURE",
    TIMESTAMP_EXPIRED: "check this machine's clock (Alibaba Cloud allows 15 minutes of skew)",
    TIMESTAMP_FORMAT: "check this machine's clock",
    FORBIDDEN: "the AccessKey's RAM user may not call Image Search: grant it AliyunImageSearchFullAccess",
    "NoPermission": "the account may not call this API: enable Image Search (Taobao-Union edition) for it",
    "InstanceStatusError": "the Image Search instance is unavailable (an overdue payment?): see the console",
    ACTION_NOT_FOUND: "the endpoint is not Image Search: check IMAGESEARCH_ENDPOINT and IMAGESEARCH_GATEWAY",
    VERSION_NOT_FOUND: "the endpoint is not Image Search 2021-05-01: check IMAGESEARCH_ENDPOINT",
    MISSING_PARAMETER: "a required parameter is missing: set IMAGESEARCH_ALIYUN_PID if the service asks for one",
    f"{INVALID_PARAMETER}.Pid": "check IMAGESEARCH_ALIYUN_PID (mm_<account>_<site>_<adzone>)",
}
#: What a glob code's hint is filed under (InvalidAccessKeyId.Inactive -> InvalidAccessKeyId.NotFound's).
_HINT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("InvalidAccessKeyId", ACCESS_KEY_NOT_FOUND), ("InvalidTimeStamp", TIMESTAMP_EXPIRED), ("Forbidden", FORBIDDEN),
    (ACTION_NOT_FOUND, ACTION_NOT_FOUND), (MISSING_PARAMETER, MISSING_PARAMETER),
)
#: The fields asked for by default: the default five and those our columns and BI users want.
FIELDS: tuple[str, ...] = (
    "ItemId", "Title", "PicUrl", "Url", "ReservePrice", "ZkFinalPrice", "PriceAfterCoupon", "Volume", "Nick",
    "ShopTitle", "UserType",
)
_RETRY_AFTER_RE = re.compile(r"retry after (\d+) ms")


@dataclass(frozen=True)
class AliyunOptions:
    """The gateway's settings, checked."""

    num: int = MAX_NUM
    fields: tuple[str, ...] = FIELDS
    crop: bool = True
    region: str = ""
    pid: str = ""
    relation_id: str = ""
    user_type: str = ""
    signature: str = "v3"

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> AliyunOptions:
        def text(name: str) -> str:
            return str(settings.get(name) or "").strip()

        num_text = text("IMAGESEARCH_ALIYUN_NUM") or str(MAX_NUM)
        if not num_text.isdigit() or not 1 <= int(num_text) <= MAX_NUM:
            raise ConfigurationError(f"IMAGESEARCH_ALIYUN_NUM={num_text!r}: give results per page, 1 to {MAX_NUM}")
        fields = [f.strip() for f in settings.getlist("IMAGESEARCH_ALIYUN_FIELDS") if f.strip()] or list(FIELDS)
        unknown = [f for f in fields if f not in RESULT_FIELDS]
        if unknown:
            raise ConfigurationError(
                f"IMAGESEARCH_ALIYUN_FIELDS names {unknown[0]!r}, which the API does not return: use names of "
                f"Data.Auctions[].Result such as {', '.join(FIELDS[:4])}"
            )
        if "ItemId" not in fields:  # the products' key: always asked for
            fields.insert(0, "ItemId")
        region = text("IMAGESEARCH_ALIYUN_REGION")
        if region and not re.fullmatch(r"[0-9]+,[0-9]+,[0-9]+,[0-9]+", region):
            raise ConfigurationError(
                f"IMAGESEARCH_ALIYUN_REGION={region!r}: give the product's box as x1,x2,y1,y2 pixels, e.g. 0,300,0,400"
            )
        pid = text("IMAGESEARCH_ALIYUN_PID")
        if pid and not re.fullmatch(PID_PATTERN, pid):
            raise ConfigurationError(
                f"IMAGESEARCH_ALIYUN_PID={pid!r}: a Taobao-Union PID is mm_<account>_<site>_<adzone>"
            )
        relation_id = text("IMAGESEARCH_ALIYUN_RELATION_ID")
        if relation_id and not relation_id.isdigit():
            raise ConfigurationError(f"IMAGESEARCH_ALIYUN_RELATION_ID={relation_id!r}: a channel id is digits")
        user_type = text("IMAGESEARCH_ALIYUN_USER_TYPE").lower()
        user_type = {"tmall": "1", "taobao": "0"}.get(user_type, user_type)
        if user_type not in ("", "0", "1"):
            raise ConfigurationError(
                f"IMAGESEARCH_ALIYUN_USER_TYPE={user_type!r}: empty for every seller, 1 (tmall) or 0 (taobao)"
            )
        signature = (text("IMAGESEARCH_ALIYUN_SIGNATURE") or "v3").lower()
        if signature not in SIGNATURE_VERSIONS:
            raise ConfigurationError(f"IMAGESEARCH_ALIYUN_SIGNATURE={signature!r}: use v3 (the default) or v2")
        return cls(int(num_text), tuple(fields), settings.getbool("IMAGESEARCH_ALIYUN_CROP", True), region, pid,
                   relation_id, user_type, signature)


class AliyunGateway(Gateway):
    """Speaks Image Search's Taobao-Union edition: RPC form posts, Alibaba Cloud's signature, JSON answers."""

    name = "aliyun"
    public_endpoint = PUBLIC_ENDPOINT
    error_actions: ClassVar[Mapping[str, str]] = ERROR_ACTIONS
    fix_hints: ClassVar[Mapping[str, str]] = FIX_HINTS
    credential_codes = frozenset({ACCESS_KEY_NOT_FOUND, "InvalidAccessKeyId.Inactive", SIGNATURE_MISMATCH,
                                  INCOMPLETE_SIGNATURE})
    # Alibaba Cloud answers its errors with these statuses and {RequestId, Code, Message}: 400 (parameters,
    # signature, Throttling.User), 403 (permission, Image Search's DeniedRequest), 404 (an unknown AccessKey or
    # action), 409 (Image Search's InstanceStatusError), 429 (throttling, where a gateway answers so), 500
    # and 503 (InternalError, ServiceUnavailable).
    error_statuses: ClassVar[frozenset[int]] = frozenset({400, 403, 404, 409, 429, 500, 503})
    # The product's default limit is 5 searches a second (its API reference); a call counts when it
    # arrives, so a fifth of a second of margin is enough here (an hour's window needs more).
    default_quota = "5/1"
    default_quota_margin = 0.2
    quota_day_starts = "00:00 China time (the sandbox's daily limit; the product publishes none)"

    def __init__(self, credentials: Credentials, options: AliyunOptions | None = None) -> None:
        super().__init__(credentials)
        self.options = options or AliyunOptions()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> AliyunGateway:
        return cls(Credentials.from_settings(crawler), AliyunOptions.from_settings(crawler.settings))

    @classmethod
    def check_settings(cls, settings: BaseSettings) -> None:
        AliyunOptions.from_settings(settings)

    def picture_problem(self, original: tuple[int, int], sent: tuple[int, int]) -> tuple[str, str] | None:
        takes = f"Image Search takes sides of {MIN_SIDE} to {MAX_SIDE} pixels (UnsupportedPicPixels); not sent"
        if min(original) < MIN_SIDE:
            return "image_too_small", f"{original[0]}x{original[1]} pixels: {takes}"
        if min(sent) < MIN_SIDE or max(sent) > MAX_SIDE:  # our own scaling to IMAGESEARCH_MAX_IMAGE_SIDE made it so
            return "image_unsupported", (f"{original[0]}x{original[1]} pixels, sent as {sent[0]}x{sent[1]} for "
                                         f"IMAGESEARCH_MAX_IMAGE_SIDE: {takes}; change that setting for it")
        return None

    @property
    def last_page(self) -> int:
        """``Start`` goes up to 499: the last page of ``num`` results that starts there."""
        return MAX_START // self.options.num + 1

    # -- calls -----------------------------------------------------------------------------------

    def build_search(self, image_data: str | ImageRef, page: int, cat: str | None) -> ApiCall:
        if not 1 <= page <= self.last_page:
            raise ValueError(f"page {page}: Image Search pages end at Start {MAX_START} ({self.last_page} pages)")
        options = self.options
        params = {START_PARAM: str((page - 1) * options.num), NUM_PARAM: str(options.num),
                  "Fields": ",".join(options.fields), "Crop": "true" if options.crop else "false"}
        if isinstance(image_data, ImageRef) and image_data.region is not None:
            params["Crop"] = "false"  # the picture is the product's box already: no second cut into it
        if cat:
            params[CATEGORY_PARAM] = str(cat)
        for name, value in (("Region", options.region), ("Pid", options.pid), ("RelationId", options.relation_id),
                            ("UserType", options.user_type)):
            if value:
                params[name] = value
        if isinstance(image_data, ImageRef):  # Base64 of the file, put in the body when the call is sent
            return ApiCall(SEARCH_BY_PIC, params, image=image_data, image_param=PIC_CONTENT_PARAM)
        if image_data.lower().startswith(("http://", "https://", "//")):
            url = "https:" + image_data if image_data.startswith("//") else image_data
            return ApiCall(SEARCH_BY_URL, {PIC_URL_PARAM: url, **params})
        return ApiCall(SEARCH_BY_PIC, {PIC_CONTENT_PARAM: image_data, **params})

    def build_upload(self, image: bytes | ImageRef) -> ApiCall:
        raise NotImplementedError("Image Search takes the picture itself (PicContent): nothing is uploaded first")

    def to_request(self, call: ApiCall, endpoint: str, **kwargs: Any) -> Request:
        meta = self.call_meta(call, kwargs)
        # Error answers come with 4xx/5xx statuses and the error body: they reach the gateway's parser.
        meta["handle_httpstatus_list"] = sorted(self.error_statuses)
        url = endpoint.rstrip("/") + "/"
        return FormRequest(url, formdata=call.params, meta=meta, **kwargs)

    def sign(self, request: Request) -> Request:
        credentials = self.credentials_for(request)
        action = str(request.meta.get(METHOD_META_KEY))
        parts = urlsplit(request.url)
        sent = request.headers.copy()  # Headers: a name set again replaces its value, whatever its case
        sent["Content-Type"] = "application/x-www-form-urlencoded"
        sent["Accept"] = "application/json"
        if self.options.signature == "v2":
            common = {
                "Action": action, "Version": API_VERSION, "Format": "JSON", "AccessKeyId": credentials.key,
                "SignatureMethod": V2_METHOD, "SignatureVersion": V2_VERSION, "SignatureNonce": nonce(),
                "Timestamp": timestamp(),
            }
            body = dict(parse_form(request.body.decode("utf-8")))
            common["Signature"] = v2_signature("POST", {**body, **common}, credentials.secret)
            url = urlunsplit(parts._replace(query=urlencode(common)))
            return request.replace(url=url, headers=sent)
        signed = {
            "host": parts.netloc, "content-type": "application/x-www-form-urlencoded", "x-acs-action": action,
            "x-acs-version": API_VERSION, "x-acs-date": timestamp(), "x-acs-signature-nonce": nonce(),
            "x-acs-content-sha256": sha256_hex(request.body),
        }
        query = parse_qsl(parts.query, keep_blank_values=True)
        for name, value in signed.items():
            sent[name] = value
        sent["Authorization"] = v3_authorization("POST", parts.path or "/", query, signed, credentials.key,
                                                 credentials.secret)
        return request.replace(headers=sent)

    # -- answers ---------------------------------------------------------------------------------

    def parse_error(self, response: Response) -> GatewayError | None:
        try:
            body = self.json_object(response)
        except MalformedResponse as error:
            return error
        code = body.get("Code")
        success = body.get("Success")
        if response.status == 200 and success is not False and (code in (None, 0, "0") or success is True):
            if not isinstance(body.get("Data"), dict):
                return MalformedResponse("JSON without Data or Code")
            return None
        if code in (None, ""):
            return MalformedResponse(f"HTTP {response.status} JSON without Code")
        details = [f"HTTP {response.status}"]
        if request_id := body.get("RequestId"):
            details.append(f"request id {request_id}")
        retry_after = response.headers.get(RETRY_AFTER_HEADER)
        if retry_after and retry_after.strip().isdigit():
            details.append(f"retry after {int(retry_after)} ms")
        return GatewayError(str(code), "", str(body.get("Message") or ""), "; ".join(details))

    def parse_search(self, response: Response) -> SearchPage:
        error = self.parse_error(response)
        if error is not None:
            raise error
        auctions: Any = self.json_object(response)["Data"].get("Auctions") or []
        if not isinstance(auctions, list):
            raise MalformedResponse("Data.Auctions is not a list")
        hits = [self._hit(auction) for auction in auctions if isinstance(auction, dict)]
        return SearchPage(hits, None, page_size=self.options.num, main_region=self._main_region(response),
                          searched_main_region=self.options.crop and not self.options.region)

    def _main_region(self, response: Response) -> tuple[int, int, int, int] | None:
        """PicInfo.MainRegion's ``x1,x2,y1,y2`` (aliyun's order) as Pillow's box; None if absent or not that."""
        info = self.json_object(response).get("PicInfo")
        region = info.get("MainRegion") if isinstance(info, dict) else None
        text = region.get("Region") if isinstance(region, dict) else None
        match = re.fullmatch(r"\s*(\d+),(\d+),(\d+),(\d+)\s*", text) if isinstance(text, str) else None
        if match is None:
            return None
        x1, x2, y1, y2 = (int(value) for value in match.groups())
        return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None

    @staticmethod
    def _hit(auction: dict[str, Any]) -> dict[str, Any]:
        """One auction in our hit fields. ZkFinalPrice (the price after the listing's discount) is the price,
        ReservePrice (the list price) its fallback; PriceAfterCoupon is the coupon price when a coupon lowers
        it; Volume (sales of the last 30 days) the sales; UserType 1 a Tmall shop; RankScore the score.
        ShortTitle, SubTitle, ShopTitle, SellerId, Provcity, category names, coupon details and commissions
        have no column (README "Alibaba Cloud Image Search")."""
        result = auction.get("Result")
        if not isinstance(result, dict):
            result = {}
        price = result.get("ZkFinalPrice")
        if price in (None, ""):
            price = result.get("ReservePrice")
        hit: dict[str, Any] = {
            "num_iid": result.get("ItemId"), "title": result.get("Title"), "pic_url": result.get("PicUrl"),
            "detail_url": result.get("Url"), "price": price, "sales": result.get("Volume"),
            "seller_nick": result.get("Nick"),
        }
        if normalize_float(result.get("Volume")) is not None:
            hit["sales_kind"] = "monthly"  # Taobao-Union's Volume: the sales of the last 30 days, a bare number
        if (user_type := result.get("UserType")) is not None:
            hit["is_tmall"] = str(user_type).strip() == str(TMALL)
        coupon, single = normalize_float(result.get("PriceAfterCoupon")), normalize_float(price)
        if coupon is not None and (single is None or coupon < single):
            hit["coupon_price"] = result.get("PriceAfterCoupon")
        hit["score"] = normalize_float(auction.get("RankScore"))
        return {name: value for name, value in hit.items() if value is not None}

    def parse_upload(self, response: Response) -> str:
        raise NotImplementedError("Image Search has no upload call")

    def ban_seconds(self, error: GatewayError) -> float | None:
        if match := _RETRY_AFTER_RE.search(error.sub_msg):
            return max(0.1, int(match.group(1)) / 1000)
        # A QPS limit: one second frees the window.
        return 1.0 if error.code.startswith("Throttling") or error.code == "DeniedRequest" else None

    def limit_name(self, error: GatewayError) -> str | None:
        if error.code.startswith("Throttling") or error.code == "DeniedRequest":
            return "the account's searches per second"
        return "the sandbox's daily limit" if error.code == QUOTA_EXHAUSTED else None

    def fix_hint(self, error: GatewayError) -> str:
        if error.code in self.fix_hints:
            return self.fix_hints[error.code]
        for prefix, filed_under in _HINT_PREFIXES:
            if error.code.startswith(prefix):
                return self.fix_hints[filed_under]
        return super().fix_hint(error)

