"""Onebound's protocol (``/taobao/item_search_img/``, ``/taobao/upload_img/``): keys in the query, ``error_code``.

As the service answers (api.md section 3): ``key`` and ``secret`` in the query string, answers
with ``items{page, page_size, total_results, real_total_results, pagecount, item[]}`` and
``error_code`` ("0000" for success), ``reason``, ``error``, ``api_info`` (``today:N max:M``, the
app's calls today), ``cache``, ``server_time``. Values drift between types the way captured
answers do (ids and counts as numbers or strings, ``//host`` and ``//https://host`` URLs). Codes
the real service does not document are the sandbox's (see ``pipeline.gateways.onebound.wire``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

from pipeline.gateways.onebound.wire import (
    BAD_IMAGE_CODE,
    BAD_PARAMETER_CODE,
    BUSY_CODE,
    CACHE_VALUES,
    DAILY_LIMIT_CODE,
    IMAGE_CODE_PARAM,
    IMAGE_URL_PARAM,
    ITEM_FIELDS,
    KEY_PARAM,
    LANGUAGES,
    LOGIN_CODE,
    NO_ACCESS_CODE,
    RATE_LIMITED_CODE,
    SEARCH_API,
    SEARCH_PATH,
    SECRET_PARAM,
    SUCCESS_CODE,
    UPLOAD_API,
    UPLOAD_PATH,
    ApiInfo,
    ban_message,
)
from pipeline.timezones import CHINA_TZ
from sandbox.accounts import Accounts
from sandbox.calls import Answer, Call, json_answer, new_request_id, parse_page
from sandbox.config import AppConfig, SandboxConfig
from sandbox.models import UPLOADED_CDN_URL, ImageSearchBackend, UnknownImageReference, decode_base64
from sandbox.search import ImageDecodeError

logger = logging.getLogger(__name__)

PROTOCOL = "onebound"
#: The API each path serves.
PATHS: dict[str, str] = {SEARCH_PATH: SEARCH_API, UPLOAD_PATH: UPLOAD_API}
RESULT_TYPES: tuple[str, ...] = ("json", "jsonu")
_AREAS = ("浙江 杭州", "广东 广州", "上海", "江苏 苏州", "福建 泉州", "北京")


class OneboundError(Exception):
    """An answer with an ``error_code`` other than success."""

    def __init__(self, code: str, reason: str, error: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.error = error or reason


def _digest(value: Any) -> int:
    """A stable small number per value (for the type drift of one item's fields)."""
    return int.from_bytes(hashlib.sha1(str(value).encode("utf-8")).digest()[:4], "big")


def _price(value: Any) -> float | None:
    try:
        return float(str(value).strip().lstrip("¥￥"))
    except ValueError:
        return None


def onebound_item(top_item: dict[str, Any]) -> dict[str, Any]:
    """A catalogue product's hit as the item_search family sends it: the same listing, Onebound's fields.

    The listing's own values (title, price, sales, seller, links) are the catalogue's, as TOP serves
    them; Onebound adds a promotional and an original price, a seller id, an area and a postage fee
    (derived from the product, so the same product always reads the same), has no Tmall flag (a
    Tmall listing's page is on detail.tmall.com), and drifts between types: ``num_iid`` is a number,
    and some links come as ``//https://host/...``.
    """
    num_iid = str(top_item.get("num_iid", ""))
    drift = _digest(num_iid)
    price = top_item.get("price", "")
    single = _price(price)
    promotion: Any = price if single is None or drift % 3 else f"{single * 0.9:.2f}"
    original: Any = price if single is None else f"{single * 1.25:.2f}"
    detail_url = str(top_item.get("detail_url", ""))
    if drift % 4 == 0 and detail_url.startswith("https://"):
        detail_url = "//" + detail_url
    item = {
        "title": top_item.get("title", ""),
        "num_iid": int(num_iid) if num_iid.isdigit() else num_iid,
        "price": price,
        "promotion_price": promotion,
        "orginal_price": original,
        "sales": top_item.get("sales", ""),
        "pic_url": top_item.get("pic_url", ""),
        "detail_url": detail_url,
        "seller_nick": top_item.get("seller_nick", ""),
        "seller_id": str(100_000_000 + drift % 900_000_000),
        "area": _AREAS[drift % len(_AREAS)],
        "post_fee": "0.00" if drift % 2 else "10.00",
    }
    return {name: item[name] for name in ITEM_FIELDS}


class OneboundProtocol:
    """Checks an item_search_img or upload_img call like Onebound and runs it against the backend."""

    def __init__(self, config: SandboxConfig, backend: ImageSearchBackend, accounts: Accounts) -> None:
        self.config = config
        self.backend = backend
        self.accounts = accounts
        self._answered: set[str] = set()

    def _envelope(self, app: AppConfig | None, started: float, **fields: Any) -> dict[str, Any]:
        """The common fields every answer carries around ``fields``."""
        now = datetime.now(UTC).astimezone(CHINA_TZ)
        return {
            **fields,
            "api_info": self._api_info(app),
            "execution_time": round(time.perf_counter() - started, 3),
            "server_time": f"Beijing/{now:%Y-%m-%d %H:%M:%S}",
            "request_id": new_request_id(),
        }

    def _api_info(self, app: AppConfig | None) -> str:
        return str(ApiInfo(self.accounts.used_today(app), self.accounts.daily_max(app))) if app is not None else ""

    def error_answer(self, error: OneboundError, app: AppConfig | None = None, started: float = 0.0) -> Answer:
        self.accounts.stats.errors[error.code] += 1
        # Codes come as strings or as numbers: errors are numbers here, success is the string "0000".
        code: Any = int(error.code) if error.code.isdigit() else error.code
        return json_answer(self._envelope(
            app, started or time.perf_counter(), error=error.error, reason=error.reason, error_code=code,
        ))

    def record(self, call: Call) -> None:
        """Count the call in the stats (before any check: faulted and refused calls count too)."""
        self.accounts.stats.record_call(PROTOCOL, PATHS[call.path], call.params.get(KEY_PARAM, ""))

    def internal_error(self, call: Call) -> Answer:
        return self.error_answer(OneboundError(BUSY_CODE, "internal sandbox error"))

    def too_large(self, call: Call, limit: int) -> Answer:
        return self.error_answer(OneboundError(BAD_PARAMETER_CODE, f"request body is larger than {limit} bytes"))

    def remote_error(self, call: Call, variant: float) -> Answer:
        return self.error_answer(OneboundError(BUSY_CODE, "系统繁忙，请稍后再试 (backend busy, retry later)"))

    def garbage_body(self) -> bytes:
        return json_answer({"items": {"item": [{"title": "x"}], "total_results": 1}, "error_code": SUCCESS_CODE}).body

    async def handle(self, call: Call) -> Answer:
        started = time.perf_counter()
        api = PATHS[call.path]
        app: AppConfig | None = None
        try:
            app = self._authenticate(call, api)
            self._admit(app)
            fields = self._search(call) if api == SEARCH_API else self._upload(call)
        except OneboundError as error:
            logger.info("error_code %s for %s", error.code, api)
            return self.error_answer(error, app, started)
        return json_answer(self._envelope(app, started, **fields, error="", reason="ok", error_code=SUCCESS_CODE))

    def _authenticate(self, call: Call, api: str) -> AppConfig:
        """The app, after its key, secret, access and the call's options are checked. Raises OneboundError."""
        params = call.params
        key, secret = params.get(KEY_PARAM, ""), params.get(SECRET_PARAM, "")
        if not key or not secret:
            raise OneboundError(LOGIN_CODE, "请登录: key and secret are required")
        app = self.accounts.app(key)
        if app is None or not hmac.compare_digest(app.secret.encode(), secret.encode()):
            raise OneboundError(LOGIN_CODE, "请登录: the key or the secret is wrong")
        if self.accounts.denied(key, api):
            raise OneboundError(NO_ACCESS_CODE, f"no access to this platform's {api} for this key")
        result_type = params.get("result_type", "json")
        if result_type not in RESULT_TYPES:
            raise OneboundError(BAD_PARAMETER_CODE, f"result_type {result_type[:20]!r}: the sandbox answers json only")
        for name, allowed in (("cache", CACHE_VALUES), ("lang", LANGUAGES)):
            if params.get(name, allowed[0]) not in allowed:
                raise OneboundError(BAD_PARAMETER_CODE, f"{name} must be one of {', '.join(allowed)}")
        return app

    def _admit(self, app: AppConfig) -> None:
        """Count the call against the app's window and day, or raise why it is refused."""
        refusal = self.accounts.admit(app)
        if refusal is not None and refusal.daily:
            raise OneboundError(DAILY_LIMIT_CODE, f"today's call limit is reached ({self._api_info(app)})")
        if refusal is not None:
            raise OneboundError(RATE_LIMITED_CODE, ban_message(refusal.wait or 1))

    def _search(self, call: Call) -> dict[str, Any]:
        params = call.params
        imgid = params.get(IMAGE_URL_PARAM, "").strip()
        if not imgid:
            raise OneboundError(BAD_PARAMETER_CODE, "imgid is required")
        if not imgid.lower().startswith(("http://", "https://", "//")):
            raise OneboundError(BAD_IMAGE_CODE, "imgid must be the URL of a Taobao or Tmall picture")
        page = parse_page(params.get("page", ""), lambda message: OneboundError(BAD_PARAMETER_CODE, message))
        cat = params.get("cat") or None
        try:
            result = self.backend.search(imgid, cat, page, call.host)
        except (ImageDecodeError, UnknownImageReference) as exc:
            raise OneboundError(BAD_IMAGE_CODE, f"imgid is not a picture this platform has: {exc}") from None
        page_size = self.backend.page_size
        query = f"{imgid}|{cat}|{page}"
        cached = params.get("cache", "yes") == "yes" and query in self._answered
        self._answered.add(query)
        return {
            "items": {
                # Counts drift between numbers and strings, as captured answers show.
                "page": str(page),
                "page_size": page_size,
                "real_total_results": str(result.total_results),
                "total_results": result.total_results,
                "pagecount": math.ceil(result.total_results / page_size) if page_size else 0,
                "data_from": "sandbox",
                "item": [onebound_item(item) for item in result.items],
            },
            "cache": 1 if cached else 0,
        }

    def _upload(self, call: Call) -> dict[str, Any]:
        data = call.files.get(IMAGE_CODE_PARAM)
        text = call.params.get(IMAGE_CODE_PARAM, "")
        if data is None and not text:
            raise OneboundError(BAD_PARAMETER_CODE, "imgcode (the picture, Base64 or a file) is required")
        try:
            upload_id = self.backend.upload(data if data is not None else decode_base64(text))
        except ImageDecodeError as exc:
            raise OneboundError(BAD_IMAGE_CODE, f"imgcode is not a picture: {exc}") from None
        url = UPLOADED_CDN_URL.format(upload_id=upload_id)
        return {"items": {"item": {"status": "success", "name": f"{upload_id}.jpg", "url": url, "error": "",
                                   "extraInfo": ""}}}
