"""The gateway seam: what the spider asks of an image-search API, whichever vendor speaks it.

A gateway builds the calls (``build_search``, ``build_upload``), turns them into Scrapy requests
(``to_request``), signs each attempt as it is sent (``sign``, called by
:class:`pipeline.components.handlers.GatewayDownloadHandler`), and reads the answers (``parse_search``,
``parse_upload``, ``parse_error``, ``daily_quota``), raising :class:`~pipeline.errors.GatewayError`
for an error answer. It also owns its vendor's facts: the default error-action table, what to tell
a user about a fatal code, how a quota answer names its ban. The spider, middlewares and pipelines
never look at the wire format; ``IMAGESEARCH_GATEWAY`` picks the implementation.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote_plus, unquote_plus, urlencode

from scrapy.http import TextResponse
from scrapy.utils.misc import build_from_crawler, load_object

from pipeline.errors import ConfigurationError, GatewayError, MalformedResponse
from pipeline.images import ImageRef
from pipeline.pacing.apps import APP_META_KEY, Credentials, app_pool
from pipeline.timezones import CHINA_TZ

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings


#: Request meta key carrying ``ApiCall.key`` of a gateway call (see pipeline/components/journal.py).
CALL_KEY_META_KEY = "imagesearch_call_key"
#: Request meta key naming the API method of a gateway call; the gateway middlewares (pacing,
#: error actions) and the download handler (signing) act only on such requests.
METHOD_META_KEY = "imagesearch_call"
#: Request meta key of a call's picture, ``(form field, ImageRef)``: the field is added to the body
#: when the call is sent (``with_image``), not before.
IMAGE_META_KEY = "imagesearch_image"
#: IMAGESEARCH_GATEWAY's short names; any other value is the import path of a Gateway class.
GATEWAYS: dict[str, str] = {
    "top": "pipeline.gateways.top.gateway.TopGateway",
    "onebound": "pipeline.gateways.onebound.gateway.OneboundGateway",
    "aliyun": "pipeline.gateways.aliyun.gateway.AliyunGateway",
}


@dataclass(frozen=True)
class ApiCall:
    """One API call before it is sent: the method name, its (unsigned) business parameters, and the
    picture it sends, if any (``image``, the form field ``image_param``), prepared when it is sent."""

    method: str
    params: dict[str, str] = field(default_factory=dict)
    image: ImageRef | None = None
    image_param: str = ""

    def __repr__(self) -> str:
        # Parameters can hold a Base64 image of a few hundred kilobytes: never print them.
        return f"ApiCall({self.method!r}, params={sorted(self.params)}, image={self.image!r})"

    @property
    def key(self) -> str:
        """A digest of what is asked (method, business parameters, the picture's identity; not signature or
        time): equal calls, one key."""
        asked: list[Any] = [self.method, sorted(self.params.items())]
        if self.image is not None:
            asked.append([self.image_param, self.image.identity])
        payload = json.dumps(asked, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


_QUOTED_AS_IS = re.compile(r"[A-Za-z0-9_.~+/=-]*")


def form_quote(string: str | bytes, safe: str | Iterable[int] = "", encoding: str | None = None,
               errors: str | None = None) -> str:
    """``urllib.parse.quote_plus``, as ``urlencode(..., quote_via=form_quote)`` calls it, with a fast way for
    Base64: a picture's hundreds of KB take three ``str.replace`` instead of quote's Python loop over each
    byte (about 5 ms per 100 KB on the reactor thread, twice a TOP call). Same output for every input."""
    if isinstance(string, str) and not safe and _QUOTED_AS_IS.fullmatch(string):
        return string.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    if isinstance(string, bytes):
        return quote_plus(string, safe)
    return quote_plus(string, safe, encoding, errors)


def form_unquote(string: str) -> str:
    """``urllib.parse.unquote_plus``, with form_quote's fast way back: a Base64 value whose only escapes are
    ``%2B``, ``%2F`` and ``%3D`` takes three ``str.replace`` instead of unquote's split at every ``%``
    (a 20 KB picture: ~0.2 ms a call on the reactor thread). Same output for every input: no replacement
    makes a new ``%``, so when none is left every escape was one of the three."""
    if "+" not in string:
        if "%" not in string:
            return string
        plain = string.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
        if "%" not in plain:
            return plain
    return unquote_plus(string)


def parse_form(body: str) -> list[tuple[str, str]]:
    """``urllib.parse.parse_qsl(body, keep_blank_values=True)`` of a form body, unquoted with form_unquote."""
    pairs = []
    for piece in body.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append((form_unquote(name), form_unquote(value)))
    return pairs


def with_image(request: Request) -> Request:
    """The request with its picture in the form body (prepared now, from its file), if it carries one.

    ImageRejected if the file can no longer be read or changed: the call is not sent.
    """
    image = request.meta.get(IMAGE_META_KEY)
    if image is None:
        return request
    param, ref = image
    encoded = urlencode({param: ref.prepare().base64()}, quote_via=form_quote).encode("ascii")
    headers = request.headers.copy()
    headers.setdefault(b"Content-Type", b"application/x-www-form-urlencoded")
    return request.replace(body=request.body + b"&" + encoded if request.body else encoded, headers=headers)


@dataclass(frozen=True)
class SearchPage:
    """One page of search results: the hits in our field names (values as the gateway sent them), and its totals.

    ``page_size`` and ``page_count`` are given when the answer says them; otherwise the spider
    takes page 1's number of hits as the page size. ``total_results`` is None when the answer
    gives no total (aliyun): the search then goes on while its pages are full.
    """

    items: list[dict[str, Any]]
    total_results: int | None
    page_size: int | None = None
    page_count: int | None = None
    #: The box of the sent picture the gateway detected its product in (aliyun's PicInfo.MainRegion), as
    #: Pillow's left, top, right, bottom; None where the gateway says none.
    main_region: tuple[int, int, int, int] | None = None
    #: True when the gateway searched main_region rather than the whole picture: it cut out the product
    #: itself (aliyun's Crop=true without a Region).
    searched_main_region: bool = False


@dataclass(frozen=True)
class DailyQuota:
    """What an answer says of the app's calls today: ``used`` of ``limit``."""

    used: int
    limit: int

    @property
    def spent(self) -> bool:
        return self.used >= self.limit

    def __str__(self) -> str:
        return f"{self.used} of {self.limit} calls today"


#: The listing as a gateway describes it, in our field names (values as sent: the item pipelines
#: normalise them). TOP's items use these very names; a gateway maps its own fields onto them.
LISTING_FIELDS: tuple[str, ...] = (
    "title", "pic_url", "price", "promotion_price", "sales", "num_iid", "detail_url", "seller_nick", "is_tmall",
)
#: Every field ``SearchPage.items`` may hold: the listing's, and what a gateway says beside the text of
#: sales and price (aliyun: its price after coupon, that its sales are monthly, the match's score).
HIT_FIELDS: tuple[str, ...] = (*LISTING_FIELDS, "coupon_price", "sales_kind", "score")


class Gateway(ABC):
    """An image-search API. Implementations are built with ``from_crawler`` and hold no crawl state."""

    #: Short name, in logs and the run manifest.
    name: ClassVar[str] = "gateway"
    #: The vendor's own service, for IMAGESEARCH_ENDPOINT (the README and hints name it).
    public_endpoint: ClassVar[str] = ""
    #: Default action per error (see pipeline.gateways.actions); IMAGESEARCH_ERROR_ACTIONS is merged over it.
    error_actions: ClassVar[Mapping[str, str]] = {"malformed": "retry", "*": "seed_error"}
    #: What to fix, per fatal code.
    fix_hints: ClassVar[Mapping[str, str]] = {}
    #: Codes meaning the key or secret is wrong.
    credential_codes: ClassVar[frozenset[str]] = frozenset()
    #: True when a picture must be uploaded (``build_upload``) before it can be searched (Onebound);
    #: False when ``build_search`` takes its Base64 JPEG (TOP). URLs of the platform's CDN
    #: (IMAGESEARCH_CDN_HOSTS) are searched as they are by every gateway; any other picture, a local
    #: file or an image URL the crawl downloads, is prepared as a JPEG first.
    uploads_local_images: ClassVar[bool] = False
    #: HTTP statuses whose body is the gateway's own error answer (aliyun's 4xx/5xx with a Code); any
    #: other status than 200 is no answer (Scrapy's RetryMiddleware retries a 5xx).
    error_statuses: ClassVar[frozenset[int]] = frozenset()
    #: IMAGESEARCH_QUOTA and IMAGESEARCH_QUOTA_MARGIN when they are not set: the article's 1000 calls an
    #: hour, with a second of margin (bench/bench_quota.py).
    default_quota: ClassVar[str] = "1000/3600"
    default_quota_margin: ClassVar[float] = 1.0

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        #: The app keys of IMAGESEARCH_APP_KEYS, when a pool is given: a call is signed with the one it
        #: was booked on (pipeline.pacing.apps.APP_META_KEY); set by ``load_gateway``.
        self.pool: tuple[Credentials, ...] = ()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Gateway:
        return cls(Credentials.from_settings(crawler))

    @classmethod
    def check_settings(cls, settings: BaseSettings) -> None:
        """Raise ConfigurationError for a setting of this gateway's own that cannot work (before any call)."""
        return None  # most gateways have no settings of their own

    def __repr__(self) -> str:
        return f"{type(self).__name__}(app_key=...)"

    # -- calls -----------------------------------------------------------------------------------

    @abstractmethod
    def build_search(self, image_data: str | ImageRef, page: int, cat: str | None) -> ApiCall:
        """The call searching ``image_data``: a picture (a file prepared when the call is sent, or Base64
        JPEG), a platform URL or an uploaded image's reference."""

    @abstractmethod
    def build_upload(self, image: bytes | ImageRef) -> ApiCall:
        """The call that makes a picture (a prepared JPEG, or a file prepared when the call is sent)
        searchable, for a gateway that ``uploads_local_images``."""

    @abstractmethod
    def to_request(self, call: ApiCall, endpoint: str, **kwargs: Any) -> Request:
        """An unsigned Scrapy request carrying ``call`` to ``endpoint``; ``kwargs`` go to the Request."""

    @abstractmethod
    def sign(self, request: Request) -> Request:
        """The copy of ``request`` that is sent: credentials, a fresh timestamp and signature.

        Called for every attempt at the moment it is sent; the copy goes to the network and
        nowhere else (not to logs, stats, retries or the journal).
        """

    @staticmethod
    def call_meta(call: ApiCall, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The meta of a call's request: the caller's (taken out of ``kwargs``), the call's method and key
        (which mark it as a gateway call and journal its answer), and no redirect: a redirect would be
        built from the signed URL, and a gateway that redirects is not one we can trust with a secret."""
        meta = {
            **(kwargs.pop("meta", None) or {}), METHOD_META_KEY: call.method, CALL_KEY_META_KEY: call.key,
            "dont_redirect": True,
        }
        if call.image is not None:
            meta[IMAGE_META_KEY] = (call.image_param, call.image)
        return meta

    def credentials_for(self, request: Request) -> Credentials:
        """The credentials ``request`` is signed with: those of the pool key its call was booked on, else
        IMAGESEARCH_APP_KEY's."""
        index = request.meta.get(APP_META_KEY)
        if isinstance(index, int) and 0 <= index < len(self.pool):
            return self.pool[index]
        return self.credentials

    def secrets(self) -> tuple[str, ...]:
        """The strings no log line may show: every key and secret the crawl may sign with."""
        pool = tuple(text for credentials in self.pool for text in (credentials.key, credentials.secret))
        return (self.credentials.key, self.credentials.secret, *pool)

    def picture_problem(self, original: tuple[int, int], sent: tuple[int, int]) -> tuple[str, str] | None:
        """``(reason, detail)`` when the gateway is known to refuse this picture (its ``original`` size, and the
        size of the JPEG the crawl sends, in pixels): the seed is rejected before any call is spent on it.
        None: it may be sent."""
        return None

    @property
    def last_page(self) -> int | None:
        """The last page number the API can serve (aliyun's Start ends at 499); None when it sets no end."""
        return None

    def has_more_pages(self, page: int, items_on_page: int, *, max_pages: int, page_size: int,
                       page_count: int | None, total_results: int | None) -> bool:
        """Whether a search has a page after ``page``, which held ``items_on_page`` hits: the paging rule of
        the crawl and of ``scrapy serve`` alike. Up to ``max_pages`` (and the gateway's last page), and while
        this page had hits: below the page count when the answer gives one, else while this page was full
        and page x page_size < total_results (or, when the answer gives no total, while the pages are full)."""
        last = self.last_page
        if page >= max_pages or (last is not None and page >= last) or not items_on_page:
            return False
        if page_count is not None:
            return page < page_count
        if items_on_page < page_size:
            return False
        return total_results is None or page * page_size < total_results

    def sandbox_endpoint(self, base_url: str) -> str:
        """IMAGESEARCH_ENDPOINT for the embedded sandbox listening at ``base_url`` (``http://host:port``)."""
        return base_url

    # -- answers ---------------------------------------------------------------------------------

    @abstractmethod
    def parse_error(self, response: Response) -> GatewayError | None:
        """The error this answer carries (``MalformedResponse`` for a body that is not the API's), else None."""

    @abstractmethod
    def parse_search(self, response: Response) -> SearchPage:
        """The page of a search answer; raises ``GatewayError``."""

    @abstractmethod
    def parse_upload(self, response: Response) -> str:
        """The image reference (id or URL) an upload answer gives, for ``build_search``; raises ``GatewayError``."""

    def ban_seconds(self, error: GatewayError) -> float | None:
        """How long a quota error says calls are banned for, if it says (None: IMAGESEARCH_THROTTLE_DEFAULT_WAIT)."""
        return None

    def daily_quota(self, response: Response) -> DailyQuota | None:
        """The app's calls today, if the answer (success or error) says."""
        return None

    def limit_name(self, error: GatewayError) -> str | None:
        """Which limit a quota error (throttle or stop) is, in words, if the gateway says."""
        return None

    #: When a day starts for the gateway's daily quota, in words (see quota_resets_at).
    quota_day_starts: ClassVar[str] = "00:00 China time"

    def quota_resets_at(self, now: datetime | None = None) -> datetime:
        """When a spent daily quota is renewed: the next midnight, China time (both platforms count so)."""
        now = (now or datetime.now(UTC)).astimezone(CHINA_TZ)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=CHINA_TZ)
        return midnight.astimezone(UTC)

    # -- what to tell the user -------------------------------------------------------------------

    def fix_hint(self, error: GatewayError) -> str:
        """One sentence on what to change after a fatal ``error``."""
        return self.fix_hints.get(error.code, f"see {self.name}'s documentation for this code")

    def fatal_message(self, error: GatewayError, method: str) -> str:
        """The one line logged when a fatal error stops the crawl."""
        what = "refused the credentials" if error.code in self.credential_codes else f"refused {method}"
        return f"gateway {what} ({error.describe()}): {self.fix_hint(error)}"

    # -- helpers for implementations -------------------------------------------------------------

    @staticmethod
    def json_object(response: Response) -> dict[str, Any]:
        """The answer's JSON object (parsed once per response); MalformedResponse for any other body."""
        if not isinstance(response, TextResponse):
            raise MalformedResponse(f"non-text body ({len(response.body)} bytes)")
        try:
            body = response.json()  # cached on the response: the middleware and the spider share one parse
        except ValueError:
            raise MalformedResponse(f"body is not JSON ({len(response.body)} bytes)") from None
        if not isinstance(body, dict):
            raise MalformedResponse("body is JSON but not an object")
        return body


def count(value: Any, default: int) -> int:
    """A count the gateway may send as a number or a string ("37"); ``default`` when absent or unreadable."""
    try:
        return max(0, int(str(value).strip()))
    except (TypeError, ValueError):
        return default


def gateway_class(name: str) -> type[Gateway]:
    """The Gateway class IMAGESEARCH_GATEWAY names (a short name of GATEWAYS, or an import path)."""
    path = GATEWAYS.get(str(name).strip().lower(), str(name).strip())
    try:
        cls = load_object(path)
    except (ImportError, AttributeError, NameError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"IMAGESEARCH_GATEWAY={name!r} is neither {' nor '.join(GATEWAYS)} nor an importable class "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Gateway)):
        raise ConfigurationError(f"IMAGESEARCH_GATEWAY={name!r} is not a pipeline.gateways.base.Gateway")
    return cls


def quota_setting(settings: BaseSettings) -> str:
    """IMAGESEARCH_QUOTA, or the gateway's own default when it is not set (``""``: calls are not paced)."""
    value = settings.get("IMAGESEARCH_QUOTA")
    if value is None:
        return gateway_class(settings.get("IMAGESEARCH_GATEWAY") or "top").default_quota
    return str(value).strip()


def quota_margin_setting(settings: BaseSettings) -> Any:
    """IMAGESEARCH_QUOTA_MARGIN, or the gateway's own default when it is not set."""
    value = settings.get("IMAGESEARCH_QUOTA_MARGIN")
    if value is None or (isinstance(value, str) and not value.strip()):
        return gateway_class(settings.get("IMAGESEARCH_GATEWAY") or "top").default_quota_margin
    return value


def load_gateway(crawler: Crawler) -> Gateway:
    """The gateway named by the ``IMAGESEARCH_GATEWAY`` setting, built from the crawler."""
    gateway = build_from_crawler(gateway_class(crawler.settings.get("IMAGESEARCH_GATEWAY") or "top"), crawler)
    assert isinstance(gateway, Gateway)
    if crawler.settings.getlist("IMAGESEARCH_APP_KEYS"):
        gateway.pool = tuple(app.credentials for app in app_pool(crawler.settings, quota_setting(crawler.settings)))
    return gateway
