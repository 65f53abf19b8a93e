"""Alibaba Cloud Image Search, Taobao-Union edition (``POST /``, RPC style): signatures, QPS, Alibaba's errors.

As the service and its official SDK (``alibabacloud-imagesearch20210501``) speak it (api.md section 3):

- the action and version in the V3 headers (``x-acs-action``, ``x-acs-version``) or, with the older
  RPC signature, the ``Action``/``Version`` parameters; business parameters in the form body (or the
  query string); both signatures verified, the request's time within 15 minutes, a nonce seen
  before from the same AccessKey refused (``SignatureNonceUsed``);
- ``SearchByPic`` (``PicContent``, Base64, at most 4 MB, sides 100 to 4096 pixels) and
  ``SearchByUrl`` (``PicUrl``: the sandbox's own picture URLs, or any http(s) one, fetched);
  ``Start`` 0..499, ``Num`` 1..20 (default 10), ``CategoryId``, ``UserType`` (1 Tmall / 0 Taobao
  only), ``Fields`` (the five default fields always, others when asked), ``Region`` (``x1,x2,y1,y2``: the
  box searched, answered as ``PicInfo.MainRegion``), ``Crop`` (``true``, the default, without a Region:
  the service finds the product itself, sandbox/subject.py, and searches and answers that box; ``false``:
  the whole picture), ``Pid``, ``RelationId`` (checked);
- success ``{RequestId, Success, Code: 0, Message, Data: {Auctions: [{RankScore, Result}]}, PicInfo}``,
  errors with their HTTP status and ``{RequestId, HostId, Code, Message, Recommend}``; a throttled
  call says how long to wait in ``x-acs-retry-after`` (milliseconds), as the SDK reads it.

Each AccessKey may make ``--aliyun-qps`` searches a second (the product's default 5), beside its
app's own CALLS/SECONDS quota; both refusals are ``Throttling.User``, and cost no quota.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image

from pipeline.gateways.aliyun.signing import (
    CONTENT_SHA256_HEADER,
    MAX_SKEW_SECONDS,
    V2_METHOD,
    V2_VERSION,
    V3_ALGORITHM,
    V3_REQUIRED_HEADERS,
    Authorization,
    parse_timestamp,
    same,
    sha256_hex,
    v2_signature,
    v3_signature,
)
from pipeline.gateways.aliyun.wire import (
    ACCESS_KEY_NOT_FOUND,
    ACTION_NOT_FOUND,
    ACTIONS,
    API_VERSION,
    DEFAULT_FIELDS,
    DEFAULT_NUM,
    INCOMPLETE_SIGNATURE,
    INTERNAL_ERROR,
    INVALID_PARAMETER,
    INVALID_PICTURE,
    MAX_NUM,
    MAX_PICTURE_BYTES,
    MAX_SIDE,
    MAX_START,
    MIN_SIDE,
    MISSING_PARAMETER,
    NONCE_USED,
    PIC_CONTENT_PARAM,
    PIC_URL_PARAM,
    PID_PATTERN,
    QUOTA_EXHAUSTED,
    RESULT_FIELDS,
    RETRY_AFTER_HEADER,
    SEARCH_BY_PIC,
    SERVICE_UNAVAILABLE,
    SIGNATURE_MISMATCH,
    STATUS,
    TAOBAO,
    THROTTLING_USER,
    TIMESTAMP_EXPIRED,
    TIMESTAMP_FORMAT,
    TMALL,
    UNSUPPORTED_PIXELS,
    VERSION_NOT_FOUND,
)
from pipeline.normalize import normalize_sales
from sandbox.accounts import Accounts, QuotaLedger
from sandbox.calls import Answer, Call, Fetcher, json_answer
from sandbox.catalog import CATEGORIES, Product, render_item
from sandbox.config import AppConfig, SandboxConfig
from sandbox.models import ImageSearchBackend, MalformedImageReference, UnknownImageReference, decode_base64
from sandbox.search import ImageDecodeError, decode_image, image_features
from sandbox.subject import detect_subject

logger = logging.getLogger(__name__)

PROTOCOL = "aliyun"
_CATEGORY_NAMES = {cat: name for cat, name, _count, _nouns in CATEGORIES}
_PROVINCES = ("浙江 杭州", "广东 广州", "上海", "江苏 苏州", "福建 泉州", "北京")
_COUPONS = (0, 5, 10, 20)
_DIGITS_RE = re.compile(r"[0-9]{1,18}")
_REGION_RE = re.compile(r"[0-9]+,[0-9]+,[0-9]+,[0-9]+")


def _region(text: str, width: int, height: int) -> tuple[int, int, int, int]:
    """``Region`` (``x1,x2,y1,y2``, validated) within the picture, else the whole picture: the box searched."""
    if not text:
        return 0, width, 0, height
    x1, x2, y1, y2 = (int(value) for value in text.split(","))
    x1, x2, y1, y2 = min(x1, width), min(x2, width), min(y1, height), min(y2, height)
    if x2 - x1 < MIN_SIDE or y2 - y1 < MIN_SIDE:
        return 0, width, 0, height  # too small a box to search: the whole picture, as a bad crop would be
    return x1, x2, y1, y2


class AliyunError(Exception):
    """An error answer: its ``Code`` (whose HTTP status is wire.STATUS's) and ``Message``."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


def _missing(name: str) -> AliyunError:
    return AliyunError(MISSING_PARAMETER,
                       f'The input parameter "{name}" that is mandatory for processing this request is not supplied.')


def _invalid(name: str, why: str) -> AliyunError:
    return AliyunError(INVALID_PARAMETER, f"The specified parameter {name} is not valid: {why}.")


def request_id() -> str:
    """A RequestId shaped like Alibaba Cloud's (an upper-case UUID)."""
    return str(uuid.uuid4()).upper()


def _digest(value: Any) -> int:
    return int.from_bytes(hashlib.sha1(str(value).encode("utf-8")).digest()[:4], "big")


def _price(value: Any) -> float | None:
    try:
        number = float(str(value).strip().lstrip("¥￥"))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def aliyun_result(product: Product, host: str) -> dict[str, Any]:
    """A catalogue product as the Taobao-Union edition describes it: every field of its Result model.

    The listing's values are the catalogue's, as TOP serves them: Title, PicUrl, Url (the item page),
    ZkFinalPrice (the price), Nick, UserType (1 for a Tmall listing). Volume, a number here, is the
    listing's sales text read by the project's own normaliser, so that every gateway gives the same
    sales count. The rest is derived from the product, so the same product always reads the same:
    a list price 25 % above the price, a coupon of 0, 5, 10 or 20 yuan (PriceAfterCoupon), a shop
    title, a seller id, a province, its category's name, commissions and coupon details.
    """
    item = render_item(product, host)
    num_iid = str(item.get("num_iid", ""))
    drift = _digest(num_iid)
    price = item.get("price", "")
    single = _price(price)
    coupon = _COUPONS[drift % len(_COUPONS)] if single is not None and single > 30 else 0
    tmall = str(item.get("is_tmall", "")).strip().lower() == "true"
    nick = str(item.get("seller_nick", ""))
    title = str(item.get("title", ""))
    category = _CATEGORY_NAMES.get(product.cat, "")
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=drift % 300)
    return {
        "ItemId": num_iid,
        "Title": title,
        "ShortTitle": re.sub(r"<[^>]+>", "", title)[:20],
        "SubTitle": "",
        "PicUrl": item.get("pic_url", ""),
        "Url": item.get("detail_url", ""),
        "ReservePrice": price if single is None else f"{single * 1.25:.2f}",
        "ZkFinalPrice": price,
        "PriceAfterCoupon": price if single is None else f"{single - coupon:.2f}",
        "Volume": normalize_sales(item.get("sales")) or 0,
        "Nick": nick,
        "ShopTitle": f"{nick}{'旗舰店' if tmall else '的小店'}" if nick else "",
        "SellerId": str(100_000_000 + drift % 900_000_000),
        "UserType": TMALL if tmall else TAOBAO,
        "Provcity": _PROVINCES[drift % len(_PROVINCES)],
        "CategoryName": category.split("/")[0] if category else "",
        "LevelOneCategoryName": category,
        "CouponAmount": coupon,
        "CouponInfo": f"满{coupon * 10}元减{coupon}元" if coupon else "",
        "CouponStartFee": f"{coupon * 10:.2f}" if coupon else "",
        "CouponStartTime": f"{start:%Y-%m-%d}" if coupon else "",
        "CouponEndTime": f"{start + timedelta(days=30):%Y-%m-%d}" if coupon else "",
        "CouponTotalCount": str(1000 + drift % 9000) if coupon else "",
        "CouponRemainCount": drift % 1000 if coupon else 0,
        "CouponShareUrl": f"//uland.taobao.com/coupon/edetail?itemId={num_iid}" if coupon else "",
        "CommissionRate": f"{1 + drift % 20:.2f}",
        "MaxCommission": {"MaxCommissionRate": f"{2 + drift % 20:.2f}",
                          "MaxCommissionClickUrl": f"//s.click.taobao.com/t?e={num_iid}",
                          "MaxCommissionCouponShareUrl": ""},
        "DeeplinkUrl": f"tbopen://m.taobao.com/tbopen/index.html?h5Url=https%3A%2F%2Fitem.taobao.com%2Fitem.htm%3Fid%3D{num_iid}",
        "DeeplinkCouponShareUrl": "",
    }


class AliyunProtocol:
    """Checks an RPC call like Alibaba Cloud's gateway and runs it against the backend."""

    def __init__(self, config: SandboxConfig, backend: ImageSearchBackend, accounts: Accounts, fetch: Fetcher,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.backend = backend
        self.accounts = accounts
        self.fetch = fetch
        self._now = now
        self._clock = clock
        self._qps = QuotaLedger(clock)
        #: Nonces seen per AccessKey in the last MAX_SKEW_SECONDS: (monotonic time, nonce), oldest first.
        self._nonces: dict[str, tuple[deque[tuple[float, str]], set[str]]] = {}

    # -- what the HTTP server asks of a protocol ----------------------------------------------------

    def record(self, call: Call) -> None:
        """Count the call in the stats (before any check: faulted and refused calls count too)."""
        action = call.headers.get("x-acs-action") or call.params.get("Action", "")
        key = call.params.get("AccessKeyId", "")
        if not key and (authorization := Authorization.parse(call.headers.get("authorization", ""))):
            key = authorization.key_id
        self.accounts.stats.record_call(PROTOCOL, action, key)

    def error_answer(self, call: Call, error: AliyunError) -> Answer:
        self.accounts.stats.errors[error.code] += 1
        body = {
            "RequestId": request_id(), "HostId": call.host.split(":")[0], "Code": error.code,
            "Message": error.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={error.code}&product=ImageSearch",
        }
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if error.retry_after_ms is not None:
            headers = ((RETRY_AFTER_HEADER.encode(), str(error.retry_after_ms).encode()),)
        return replace(json_answer(body), status=STATUS.get(error.code, 400), headers=headers)

    def too_large(self, call: Call, limit: int) -> Answer:
        return self.error_answer(call, _invalid(PIC_CONTENT_PARAM, f"the request body is larger than {limit} bytes"))

    def remote_error(self, call: Call, variant: float) -> Answer:
        """A transient failure (the remote fault): ServiceUnavailable, or now and then InternalError."""
        if variant < 0.5:
            return self.error_answer(call, AliyunError(
                SERVICE_UNAVAILABLE, "The request has failed due to a temporary failure of the server."))
        return self.error_answer(call, AliyunError(INTERNAL_ERROR, "The request processing has failed due to some "
                                                   "unknown error, exception or failure."))

    def internal_error(self, call: Call) -> Answer:
        return self.error_answer(call, AliyunError(INTERNAL_ERROR, "internal sandbox error"))

    def garbage_body(self) -> bytes:
        return json_answer({"RequestId": request_id(), "Success": True, "Code": 0,
                            "Data": {"Auctions": [{"RankScore": 1.0, "Result": {"Title": "x"}}]}}).body

    async def handle(self, call: Call) -> Answer:
        try:
            action, app, params = self.authenticate(call)
            fields = await self.search(call, action, params)
        except AliyunError as error:
            logger.info("%s for %s", error, call.headers.get("x-acs-action") or call.params.get("Action"))
            return self.error_answer(call, error)
        return json_answer({"RequestId": request_id(), "Success": True, "Code": 0, "Message": "success", **fields})

    # -- authentication --------------------------------------------------------------------------

    def authenticate(self, call: Call) -> tuple[str, AppConfig, dict[str, str]]:
        """The action, the app and the business parameters, once the signature, time, nonce and quota are
        checked. Raises AliyunError."""
        header = call.headers.get("authorization", "")
        if header:
            action, version, key_id, sent_at, nonce_value = self._v3(call, header)
            params = dict(call.params)
        else:
            params = dict(call.params)
            action, version = params.get("Action", ""), params.get("Version", "")
            key_id, sent_at, nonce_value = self._v2(call, params)
        if not action:
            raise _missing("Action")
        if not version:
            raise _missing("Version")
        if version != API_VERSION:
            raise AliyunError(VERSION_NOT_FOUND, f"Specified parameter Version is not valid: use {API_VERSION}.")
        if action not in ACTIONS:
            raise AliyunError(ACTION_NOT_FOUND, "Specified api is not found, please check your url and method.")
        self._check_time(sent_at)
        app = self.accounts.app(key_id)
        assert app is not None  # checked with the signature
        self._check_nonce(key_id, nonce_value)
        if self.accounts.denied(key_id, action):
            raise AliyunError("Forbidden.RAM", f"User not authorized to operate on the specified resource: {action}.")
        self._admit(app)
        return action, app, params

    def _app(self, key_id: str) -> AppConfig:
        if not key_id:
            raise _missing("AccessKeyId")
        app = self.accounts.app(key_id)
        if app is None:
            raise AliyunError(ACCESS_KEY_NOT_FOUND, "Specified access key is not found.")
        return app

    def _v3(self, call: Call, header: str) -> tuple[str, str, str, str, str]:
        authorization = Authorization.parse(header)
        if authorization is None or authorization.algorithm != V3_ALGORITHM:
            raise AliyunError(INCOMPLETE_SIGNATURE, f"The request signature does not conform to Aliyun standards: "
                              f"expected {V3_ALGORITHM} Credential=...,SignedHeaders=...,Signature=...")
        headers = call.headers
        for name in V3_REQUIRED_HEADERS:
            if name not in authorization.signed_headers or not headers.get(name):
                raise AliyunError(INCOMPLETE_SIGNATURE,
                                  f"The request signature does not conform to Aliyun standards: {name} is not signed.")
        app = self._app(authorization.key_id)
        payload = headers[CONTENT_SHA256_HEADER].strip().lower()
        if payload != sha256_hex(call.body):
            raise AliyunError(SIGNATURE_MISMATCH, f"{CONTENT_SHA256_HEADER} is not the SHA-256 of the request body.")
        path = "/"
        expected = v3_signature(call.method, path, call.query_pairs, headers, authorization.signed_headers, payload,
                                app.secret)
        if not same(expected, authorization.signature):
            raise AliyunError(SIGNATURE_MISMATCH, "Specified signature does not match our calculation.")
        return (headers["x-acs-action"], headers["x-acs-version"], authorization.key_id, headers["x-acs-date"],
                headers["x-acs-signature-nonce"])

    def _v2(self, call: Call, params: dict[str, str]) -> tuple[str, str, str]:
        signature = params.get("Signature", "")
        if not signature:
            raise _missing("Signature")
        for name in ("AccessKeyId", "SignatureNonce", "Timestamp"):
            if not params.get(name):
                raise _missing(name)
        if params.get("SignatureMethod", V2_METHOD) != V2_METHOD:
            raise _invalid("SignatureMethod", f"use {V2_METHOD}")
        if params.get("SignatureVersion", V2_VERSION) != V2_VERSION:
            raise _invalid("SignatureVersion", f"use {V2_VERSION}")
        app = self._app(params["AccessKeyId"])
        if not same(v2_signature(call.method, params, app.secret), signature):
            raise AliyunError(SIGNATURE_MISMATCH, "Specified signature does not match our calculation.")
        for name in ("Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp",
                     "AccessKeyId", "Format", "Action", "Version", "SignatureType"):
            params.pop(name, None)
        return app.key, call.params["Timestamp"], call.params["SignatureNonce"]

    def _check_time(self, sent_at: str) -> None:
        try:
            sent = parse_timestamp(sent_at)
        except ValueError:
            raise AliyunError(TIMESTAMP_FORMAT, f"Specified time stamp or date value is not well formatted: "
                              f"use {TIMESTAMP_FORMAT} (UTC).") from None
        if abs((self._now() - sent).total_seconds()) > MAX_SKEW_SECONDS:
            raise AliyunError(TIMESTAMP_EXPIRED, "Specified time stamp or date value is expired.")

    def _check_nonce(self, key_id: str, nonce_value: str) -> None:
        """A nonce may be used once per AccessKey while its request's time could still pass."""
        order, seen = self._nonces.setdefault(key_id, (deque(), set()))
        now = self._clock()
        while order and order[0][0] <= now - 2 * MAX_SKEW_SECONDS:
            seen.discard(order.popleft()[1])
        if nonce_value in seen:
            raise AliyunError(NONCE_USED, "Specified signature nonce was used already.")
        seen.add(nonce_value)
        order.append((now, nonce_value))

    def _admit(self, app: AppConfig) -> None:
        """The AccessKey's searches per second, then its app's quota and day; a refusal costs nothing."""
        qps = replace(app, calls=self.config.aliyun_qps, seconds=1.0)
        if (left := self._qps.free_in(qps)) is not None:
            self.accounts.stats.quota_refused += 1
            raise AliyunError(THROTTLING_USER, "Request was denied due to user flow control.",
                              retry_after_ms=max(1, math.ceil(left * 1000)))
        refusal = self.accounts.admit(app)
        if refusal is not None and refusal.daily:
            raise AliyunError(QUOTA_EXHAUSTED, f"This account's calls for today are used up "
                              f"({self.accounts.daily_max(app)} calls).")
        if refusal is not None:
            raise AliyunError(THROTTLING_USER, "Request was denied due to user flow control.",
                              retry_after_ms=(refusal.wait or 1) * 1000)
        self._qps.charge(qps)

    # -- the search ------------------------------------------------------------------------------

    async def search(self, call: Call, action: str, params: dict[str, str]) -> dict[str, Any]:
        start = self._integer(params, "Start", 0, 0, MAX_START)
        num = self._integer(params, "Num", DEFAULT_NUM, 1, MAX_NUM)
        cat = params.get("CategoryId", "").strip() or None
        if cat is not None and not _DIGITS_RE.fullmatch(cat):
            raise _invalid("CategoryId", "a category id is an integer")
        user_type = params.get("UserType", "").strip()
        if user_type not in ("", str(TMALL), str(TAOBAO)):
            raise _invalid("UserType", "use 1 (Tmall) or 0 (Taobao)")
        crop = params.get("Crop", "true").strip().lower()
        if crop not in ("true", "false"):
            raise _invalid("Crop", "use true or false")
        if (region := params.get("Region", "").strip()) and not _REGION_RE.fullmatch(region):
            raise _invalid("Region", "give x1,x2,y1,y2")
        if (pid := params.get("Pid", "").strip()) and not re.fullmatch(PID_PATTERN, pid):
            raise AliyunError(f"{INVALID_PARAMETER}.Pid", "The specified Pid is not valid: mm_xxx_xxx_xxx.")
        if (relation := params.get("RelationId", "").strip()) and not _DIGITS_RE.fullmatch(relation):
            raise _invalid("RelationId", "a channel id is an integer")
        asked = {name.strip() for name in params.get("Fields", "").split(",") if name.strip()}
        fields = [name for name in RESULT_FIELDS if name in asked or name in DEFAULT_FIELDS]
        data = await self._picture(call, action, params)
        try:
            img = decode_image(data)
            width, height = Image.open(io.BytesIO(data)).size  # the picture's own: the decode may be reduced
        except ImageDecodeError as exc:
            raise AliyunError(INVALID_PICTURE, f"The picture cannot be decoded: {exc}.") from None
        if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
            raise AliyunError(UNSUPPORTED_PIXELS, f"The specified pixels is not supported: {width}x{height}, "
                              f"each side must be {MIN_SIDE} to {MAX_SIDE}.")
        x1, x2, y1, y2 = _region(region, width, height)
        f = img.width / width
        if (x1, x2, y1, y2) != (0, width, 0, height):
            # The service searches the box it is given (in the picture's pixels), as the product does.
            img = img.crop((round(x1 * f), round(y1 * f), round(x2 * f), round(y2 * f)))
        elif not region and crop == "true" and (found := detect_subject(img, self.backend.index)) is not None:
            # Crop=true without a Region: the service finds the product itself (sandbox/subject.py).
            img = img.crop(found)
            x1, y1 = min(width - 1, round(found[0] / f)), min(height - 1, round(found[1] / f))
            x2, y2 = min(width, round(found[2] / f)), min(height, round(found[3] / f))
        indices, scores = self.backend.index.scored(image_features(img), cat)
        products = self.backend.catalog.products
        ranked = list(zip(indices[: self.backend.max_results].tolist(), scores[: self.backend.max_results].tolist(),
                          strict=True))
        if user_type:
            ranked = [(i, s) for i, s in ranked
                      if (str(products[i].fields.get("is_tmall", "")).lower() == "true") == (user_type == str(TMALL))]
        auctions = []
        for index, score in ranked[start:start + num]:
            result = aliyun_result(products[index], call.host)
            auctions.append({"RankScore": round(float(score), 6),
                             "Result": {name: result[name] for name in fields}})
        region_text = f"{x1},{x2},{y1},{y2}"
        top = [{"CategoryId": int(products[i].cat) if products[i].cat.isdigit() else 0, "Score": round(float(s), 6)}
               for i, s in ranked[:1]]
        return {
            "Data": {"Auctions": auctions},
            "PicInfo": {"MainRegion": {"Region": region_text, "MultiCategoryId": top},
                        "MultiRegion": [{"Region": region_text}]},
        }

    @staticmethod
    def _integer(params: dict[str, str], name: str, default: int, least: int, most: int) -> int:
        text = params.get(name, "").strip()
        if not text:
            return default
        if not _DIGITS_RE.fullmatch(text) or not least <= int(text) <= most:
            raise _invalid(name, f"give an integer from {least} to {most}")
        return int(text)

    async def _picture(self, call: Call, action: str, params: dict[str, str]) -> bytes:
        if action == SEARCH_BY_PIC:
            content = params.get(PIC_CONTENT_PARAM, "")
            if not content and PIC_CONTENT_PARAM not in call.files:
                raise _missing(PIC_CONTENT_PARAM)
            try:
                data = call.files.get(PIC_CONTENT_PARAM) or decode_base64(content)
            except ImageDecodeError:
                raise AliyunError(INVALID_PICTURE, "PicContent is not a Base64 picture.") from None
        else:
            url = params.get(PIC_URL_PARAM, "").strip()
            if not url:
                raise _missing(PIC_URL_PARAM)
            try:
                data = self.backend.resolve_reference(url) or b""
            except MalformedImageReference:
                raise _invalid(PIC_URL_PARAM, "not a URL") from None
            except UnknownImageReference:
                data = b""
            if not data:
                try:
                    data = await self.fetch(url)
                except Exception as exc:  # noqa: BLE001 - any fetch failure is the caller's bad URL
                    raise AliyunError(INVALID_PICTURE, f"The picture at PicUrl cannot be downloaded: {exc}.") from None
        if len(data) > MAX_PICTURE_BYTES:
            raise _invalid(PIC_CONTENT_PARAM, f"the picture is larger than {MAX_PICTURE_BYTES // (1024 * 1024)} MB")
        return data
