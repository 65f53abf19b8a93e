"""The ``imagesearch`` spider: seed photos in, ``ProductHit`` and ``SeedSummary`` items out, via the gateway.

``scrapy crawl imagesearch -a seeds=SPEC[,SPEC...] [-a pages=N] [-a cat=ID]``; see pipeline/seeds.py
for SPECs. Each distinct image (content + category) is searched once, page after page while the
answers say there are more (up to ``pages``), and its hits are credited to every seed carrying it.
Every seed ends in exactly one SeedSummary: ``ok``, ``rejected`` (refused before any call) or
``failed`` (the gateway refused it, or calls kept failing).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scrapy import Request, Spider, signals
from scrapy.exceptions import CloseSpider, DontCloseSpider
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.asyncio import sleep

from items.scrapy_items import ProductHit, SeedSummary
from pipeline.components.checks import check_settings
from pipeline.components.datasetrun import DatasetRun
from pipeline.components.extensions import resolve_endpoint
from pipeline.configuration import list_setting, whole_number
from pipeline.crop import format_box
from pipeline.errors import (
    GATEWAY_FATAL_REASON,
    GATEWAY_UNREACHABLE_REASON,
    SHARED_MISMATCH_REASON,
    STOP_MESSAGE_STAT,
    ConfigurationError,
    GatewayError,
    GatewayStopped,
    ImageRejected,
    MalformedResponse,
    crawl_stopping,
)
from pipeline.gateways.actions import FATAL, ErrorActions
from pipeline.gateways.base import HIT_FIELDS, METHOD_META_KEY, load_gateway
from pipeline.images import ImageRef, is_platform_cdn, prepare_image, read_image_file, sha256_hex
from pipeline.monitor.progress import Workload
from pipeline.redaction import Redactor
from pipeline.seeds import Seed, category_id, is_category_id, resolve_seeds
from pipeline.shared.client import SharedRunUnavailable
from pipeline.shared.worker import POLL_SECONDS
from spiders.jobs import FAILED, OK, REJECTED, UNFINISHED, SearchJob, check_arguments, seed_summary

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from twisted.python.failure import Failure

    from pipeline.gateways.base import ApiCall, Gateway
    from pipeline.shared.worker import SharedWorker

logger = logging.getLogger(__name__)

#: Largest seed image the crawl downloads from its URL.
MAX_IMAGE_DOWNLOAD_BYTES = 20 * 1024 * 1024
_MAX_ERROR_MSG = 300


class ImageSearchSpider(Spider):
    name = "imagesearch"

    def __init__(self, seeds: str = "", pages: str | None = None, cat: str | None = None, **kwargs: Any) -> None:
        check_arguments(kwargs)
        super().__init__(**kwargs)
        self.seeds_spec = seeds
        self.pages_arg = pages
        self.cat_arg = cat
        self.jobs: dict[str, SearchJob] = {}
        self.redactor = Redactor(())
        self._unsummarised: dict[str, Seed] = {}
        self._stopped = False
        #: Where downloaded seed images wait for their calls (made at the first download, removed at the end).
        self._spool: Path | None = None
        self.endpoint = ""
        #: Every seed has been read and joined to its search (the progress's estimate is whole from then on).
        self.seeds_read = False
        #: This crawl as a worker of a shared run (pipeline.shared), once start() knows.
        self._shared: SharedWorker | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.configure(crawler)
        crawler.signals.connect(spider.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(spider.spider_closed, signal=signals.spider_closed)
        return spider

    def configure(self, crawler: Crawler) -> None:
        """Check arguments and settings and resolve the seeds; ConfigurationError before any call."""
        settings = crawler.settings
        check_settings(settings)
        pages = self.pages_arg
        self.max_pages = whole_number("pages", pages) if pages is not None else settings.getint("IMAGESEARCH_PAGES")
        self.default_page_size = settings.getint("IMAGESEARCH_PAGE_SIZE")
        self.max_image_side = settings.getint("IMAGESEARCH_MAX_IMAGE_SIDE")
        self.max_image_pixels = settings.getint("IMAGESEARCH_MAX_IMAGE_PIXELS")
        self.cdn_hosts = list_setting(settings, "IMAGESEARCH_CDN_HOSTS")
        self.crop = str(settings.get("IMAGESEARCH_CROP") or "none").strip().lower()
        cat = category_id(self.cat_arg)
        if cat is not None and not is_category_id(cat):
            raise ConfigurationError(
                f"cat={self.cat_arg!r} is not a category id: give digits 0-9, e.g. -a cat=50015374"
            )
        self.gateway: Gateway = load_gateway(crawler)
        # What a gateway's error text may repeat of the credentials stays out of the seeds table.
        self.redactor = Redactor(self.gateway.secrets())
        self.error_actions = ErrorActions.from_settings(settings, self.gateway.error_actions)
        skipped: list[Path] = []
        seeds = resolve_seeds(self.seeds_spec, cat, skipped)
        #: Files of a directory SPEC that are not images Pillow can open (logged as they were skipped).
        self.skipped_files = len(skipped)
        self.seeds = seeds
        self._unsummarised = {seed.key: seed for seed in seeds}
        #: The order a seed was given in (its first photo's, for a seed of several).
        self.seed_rank = {seed_id: rank for rank, seed_id in enumerate(dict.fromkeys(s.seed_id for s in seeds))}
        rejected = sum(seed.rejection is not None for seed in seeds)
        logger.info("%d seeds (%d rejected already), up to %d pages each", len(seeds), rejected, self.max_pages)

    # -- requests --------------------------------------------------------------------------------

    async def start(self) -> AsyncIterator[Any]:
        self.endpoint = resolve_endpoint(self.crawler, self.gateway)
        stats = self.crawler.stats
        stats.set_value("imagesearch/gateway", self.gateway.name)
        if self.skipped_files:
            stats.set_value("imagesearch/seeds/skipped_files", self.skipped_files)
        stats.set_value("imagesearch/endpoint_host", urlsplit(self.endpoint).netloc)
        run = self.crawler.get_extension(DatasetRun)
        shared = self._shared = run.shared if run is not None else None
        jobs: list[SearchJob] = []
        if shared is not None:
            self._unsummarised = {}  # a shared run's worker answers for the seeds of the searches it leases
            for seed in self.seeds:
                self._join_shared_job(seed, jobs)
            self.seeds_read = True
            async for output in self._shared_start(shared, jobs):
                yield output
            return
        for seed in self.seeds:
            for output in self._guarded([seed], None, self._join_job(seed, jobs)):
                yield output
        self.seeds_read = True
        for job in jobs:
            # Scrapy's lazy start: the next seed is prepared when the downloader has room, so
            # the requests waiting in the scheduler stay about CONCURRENT_REQUESTS, not one a seed.
            if self.crawler.engine is not None and self.crawler.engine.needs_backout():
                await self.crawler.signals.wait_for(signals.scheduler_empty)
            if self._stopped:
                return
            for output in self._guarded(job.seeds, job, self._begin(job)):
                yield output

    def _guarded(self, seeds: list[Seed], job: SearchJob | None, outputs: Iterator[Any]) -> Iterator[Any]:
        """``outputs``, but an unexpected error in preparing a seed fails that seed, not ``start()``:
        an exception out of ``start()`` would end the crawl with every later seed unsearched."""
        try:
            yield from outputs
        except Exception as exc:
            logger.error("Preparing seed %s failed unexpectedly", seeds[0].seed_id, exc_info=True)
            self.crawler.stats.inc_value("imagesearch/errors/internal")
            yield from self._summarise(
                seeds, FAILED, "internal_error", f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_MSG], job
            )

    def _join_job(self, seed: Seed, jobs: list[SearchJob]) -> Iterator[Any]:
        """Attach ``seed`` to the job of its content (a new one if none), or yield its rejection."""
        refused = self._attach(seed, jobs)
        if refused is not None:
            yield from self._summarise([seed], REJECTED, *refused)

    def _attach(self, seed: Seed, jobs: list[SearchJob]) -> tuple[str, str] | None:
        """Attach ``seed`` to the job of its content (a new one if none); else why it is refused before any
        call (code, message)."""
        if seed.rejection is not None:
            return seed.rejection
        sha256 = None
        if seed.url is not None:
            content_key = seed.url
        else:
            assert seed.path is not None
            try:
                sha256 = content_key = sha256_hex(read_image_file(seed.path))
            except ImageRejected as rejection:
                return rejection.reason, rejection.detail
        job_id = f"{content_key}|{seed.cat or ''}" + (f"|{format_box(seed.region)}" if seed.region else "")
        job = self.jobs.get(job_id)
        if job is None:
            job = self.jobs[job_id] = SearchJob(job_id, seed.cat, sha256=sha256, region=seed.region)
            jobs.append(job)
        elif job.seeds:
            logger.info("seed %s has the same image as %s: searched once for both", seed.seed_id, job.seeds[0].seed_id)
        job.seeds.append(seed)
        return None

    # -- a shared run's worker (pipeline.shared) ---------------------------------------------------

    def _join_shared_job(self, seed: Seed, jobs: list[SearchJob]) -> None:
        """``_join_job`` for a shared run: a seed refused before any call becomes a search of its own."""
        rejection: tuple[str, str, str] | None = None
        try:
            refused = self._attach(seed, jobs)
        except Exception as exc:  # as _guarded: this seed fails, the others go on
            logger.error("Preparing seed %s failed unexpectedly", seed.seed_id, exc_info=True)
            self.crawler.stats.inc_value("imagesearch/errors/internal")
            rejection = (FAILED, "internal_error", f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_MSG])
        else:
            if refused is not None:  # not summarised here: the worker that leases its search writes its row
                rejection = (REJECTED, *refused)
        if rejection is not None:
            job = SearchJob(f"seed:{seed.key}", seed.cat, seeds=[seed], rejection=rejection)
            self.jobs[job.job_id] = job
            jobs.append(job)

    async def _shared_start(self, shared: SharedWorker, jobs: list[SearchJob]) -> AsyncIterator[Any]:
        """Register the run's searches (the first worker does), then lease one whenever the downloader has
        room, until every search of the run is done, by whichever worker."""
        if shared.committed_on_disk():
            logger.info("Run %s is already committed in DATASET_DIR: this worker has nothing to do", shared.run_id)
            return
        try:
            status, by = shared.register([(job.job_id, [seed.key for seed in job.seeds]) for job in jobs])
            if status == "committed":
                logger.info("Run %s is already committed (by worker %s): this worker has nothing to do",
                            shared.run_id, by)
                return
            if status == "mismatch":
                self._shared_mismatch(shared)
                return
            for held in shared.held():  # a restarted worker's own leases, not yet expired
                for output in self._take(shared, held):
                    yield output
            while not self._stopped:
                engine = self.crawler.engine
                if engine is not None and engine.needs_backout():
                    await self.crawler.signals.wait_for(signals.scheduler_empty)
                    continue
                leased = shared.lease()
                if leased is None:
                    if shared.drained():
                        return
                    shared.idle()
                    await sleep(POLL_SECONDS)
                    continue
                for output in self._take(shared, leased):
                    yield output
        except SharedRunUnavailable as exc:
            shared.unavailable(exc)

    def _take(self, shared: SharedWorker, job_id: str) -> Iterator[Any]:
        """A leased search: its seeds are this worker's to answer for now."""
        job = self.jobs.get(job_id)
        if job is None:  # the fingerprint makes every worker's searches the same: not expected
            logger.error("Run %s handed out a search this worker does not know: skipped", shared.run_id)
            return
        for seed in job.seeds:
            self._unsummarised[seed.key] = seed
        shared.leased(job_id, [seed.key for seed in job.seeds])
        if job.rejection is not None:
            yield from self._summarise(job.seeds, *job.rejection)
            return
        yield from self._guarded(job.seeds, job, self._begin(job))

    def _shared_mismatch(self, shared: SharedWorker) -> None:
        message = (f"the seeds of this worker are not those run {shared.run_id} was registered with by its first "
                   "worker: give every worker of a run the same -a seeds (and -a cat), or another DATASET_RUN_ID")
        logger.error("%s", message)
        self.crawler.stats.set_value(STOP_MESSAGE_STAT, message)
        self._stopped = True
        raise CloseSpider(SHARED_MISMATCH_REASON)

    def shared_seed_jobs(self) -> dict[tuple[str, int], str]:
        """Each seed photo's search, by (seed, view) (for the committer of a shared run)."""
        return {(seed.seed_id, seed.view): job.job_id for job in self.jobs.values() for seed in job.seeds}

    def _begin(self, job: SearchJob) -> Iterator[Any]:
        """The first call of a job: page 1 of the search, or the upload of an image.

        A URL of the platform's CDN is searched as it is, unless a region or IMAGESEARCH_CROP=auto asks for a
        cut. Any other URL is downloaded here (no call: having the gateway fetch it would spend one) and
        prepared like a local file.
        """
        seed = job.seeds[0]
        if seed.url is not None:
            if is_platform_cdn(seed.url, self.cdn_hosts) and job.region is None and self.crop == "none":
                job.image_data, job.region_source = seed.url, "none"
                yield self._search_request(job, 1)
            else:
                yield Request(
                    seed.url, callback=self.parse_seed_image, errback=self.seed_image_failed,
                    cb_kwargs={"job_id": job.job_id}, dont_filter=True,
                    meta={"download_maxsize": MAX_IMAGE_DOWNLOAD_BYTES},
                )
            return
        assert seed.path is not None
        yield from self._prepared(job, read_image_file(seed.path), seed.path)

    def _prepared(self, job: SearchJob, data: bytes, path: Path) -> Iterator[Any]:
        """Check that a seed's image bytes decode, then send the first call with its file: its search, or its upload.

        The calls carry the file, not the picture: each is prepared from it as the call leaves (so
        memory does not grow with the seeds waiting for their quota slot). Preparing it here as
        well refuses an image that cannot be decoded before any call is spent on it.
        """
        try:
            prepared = prepare_image(data, self.max_image_side, self.max_image_pixels, job.region, self.crop)
        except ImageRejected as rejection:
            yield from self._summarise(job.seeds, REJECTED, rejection.reason, rejection.detail, job)
            return
        job.sha256 = prepared.sha256
        job.searched, job.region_source = prepared.region, prepared.region_source
        job.sent_size, job.photo_size = prepared.size, prepared.oriented_size
        if problem := self.gateway.picture_problem(prepared.original_size, prepared.size):  # it would be refused
            yield from self._summarise(job.seeds, REJECTED, *problem, job)
            return
        del prepared, data
        # The box is the one found now (IMAGESEARCH_CROP=auto's too): each call cuts out the same.
        image = ImageRef(path, job.sha256, self.max_image_side, self.max_image_pixels, region=job.searched)
        if self.gateway.uploads_local_images:
            yield self._request(self.gateway.build_upload(image), job, self.parse_upload)
            return
        job.image_data = image
        yield self._search_request(job, 1)

    def _spooled(self, data: bytes) -> Path:
        """A downloaded seed image, kept in a file of the crawl's own until the crawl ends (its calls read it)."""
        if self._spool is None:
            run = self.crawler.get_extension(DatasetRun)
            scratch = run.scratch_dir() if run is not None else None
            if scratch is None:  # user feeds: no staging of the run's own
                self._spool = Path(tempfile.mkdtemp(prefix="imagesearch-seed-images-"))
            else:
                scratch.mkdir(parents=True, exist_ok=True)
                self._spool = Path(tempfile.mkdtemp(prefix="seed-images-", dir=scratch))
        path = self._spool / sha256_hex(data)
        path.write_bytes(data)
        return path

    def _request(self, call: ApiCall, job: SearchJob, callback: Any, **cb_kwargs: Any) -> Request:
        return self.gateway.to_request(
            call,
            self.endpoint,
            callback=callback,
            errback=self.call_failed,
            cb_kwargs={"job_id": job.job_id, **cb_kwargs},
            dont_filter=True,
        )

    def _search_request(self, job: SearchJob, page: int) -> Request:
        assert job.image_data is not None
        return self._request(
            self.gateway.build_search(job.image_data, page, job.cat), job, self.parse_search, page=page
        )

    # -- answers ---------------------------------------------------------------------------------

    def parse_seed_image(self, response: Response, job_id: str) -> Iterator[Any]:
        """A seed image downloaded from its URL: prepared like a local file, then searched or uploaded."""
        job = self.jobs.get(job_id)
        if job is None or self._stopped:
            return
        try:
            path = self._spooled(response.body)
        except OSError as exc:
            yield from self._summarise(job.seeds, REJECTED, "unreadable_file",
                                       f"cannot keep the downloaded image: {exc.strerror or exc}", job)
            return
        yield from self._guarded(job.seeds, job, self._prepared(job, response.body, path))

    def seed_image_failed(self, failure: Failure) -> Iterator[Any]:
        """Errback of a seed image download: the seed is rejected (no call was spent on it)."""
        request = failure.request  # type: ignore[attr-defined]
        job = self.jobs.get(request.cb_kwargs.get("job_id", ""))
        if job is None or self._stopped:
            return
        if isinstance(failure.value, HttpError):
            detail = f"HTTP {failure.value.response.status} from {request.url}"
        else:
            detail = f"{type(failure.value).__name__} fetching {request.url}: {failure.value}"
        yield from self._summarise(job.seeds, REJECTED, "image_unreachable", detail[:_MAX_ERROR_MSG], job)

    def parse_upload(self, response: Response, job_id: str) -> Iterator[Any]:
        job = self.jobs.get(job_id)
        if job is None or self._stopped:
            return
        try:
            job.image_data = self.gateway.parse_upload(response)
        except GatewayError as error:
            yield from self._gateway_error(job, error, response)
            return
        yield self._search_request(job, 1)

    def parse_search(self, response: Response, job_id: str, page: int) -> Iterator[Any]:
        job = self.jobs.get(job_id)
        if job is None or self._stopped:
            return
        try:
            result = self.gateway.parse_search(response)
        except GatewayError as error:
            yield from self._gateway_error(job, error, response)
            return
        self.crawler.stats.inc_value("imagesearch/pages")
        job.pages_fetched += 1
        if page == 1:
            job.total_results = result.total_results
            job.page_size = result.page_size or len(result.items) or self.default_page_size
            job.page_count = result.page_count
            if result.main_region is not None:
                job.detected(result.main_region, result.searched_main_region)
        job.items_found += len(result.items)
        crawled_at = datetime.now(UTC)
        for seed in job.seeds:
            for rank, raw in enumerate(result.items, start=1):
                hit = ProductHit({name: raw[name] for name in HIT_FIELDS if name in raw})
                hit.update(
                    seed_id=seed.seed_id,
                    view=seed.view,
                    seed_rank=self.seed_rank[seed.seed_id],
                    page=page,
                    position=(page - 1) * job.page_size + rank,
                    cat=job.cat,
                    crawled_at=crawled_at,
                )
                yield hit
        if self._has_more_pages(job, page, len(result.items)):
            yield self._search_request(job, page + 1)
        else:
            yield from self._summarise(job.seeds, OK, job=job)

    def _has_more_pages(self, job: SearchJob, page: int, items_on_page: int) -> bool:
        """The paging rule (Gateway.has_more_pages, shared with ``scrapy serve``) for this job."""
        return self.gateway.has_more_pages(page, items_on_page, max_pages=self.max_pages, page_size=job.page_size,
                                           page_count=job.page_count, total_results=job.total_results)

    def _gateway_error(self, job: SearchJob, error: GatewayError, response: Response) -> Iterator[Any]:
        """An error answer the middlewares passed on: fatal stops the crawl, anything else fails the job."""
        if isinstance(error, MalformedResponse) and not self.crawler.stats.get_value("imagesearch/answers"):
            self._unreachable(f"its answers are not the {self.gateway.name} gateway's ({error.describe()})")
        if self.error_actions.action_for(error) != FATAL:
            yield from self._summarise(job.seeds, FAILED, error.code, error.describe()[:_MAX_ERROR_MSG], job)
            return
        method = str(response.meta.get(METHOD_META_KEY, "the call"))
        message = self.gateway.fatal_message(error, method)
        logger.error(message)
        self.crawler.stats.set_value("imagesearch/fatal", error.code)
        self._stopped = True
        yield from self._summarise(job.seeds, FAILED, error.code, error.describe()[:_MAX_ERROR_MSG], job)
        stopped = f"not searched: the crawl stopped ({message})"[:_MAX_ERROR_MSG]
        for other in self.jobs.values():
            yield from self._summarise(other.seeds, FAILED, error.code, stopped, other)
        yield from self._summarise(list(self._unsummarised.values()), FAILED, error.code, stopped)
        raise CloseSpider(GATEWAY_FATAL_REASON)

    def _unreachable(self, why: str) -> None:
        """The gateway has not answered once and a call is given up: stop the crawl, resumable, exit 7.

        Every later call would fail alike: its seeds are not marked failed, the run is not committed,
        and JOBDIR is kept, so the same command carries on once the endpoint answers.
        """
        host = urlsplit(self.endpoint).netloc or self.endpoint
        message = (f"the gateway at {host} never answered: {why.rstrip('. ')}: check IMAGESEARCH_ENDPOINT "
                   "and the network; nothing was committed, and the same command starts again from here")
        logger.error("%s", message)
        self.crawler.stats.set_value(STOP_MESSAGE_STAT, message)
        self._stopped = True
        self.crawler.signals.send_catch_log(signal=crawl_stopping)
        raise CloseSpider(GATEWAY_UNREACHABLE_REASON)

    def call_failed(self, failure: Failure) -> Iterator[Any]:
        """Errback: the call could not be completed (HTTP error or network failure after the retries)."""
        request = failure.request  # type: ignore[attr-defined]
        job = self.jobs.get(request.cb_kwargs.get("job_id", ""))
        if job is None or self._stopped or failure.check(GatewayStopped):
            return  # the fatal error that stopped the crawl summarises this job's seeds
        if isinstance(failure.value, ImageRejected):  # its file, read as the call left: no call was sent
            yield from self._summarise(job.seeds, REJECTED, failure.value.reason, failure.value.detail, job)
            return
        retries = request.meta.get("retry_times", 0)
        if isinstance(failure.value, HttpError):
            status = failure.value.response.status
            code, message = f"http_{status}", f"HTTP {status} after {retries} retries"
        else:
            exc = failure.value
            code, message = "download_error", f"{type(exc).__name__} after {retries} retries: {exc}"
        self.crawler.stats.inc_value(f"imagesearch/errors/{code}")
        if not self.crawler.stats.get_value("imagesearch/answers"):
            self._unreachable(self.redactor.redact(message))
        yield from self._summarise(job.seeds, FAILED, code, message[:_MAX_ERROR_MSG], job)

    # -- progress --------------------------------------------------------------------------------

    def _first_calls(self, seed: Seed) -> int:  # before page 1: the upload, for a gateway that uploads first
        cdn = seed.url is not None and is_platform_cdn(seed.url, self.cdn_hosts)
        return int(self.gateway.uploads_local_images and not cdn)

    def workload(self) -> Workload:
        """What is left to search (for pipeline.monitor.progress.CrawlProgress): the calls still needed for the
        pages known so far, and an estimate for the searches not begun (their pages as the mean of the
        searches whose page count is known; IMAGESEARCH_PAGES / -a pages before any is)."""
        planned: list[int] = []
        known = not_begun_searches = not_begun_seeds = first_calls = 0
        joined = 0
        for job in self.jobs.values():
            if job.rejection is not None:
                continue
            pages = job.planned_pages(self.max_pages, self.gateway.last_page)
            if pages is not None:
                planned.append(pages)
            open_seeds = sum(seed.key in self._unsummarised for seed in job.seeds)
            joined += open_seeds
            if not open_seeds:
                continue
            if pages is None:
                not_begun_searches += 1
                not_begun_seeds += open_seeds
                if job.image_data is None:
                    first_calls += self._first_calls(job.seeds[0])
            else:
                known += pages - job.pages_fetched
        # Seeds not yet read (the crawl's first moments): each a search of its own, as far as is known.
        unread = 0 if self.seeds_read else max(0, len(self._unsummarised) - joined)
        not_begun_searches += unread
        not_begun_seeds += unread
        first_calls += unread if self.gateway.uploads_local_images else 0
        run_searches = None
        if self._shared is not None:
            # The run's searches no worker has begun are this worker's to share: the ETA is the run's,
            # on the quota every worker books from.
            done, total, unleased = self._shared.run_progress()
            run_searches = (done, total)
            not_begun_searches += unleased
            not_begun_seeds += unleased  # about one seed a search
            first_calls += unleased if self.gateway.uploads_local_images else 0
        pages_each = sum(planned) / len(planned) if planned else self.max_pages
        return Workload(
            seeds=len(self.seeds),
            known_calls=known,
            estimated_calls=round(not_begun_searches * pages_each) + first_calls,
            seeds_not_begun=not_begun_seeds,
            run_searches=run_searches,
        )

    # -- seed summaries --------------------------------------------------------------------------

    def _summarise(self, seeds: list[Seed], status: str, error_code: str | None = None, error_msg: str | None = None,
                   job: SearchJob | None = None) -> Iterator[SeedSummary]:
        """One SeedSummary per seed not yet summarised (so never two for one seed)."""
        for seed in seeds:
            if self._unsummarised.pop(seed.key, None) is None:
                continue
            self.crawler.stats.inc_value(f"imagesearch/seeds/{status}")
            message = self.redactor.redact(error_msg) if error_msg else error_msg
            yield seed_summary(seed, self.seed_rank[seed.seed_id], status, error_code, message, job)

    def spider_idle(self) -> None:
        """Safety net: a seed still without a summary once nothing is left to do gets a ``failed`` one."""
        if not self._unsummarised or self._stopped:
            return
        logger.error("%d seeds were left without an outcome: recording them as failed", len(self._unsummarised))
        self.crawler.engine.crawl(Request("data:,", callback=self._summarise_lost, dont_filter=True))
        raise DontCloseSpider

    def _summarise_lost(self, response: Response) -> Iterator[SeedSummary]:
        yield from self._summarise(
            list(self._unsummarised.values()), FAILED, "lost", "no answer was recorded for this seed"
        )

    def unfinished_outcomes(self, reason: str) -> list[SeedSummary]:
        """A ``seeds`` row for every seed still without one when the crawl stops (status ``unfinished``,
        error_code the finish reason), with what its search got so far: so that a committed run's
        ``seeds`` covers every seed of its ``matches``. DatasetRun stages them before its commit."""
        run_id = self.crawler.settings.get("DATASET_RUN_ID")
        if not self._unsummarised:
            return []
        logger.warning("The crawl ended (%s) before %d seeds were searched to the end: their seeds rows say "
                       "\"unfinished\"", reason, len(self._unsummarised))
        rows: list[SeedSummary] = []
        for job in list(self.jobs.values()):
            rows += self._summarise(list(job.seeds), UNFINISHED, reason,
                                    f"the crawl stopped ({reason}) before this seed's search ended", job)
        rows += self._summarise(list(self._unsummarised.values()), UNFINISHED, reason,
                                f"the crawl stopped ({reason}) before this seed was searched")
        for row in rows:
            row["run_id"] = run_id
        return rows

    def spider_closed(self, reason: str) -> None:
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
