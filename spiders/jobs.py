"""The imagesearch spider's searches: one ``SearchJob`` per distinct image (content or URL, plus category),
shared by every seed carrying it, the ``seeds`` row each seed ends with, and the spider's arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from items.scrapy_items import SeedSummary
from pipeline.crop import Box, format_box
from pipeline.errors import ConfigurationError
from pipeline.images import ImageRef
from pipeline.seeds import Seed

OK, REJECTED, FAILED, UNFINISHED = "ok", "rejected", "failed", "unfinished"


@dataclass
class SearchJob:
    """One distinct search (image content or URL, plus category), shared by every seed carrying it."""

    job_id: str
    cat: str | None
    seeds: list[Seed] = field(default_factory=list)
    sha256: str | None = None
    #: What page calls search: the picture's file (prepared as each call leaves), a platform URL or
    #: an uploaded picture's reference.
    image_data: str | ImageRef | None = None
    page_size: int = 0
    total_results: int | None = None
    page_count: int | None = None
    pages_fetched: int = 0
    items_found: int = 0
    #: A shared run's seed refused before any call (status, code, message): a search of its own in the
    #: queue, so that exactly one worker writes its row.
    rejection: tuple[str, str, str] | None = None
    #: The box its seeds ask for (a manifest's region), else None.
    region: Box | None = None
    #: What was searched once the photo was prepared: its box (None: whole), where the box came from, the
    #: sent picture's size; and the product's box the gateway detected (in the photo's pixels).
    searched: Box | None = None
    region_source: str | None = None
    sent_size: tuple[int, int] | None = None
    photo_size: tuple[int, int] | None = None
    main_region: Box | None = None

    def detected(self, box: Box, searched: bool = False) -> None:
        """The gateway's detected product box ``box``, in the sent picture's pixels: kept in the photo's. If
        the gateway ``searched`` that box of a whole photo, it is the box searched (region_source service)."""
        if self.sent_size is None or self.photo_size is None:
            return
        frame = self.searched or (0, 0, *self.photo_size)
        scale = (frame[2] - frame[0]) / self.sent_size[0]
        self.main_region = (frame[0] + round(box[0] * scale), frame[1] + round(box[1] * scale),
                            frame[0] + round(box[2] * scale), frame[1] + round(box[3] * scale))
        if searched and self.region_source == "none" and box != (0, 0, *self.sent_size):
            self.searched, self.region_source = self.main_region, "service"

    def planned_pages(self, max_pages: int, last_page: int | None) -> int | None:
        """How many pages this search will fetch, once its page 1 has answered (None before): at most
        ``max_pages``, and the gateway's ``last_page``."""
        if not self.pages_fetched:
            return None
        if self.page_count is not None:
            pages = self.page_count
        elif self.total_results is not None and self.page_size:
            pages = -(-self.total_results // self.page_size)
        else:  # no total (aliyun): one page more while every page so far was full
            pages = self.pages_fetched + (self.items_found >= self.pages_fetched * self.page_size > 0)
        return max(self.pages_fetched, min(max_pages, last_page or max_pages, pages))


def seed_summary(seed: Seed, seed_rank: int, status: str, error_code: str | None, error_msg: str | None,
                 job: SearchJob | None) -> SeedSummary:
    """The ``seeds`` row of ``seed``: its outcome, and what its search (``job``, if it began) found."""
    return SeedSummary(
        seed_id=seed.seed_id,
        view=seed.view,
        source=seed.source,
        sha256=job.sha256 if job else None,
        status=status,
        error_code=error_code,
        error_msg=error_msg,
        total_results=job.total_results if job else None,
        pages_fetched=job.pages_fetched if job else 0,
        items_found=job.items_found if job else 0,
        region=format_box(job.searched) if job and job.searched else None,
        region_source=job.region_source if job else None,
        main_region=format_box(job.main_region) if job and job.main_region else None,
        seed_rank=seed_rank,
    )


def check_arguments(kwargs: dict[str, Any]) -> None:
    """ConfigurationError for an ``-a`` the spider does not take: a misspelt one (page=2 for pages=2) would
    otherwise be ignored, and the crawl spend calls it was told not to. (scrapyd adds ``-a _job=<job id>``.)"""
    unknown = sorted(set(kwargs) - {"name", "_job"})
    if unknown:
        raise ConfigurationError(
            f"unknown argument -a {unknown[0]}=...: the imagesearch spider takes -a seeds=SPEC[,SPEC...], "
            "-a pages=N and -a cat=ID"
        )
