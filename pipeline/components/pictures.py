"""The listings' main pictures, fetched with Scrapy's FilesPipeline, fingerprinted for the offer groups.

Each hit's ``pic_url``, without the CDN's size or format suffix (pipeline/pictures.py), is fetched once into
IMAGESEARCH_PICTURES_STORE (``default_store``: ``_pictures/`` of DATASET_DIR), a cache keyed by that URL: a picture
fetched less than IMAGESEARCH_PICTURES_EXPIRES days ago is not fetched again (FilesPipeline's ``uptodate``),
so a daily refresh fetches only the new ones. Its ``pic_hash`` and ``pic_colour`` go on the hit. Picture
downloads are not API calls: no quota, no signature, none of the gateway's middleware; they have a download
slot of their own (``pictures`` in DOWNLOAD_SLOTS: the CDN's concurrency and delay) and their own retries. A
picture that cannot be fetched or decoded leaves the hit without a fingerprint, is counted
(``pictures/missing``) and never fails the run.

Stats: ``pictures/fingerprinted``, ``pictures/missing``, and FilesPipeline's ``file_status_count/downloaded``
and ``file_status_count/uptodate``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.exceptions import NotConfigured
from scrapy.http.request import NO_CALLBACK
from scrapy.pipelines.files import FilesPipeline
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

from items.scrapy_items import ProductHit, SeedSummary, item_kind
from pipeline.pictures import PictureError, fingerprint, picture_url

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.pipelines.media import FileInfoOrError, MediaPipeline
    from scrapy.settings import BaseSettings
    from twisted.python.failure import Failure

logger = logging.getLogger(__name__)

#: The picture store's directory in DATASET_DIR, when IMAGESEARCH_PICTURES_STORE does not name one.
PICTURES_DIR = "_pictures"
#: The download slot of the pictures (DOWNLOAD_SLOTS["pictures"] sets its concurrency and delay).
PICTURES_SLOT = "pictures"


def default_store(settings: BaseSettings) -> str:
    """``_pictures/`` of DATASET_DIR; with feeds of the user's own (no datasets written), the user's cache
    ($XDG_CACHE_HOME, ~/.cache, /taobao-imagesearch/pictures)."""
    if settings.getdict("FEEDS"):
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return str(Path(base) / "taobao-imagesearch" / "pictures")
    return str(Path(settings.get("DATASET_DIR") or ".") / PICTURES_DIR)


class ListingPicturesPipeline(FilesPipeline):
    """Fetches each hit's main picture once (a cache with an expiry) and puts its fingerprint on the hit."""

    def __init__(self, store_uri: str, *, crawler: Crawler) -> None:
        super().__init__(store_uri, crawler=crawler)
        settings = crawler.settings
        self.expires = settings.getint("IMAGESEARCH_PICTURES_EXPIRES", 30)
        self.retry_times = settings.getint("IMAGESEARCH_PICTURES_RETRY_TIMES", 1)
        self.timeout = settings.getfloat("IMAGESEARCH_PICTURES_TIMEOUT", 20.0)
        self.root = Path(store_uri)
        #: Fingerprint by stored file, for the pictures several hits share.
        self._fingerprints: dict[str, tuple[str, str] | None] = {}
        #: The pictures that could not be fetched or read, each counted once.
        self._missing: set[str] = set()
        #: Hits waiting for their picture, by (seed, view), and the seeds' rows waiting for them.
        self._pending: dict[tuple[Any, Any], int] = {}
        self._waiters: dict[tuple[Any, Any], list[Deferred[None]]] = {}

    def open_spider(self, spider: Any = None) -> None:
        super().open_spider()
        self.crawler.stats.set_value("pictures/enabled", True)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("IMAGESEARCH_PICTURES", True):
            raise NotConfigured("IMAGESEARCH_PICTURES is off")
        store = settings.get("IMAGESEARCH_PICTURES_STORE") or default_store(settings)
        if "://" in store and not store.startswith("file://"):
            raise NotConfigured(f"IMAGESEARCH_PICTURES_STORE={store!r}: give a local directory")
        return cls(store.removeprefix("file://"), crawler=crawler)

    async def process_item(self, item: Any) -> Any:  # type: ignore[override]  # without the deprecated spider
        """A hit waits for its picture; a seed's row waits for its hits that do (a shared run acks a seed's
        search once its row is staged: its hits must be staged before it)."""
        kind = item_kind(item)
        if kind is SeedSummary:
            key = (item.get("seed_id"), item.get("view"))
            while self._pending.get(key):
                waiter: Deferred[None] = Deferred()
                self._waiters.setdefault(key, []).append(waiter)
                await maybe_deferred_to_future(waiter)
            return item
        if kind is not ProductHit:
            return item
        key = (item.get("seed_id"), item.get("view"))
        self._pending[key] = self._pending.get(key, 0) + 1
        try:
            return await super().process_item(item)
        finally:
            self._pending[key] -= 1
            if not self._pending[key]:
                del self._pending[key]
                for waiter in self._waiters.pop(key, []):
                    waiter.callback(None)

    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        if item_kind(item) is not ProductHit or not item.get("pic_url"):
            return []
        return [Request(picture_url(item["pic_url"]), callback=NO_CALLBACK, dont_filter=True, meta={
            "download_slot": PICTURES_SLOT, "max_retry_times": self.retry_times, "download_timeout": self.timeout,
        })]

    def file_path(self, request: Request, response: Response | None = None,
                  info: MediaPipeline.SpiderInfo | None = None, *, item: Any = None) -> str:
        """``full/<sha1 of the picture's URL>``: one file a picture, whatever size or format a hit named."""
        return f"full/{hashlib.sha1(request.url.encode()).hexdigest()}"

    # A picture that cannot be fetched is no error of the run: both hooks below answer "no file" (None)
    # rather than raise, which MediaPipeline would log with its traceback, once a picture.

    async def media_downloaded(self, response: Response, request: Request, info: MediaPipeline.SpiderInfo, *,
                               item: Any = None) -> Any:
        if response.status != 200 or not response.body:
            logger.debug("listing picture %s not fetched: HTTP %d%s", request.url, response.status,
                         "" if response.body else ", empty")
            return None
        path = self.file_path(request, response=response, info=info, item=item)
        target = self.root / path
        temporary = target.with_name(f".{target.name}.tmp")
        try:  # whole or not at all (a full disk must not leave a cut picture the next run takes as fetched)
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(response.body)
            # Stamped by this process's clock, which the expiry compares it with (FilesPipeline's stat of the
            # file): a clock moved ahead, as `make test-clock` does, otherwise took every picture for expired.
            now = time.time()
            os.utime(temporary, (now, now))
            os.replace(temporary, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            logger.debug("listing picture %s not stored in %s: %s", request.url, self.root, exc)
            return None
        self.inc_stats("downloaded")
        return {"url": request.url, "path": path, "checksum": hashlib.md5(response.body).hexdigest(),
                "status": "downloaded"}

    def media_failed(self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo) -> Any:
        """Counted at the item (``pictures/missing``); logged once at the end, not a warning a picture."""
        logger.debug("listing picture %s not fetched: %s", request.url, failure.value)
        return None

    def item_completed(self, results: list[FileInfoOrError], item: Any, info: MediaPipeline.SpiderInfo) -> Any:
        if item_kind(item) is not ProductHit or not results:
            return item
        ok, result = results[0]
        found = self._fingerprint(result["path"]) if ok and isinstance(result, dict) else None
        if found is None:
            url = picture_url(str(item["pic_url"]))
            if url not in self._missing:
                self._missing.add(url)
                self.crawler.stats.inc_value("pictures/missing")
            return item
        self.crawler.stats.inc_value("pictures/fingerprinted")
        item["pic_hash"], item["pic_colour"] = found
        return item

    def _fingerprint(self, path: str) -> tuple[str, str] | None:
        if path not in self._fingerprints:
            try:
                self._fingerprints[path] = fingerprint((self.root / path).read_bytes())
            except (OSError, PictureError) as exc:
                logger.debug("listing picture %s cannot be fingerprinted: %s", path, exc)
                self._fingerprints[path] = None
                with contextlib.suppress(OSError):
                    (self.root / path).unlink()  # not kept as fetched: the next run fetches it again
        return self._fingerprints[path]

    def close_spider(self) -> None:
        missing = self.crawler.stats.get_value("pictures/missing", 0)
        if missing:
            logger.warning("%d listing pictures could not be fetched or read (the first: %s); their listings have "
                           "no pic_hash and are offers of their own", missing, next(iter(self._missing), ""))
