"""Onebound's gateway (万邦, api.md section 3): ``item_search_img`` over GET, pictures uploaded with ``upload_img``."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode, urlsplit, urlunsplit

from scrapy import FormRequest, Request

from pipeline.errors import ConfigurationError, GatewayError, MalformedResponse
from pipeline.gateways.actions import FATAL, RETRY, SEED_ERROR, STOP, THROTTLE
from pipeline.gateways.base import LISTING_FIELDS, ApiCall, DailyQuota, Gateway, SearchPage, count
from pipeline.gateways.onebound.wire import (
    BAN_SECONDS_RE,
    BUSY_CODE,
    CACHE_VALUES,
    DAILY_LIMIT_CODE,
    IMAGE_CODE_PARAM,
    IMAGE_URL_PARAM,
    KEY_PARAM,
    LANGUAGES,
    LOGIN_CODE,
    NO_ACCESS_CODE,
    RATE_LIMITED_CODE,
    RECHARGE_CODE,
    SEARCH_API,
    SEARCH_PATH,
    SECRET_PARAM,
    SUCCESS_CODE,
    UPLOAD_API,
    UPLOAD_PATH,
    ApiInfo,
    code_text,
)
from pipeline.images import ImageRef
from pipeline.normalize import normalize_url
from pipeline.pacing.apps import Credentials

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings


#: The default action per error_code. Log in (4013), recharge (4016) and no access (4005) need a
#: person: the crawl stops at once. Codes the real service does not document (a rate limit, a spent
#: day, a busy backend) are the sandbox's (see wire.py); any other code fails its seed only.
ERROR_ACTIONS: Mapping[str, str] = {
    LOGIN_CODE: FATAL,
    RECHARGE_CODE: FATAL,
    NO_ACCESS_CODE: FATAL,
    DAILY_LIMIT_CODE: STOP,
    RATE_LIMITED_CODE: THROTTLE,
    BUSY_CODE: RETRY,
    "malformed": RETRY,
    "*": SEED_ERROR,
}
FIX_HINTS: Mapping[str, str] = {
    LOGIN_CODE: "Onebound refused the key or secret: check IMAGESEARCH_APP_KEY and IMAGESEARCH_APP_SECRET",
    RECHARGE_CODE: "the Onebound account's balance is spent: recharge it, then run the same command again",
    NO_ACCESS_CODE: "this key may not call item_search_img: enable the Taobao API for it in Onebound's console",
}


def _absolute(url: str) -> str:
    """``//host/x`` and ``//https://host/x``, as Onebound sends them, as ``https://host/x``."""
    return normalize_url(url) or url.strip()


def _tmall(detail_url: Any) -> bool | None:
    """Onebound sends no Tmall flag; a Tmall listing's page is on detail.tmall.com."""
    url = normalize_url(detail_url)
    if url is None:
        return None
    host = (urlsplit(url).hostname or "").lower()
    return host == "tmall.com" or host.endswith((".tmall.com", ".tmall.hk"))


class OneboundGateway(Gateway):
    """Speaks Onebound's item_search_img: the key and secret in the query string, JSON answers with ``error_code``."""

    name = "onebound"
    public_endpoint = "https://api-gw.onebound.cn"
    error_actions: ClassVar[Mapping[str, str]] = ERROR_ACTIONS
    fix_hints: ClassVar[Mapping[str, str]] = FIX_HINTS
    credential_codes = frozenset({LOGIN_CODE})
    # imgid takes Taobao/Tmall picture URLs only: anything else is uploaded first, as Base64.
    uploads_local_images = True

    def __init__(self, credentials: Credentials, cache: str = "no", lang: str = "cn") -> None:
        super().__init__(credentials)
        if cache not in CACHE_VALUES:
            raise ConfigurationError(f"IMAGESEARCH_ONEBOUND_CACHE={cache!r}: use yes (Onebound's cached answers) or no")
        if lang not in LANGUAGES:
            raise ConfigurationError(f"IMAGESEARCH_ONEBOUND_LANG={lang!r}: use one of {', '.join(LANGUAGES)}")
        self.cache = cache
        self.lang = lang

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> OneboundGateway:
        cache, lang = cls._options(crawler.settings)
        return cls(Credentials.from_settings(crawler), cache, lang)

    @classmethod
    def check_settings(cls, settings: BaseSettings) -> None:
        cls(Credentials("", ""), *cls._options(settings))

    @staticmethod
    def _options(settings: BaseSettings) -> tuple[str, str]:
        cache = str(settings.get("IMAGESEARCH_ONEBOUND_CACHE") or "no").strip().lower()
        return cache, str(settings.get("IMAGESEARCH_ONEBOUND_LANG") or "cn").strip().lower()

    def build_search(self, image_data: str | ImageRef, page: int, cat: str | None) -> ApiCall:
        if isinstance(image_data, ImageRef):
            raise TypeError("Onebound searches a picture's URL or imgid: upload a local picture first")
        params = {IMAGE_URL_PARAM: _absolute(image_data), "page": str(page), "lang": self.lang, "cache": self.cache,
                  "result_type": "json"}
        if cat:
            params["cat"] = str(cat)
        return ApiCall(SEARCH_API, params)

    def build_upload(self, image: bytes | ImageRef) -> ApiCall:
        if isinstance(image, ImageRef):  # Base64 of the file, put in the body when the call is sent
            return ApiCall(UPLOAD_API, image=image, image_param=IMAGE_CODE_PARAM)
        return ApiCall(UPLOAD_API, {IMAGE_CODE_PARAM: base64.b64encode(image).decode("ascii")})

    def to_request(self, call: ApiCall, endpoint: str, **kwargs: Any) -> Request:
        meta = self.call_meta(call, kwargs)
        base = endpoint.rstrip("/")
        if call.method == UPLOAD_API:
            # The picture goes in the body; the credentials join the query string when it is sent.
            return FormRequest(base + UPLOAD_PATH, method="POST", formdata=call.params, meta=meta, **kwargs)
        return Request(f"{base}{SEARCH_PATH}?{urlencode(sorted(call.params.items()))}", meta=meta, **kwargs)

    def sign(self, request: Request) -> Request:
        # Onebound has no signature: the key and secret themselves, first in the query string.
        parts = urlsplit(request.url)
        app = self.credentials_for(request)
        credentials = urlencode({KEY_PARAM: app.key, SECRET_PARAM: app.secret})
        query = f"{credentials}&{parts.query}" if parts.query else credentials
        return request.replace(url=urlunsplit(parts._replace(query=query)))

    # -- answers ---------------------------------------------------------------------------------

    def parse_error(self, response: Response) -> GatewayError | None:
        try:
            body = self.json_object(response)
        except MalformedResponse as error:
            return error
        code = code_text(body.get("error_code"))
        if code == SUCCESS_CODE or (not code and isinstance(body.get("items"), dict)):
            return None
        if not code:
            return MalformedResponse("JSON without error_code or items")
        return GatewayError(code, "", str(body.get("reason") or ""), str(body.get("error") or ""))

    def _answer(self, response: Response) -> dict[str, Any]:
        error = self.parse_error(response)
        if error is not None:
            raise error
        return self.json_object(response)

    def parse_search(self, response: Response) -> SearchPage:
        items = self._answer(response).get("items")
        if not isinstance(items, dict):
            raise MalformedResponse("search answer without an items object")
        hits: Any = items.get("item") or []
        if isinstance(hits, dict):
            hits = [hits]
        if not isinstance(hits, list):
            raise MalformedResponse("items.item is not a list")
        mapped = [self._hit(hit) for hit in hits if isinstance(hit, dict)]
        page_size = count(items.get("page_size"), 0) or None
        page_count = count(items.get("pagecount"), -1)
        return SearchPage(
            mapped, count(items.get("total_results"), default=len(mapped)), page_size,
            page_count if page_count >= 0 else None,
        )

    @staticmethod
    def _hit(raw: dict[str, Any]) -> dict[str, Any]:
        """One Onebound item in our hit fields. ``orginal_price`` (sic), ``seller_id``, ``area`` and
        ``post_fee`` have no column; ``is_tmall`` comes from the item page's host."""
        hit = {name: raw[name] for name in LISTING_FIELDS if name in raw}
        hit.setdefault("is_tmall", _tmall(raw.get("detail_url")))
        return hit

    def parse_upload(self, response: Response) -> str:
        body = self._answer(response)
        candidates: list[Any] = [body]
        items = body.get("items")
        if isinstance(items, dict):
            candidates += [items, items.get("item")]
        candidates.append(body.get("data"))
        # The upload answer's exact nesting is not documented: the first "url" found, outermost last.
        for candidate in reversed(candidates):
            if isinstance(candidate, dict) and isinstance(candidate.get("url"), str) and candidate["url"].strip():
                return _absolute(candidate["url"])
        raise MalformedResponse("upload answer without a picture url")

    def daily_quota(self, response: Response) -> DailyQuota | None:
        try:
            info = ApiInfo.parse(self.json_object(response).get("api_info"))
        except MalformedResponse:
            return None
        return DailyQuota(info.today, info.max) if info else None

    def ban_seconds(self, error: GatewayError) -> float | None:
        match = BAN_SECONDS_RE.search(f"{error.msg} {error.sub_msg}")
        return float(match.group(1)) if match else None
