"""The gateway seam: what the spider asks of an image-search API, whichever vendor speaks it.

A gateway builds the calls (``build_search``, ``build_upload``), turns them into Scrapy requests
(``to_request``) and reads the answers (``parse_search``, ``parse_upload``, ``parse_error``),
raising :class:`~pipeline.errors.GatewayError` for an error answer. The spider never looks at
the wire format; the setting ``IMAGESEARCH_GATEWAY`` picks the implementation.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scrapy.utils.misc import build_from_crawler, load_object

from pipeline.errors import ConfigurationError, GatewayError

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)

#: Request meta key carrying ``ApiCall.key`` of a gateway call (see pipeline/journal.py).
CALL_KEY_META_KEY = "imagesearch_call_key"
#: Request meta key naming the API method of a gateway call; the gateway middlewares (pacing,
#: error actions, signing) act only on such requests.
METHOD_META_KEY = "imagesearch_call"


@dataclass(frozen=True)
class ApiCall:
    """One API call before it is sent: the method name and its (unsigned) business parameters."""

    method: str
    params: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Parameters can hold a Base64 image of a few hundred kilobytes: never print them.
        return f"ApiCall({self.method!r}, params={sorted(self.params)})"

    @property
    def key(self) -> str:
        """A digest of what is asked (method and business parameters, not signature or time): equal calls, one key."""
        payload = json.dumps([self.method, sorted(self.params.items())], ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SearchPage:
    """One page of search results: the hits exactly as the gateway returned them, and its total."""

    items: list[dict[str, Any]]
    total_results: int


class Gateway(ABC):
    """An image-search API. Implementations are built with ``from_crawler`` and must be stateless."""

    #: Short name used in logs.
    name: str = "gateway"
    #: True when a local image must be uploaded (``build_upload(image_bytes=...)``) before it can be
    #: searched, as Onebound's ``item_search_img`` needs; False when ``build_search`` takes its
    #: Base64 JPEG as ``image_data`` (TOP). URLs of the platform's CDN (IMAGESEARCH_CDN_HOSTS) are
    #: searched as they are by every gateway, other URLs are uploaded first.
    uploads_local_images: bool = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Gateway:
        return cls()

    @abstractmethod
    def build_search(self, image_data: str, page: int, cat: str | None) -> ApiCall:
        """The call searching ``image_data`` (Base64 JPEG, platform URL or uploaded image ref)."""

    @abstractmethod
    def build_upload(self, *, image_url: str | None = None, image_bytes: bytes | None = None) -> ApiCall:
        """The call that makes an external image usable as ``image_data``."""

    @abstractmethod
    def to_request(self, call: ApiCall, endpoint: str, **kwargs: Any) -> Request:
        """A Scrapy request carrying ``call`` to ``endpoint``; ``kwargs`` go to the Request (callback, ...)."""

    @abstractmethod
    def parse_error(self, response: Response) -> GatewayError | None:
        """The error this answer carries (``MalformedResponse`` for a body that is not the API's), else None."""

    @abstractmethod
    def parse_search(self, response: Response) -> SearchPage:
        """The page of a search answer; raises ``GatewayError``."""

    @abstractmethod
    def parse_upload(self, response: Response) -> str:
        """The image reference (id or URL) an upload answer gives, usable as ``image_data``; raises ``GatewayError``."""

    def ban_seconds(self, error: GatewayError) -> float | None:
        """How long a quota error says calls are banned for, if it says (None: IMAGESEARCH_THROTTLE_DEFAULT_WAIT)."""
        return None


def load_gateway(crawler: Crawler) -> Gateway:
    """The gateway named by the ``IMAGESEARCH_GATEWAY`` setting (an import path), built from the crawler."""
    name = crawler.settings["IMAGESEARCH_GATEWAY"]
    gateway = build_from_crawler(load_object(name), crawler)
    if not isinstance(gateway, Gateway):
        raise ConfigurationError(f"IMAGESEARCH_GATEWAY={name!r} is not a pipeline.gateways.base.Gateway")
    return gateway
