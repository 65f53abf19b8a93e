"""The dataset run of a crawl, as Scrapy components: ``DatasetAddon`` resolves the run, ``DatasetRun`` (an
extension) takes its locks, stages the crawl's rows and commits them when the crawl ends.

Every other component asks the run (the ``DatasetRun`` extension) rather than building a path of it.
What a run is and how it is committed is pipeline.runs'; a shared run's worker is pipeline.shared's.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.job import job_dir

from exporters.layout import (
    INCOMPLETE_DIR,
    safe_component,
)
from exporters.storage import atomic_write_bytes
from items.schema import HITS, SEEDS
from items.scrapy_items import ProductHit, SeedSummary, item_kind
from pipeline.configuration import csv_dialect, dataset_formats
from pipeline.errors import (
    GATEWAY_UNREACHABLE_REASON,
    STORAGE_FAILED_REASON,
    ConfigurationError,
    RunLocked,
    RunStorageFailed,
    run_committed,
    storage_message,
)
from pipeline.pictures import MAX_COLOUR, MAX_DISTANCE
from pipeline.runs.commit import commit_staged, finish_interrupted_commits
from pipeline.runs.identity import (
    COMMIT_RECORD,
    JOBDIR_LOCK_FILE,
    SHARED_MARKER,
    RunInfo,
    forget_finished_run,
    manifest_path,
    remember,
    remembered,
    resolve_run,
    staging_dir,
)
from pipeline.runs.locks import RunLock, run_lock
from pipeline.runs.quality import check_settings as quality_checks
from pipeline.runs.staging import STAGE_ROWS, STAGED_TABLES, PartStage, StagedTable, seed_statuses
from pipeline.runs.tables import merge_worker_parts
from pipeline.seeds import seed_key
from pipeline.shared.client import SharedRunUnavailable
from pipeline.shared.queue import default_worker_name
from pipeline.shared.worker import SharedWorker

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)


class DatasetAddon:
    """Enabled in ADDONS. ``update_settings`` runs after ``-s`` options are applied, so it sees the final values.

    It resolves the run (DATASET_RUN_ID, else the one JOBDIR remembers, else a new id) and its dt
    partition, publishes both as DATASET_RUN_ID / DATASET_RUN_DATE for the pipelines, and enables
    DatasetRun, which stages the crawl's rows and commits the dataset layout
    ``DATASET_DIR/<format>/<table>/dt=<date>/<run_id>-<NNNNN>.<ext>`` at the end, unless the user
    gave feeds (``-o``/``-O``/FEEDS): then those are written instead, and DatasetRun only holds
    the JOBDIR.
    """

    def update_settings(self, settings: BaseSettings) -> None:
        run = resolve_run(settings)
        # At the priority they already have (settings.py's empty default is "project", above "addon").
        settings.set("DATASET_RUN_ID", run.run_id, priority=settings.getpriority("DATASET_RUN_ID") or "addon")
        settings.set("DATASET_RUN_DATE", run.dt, priority=settings.getpriority("DATASET_RUN_DATE") or "addon")
        settings.setdefault_in_component_priority_dict("EXTENSIONS", DatasetRun, 500)
        if settings.getdict("FEEDS") or settings.get("FEED_URI"):
            logger.info("Dataset run %s: user feeds given, default dataset layout not used", run.run_id)
            return
        try:
            formats = "+".join(dataset_formats(settings))
        except ConfigurationError:
            formats = "?"  # the spider's settings check says what is wrong, in one line
        logger.info("Dataset run %s: writing %s under %s", run.run_id, formats, settings["DATASET_DIR"])


class DatasetRun:
    """The run of this crawl: locks, staging, commit and manifest (enabled by ``DatasetAddon``).

    With feeds of the user's own (``-o``/``-O``) there is no dataset layout: the run only holds the
    JOBDIR lock. Stats: ``dataset/staged/<table>`` (rows staged), ``dataset/rejected/<table>``.
    """

    def __init__(self, crawler: Crawler, run: RunInfo, root: Path | None) -> None:
        self.crawler = crawler
        self.run = run
        self.root = root
        settings = crawler.settings
        self.jobdir = job_dir(settings)
        self.formats = dataset_formats(settings) if root else []
        self.batch_items = settings.getint("DATASET_BATCH_ITEMS")
        self.compression = str(settings.get("PARQUET_COMPRESSION") or "zstd")
        self.csv_dialect = csv_dialect(settings)
        #: The offer groups' thresholds: the largest pic_hash distance and colour distance within a group.
        self.grouping = (settings.getint("IMAGESEARCH_OFFER_MAX_DISTANCE", MAX_DISTANCE),
                         settings.getfloat("IMAGESEARCH_OFFER_MAX_COLOUR", MAX_COLOUR))
        #: The data-quality checks at commit (pipeline/runs/quality.py, IMAGESEARCH_CHECKS).
        self.checks = quality_checks(settings.get("IMAGESEARCH_CHECKS"))
        self.stage_rows = STAGE_ROWS
        #: The manifest once written (the run is committed), for the crawl command's summary.
        self.written: dict[str, Any] | None = None
        #: The run's report, once written.
        self.report: Path | None = None
        #: The one line saying why the run failed (a write that failed), if it did.
        self.failure: str | None = None
        #: The commit is recorded: it can only be finished now (by this crawl, else by the next start).
        self.recorded = False
        self.started_at = datetime.now(UTC)
        self._locks: list[RunLock] = []
        self._staged: dict[str, StagedTable | PartStage] = {}
        #: This crawl as a worker of a shared run (IMAGESEARCH_REDIS_URL), else None.
        self.shared: SharedWorker | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DatasetRun:
        settings = crawler.settings
        run_id, dt = settings.get("DATASET_RUN_ID"), settings.get("DATASET_RUN_DATE")
        if not run_id or not dt:
            raise NotConfigured("DatasetRun needs DATASET_RUN_ID and DATASET_RUN_DATE (set by DatasetAddon)")
        layout = not (settings.getdict("FEEDS") or settings.get("FEED_URI"))
        root = Path(settings["DATASET_DIR"]) if layout else None
        started = remembered(job_dir(settings)).get("started_at") if job_dir(settings) else None
        run = RunInfo(run_id, datetime.fromisoformat(started) if started else datetime.now(UTC), dt)
        extension = cls(crawler, run, root)
        if settings.get("IMAGESEARCH_REDIS_URL"):
            if root is None:
                raise ConfigurationError("IMAGESEARCH_REDIS_URL makes this crawl a worker of a shared run, which "
                                         "writes the dataset layout: leave out -o/-O/FEEDS")
            worker = settings.get("IMAGESEARCH_WORKER") or remembered(job_dir(settings)).get("worker") \
                or default_worker_name()
            extension.shared = SharedWorker(crawler, run_id, staging_dir(root, run_id),
                                            safe_component(str(worker), "worker name"),
                                            close=lambda reason: close_crawl(crawler, reason))
        extension.open()
        crawler.signals.connect(extension.item_scraped, signal=signals.item_scraped)
        if extension.shared is not None:
            crawler.signals.connect(extension.item_dropped, signal=signals.item_dropped)
            crawler.signals.connect(extension.item_dropped, signal=signals.item_error)
            crawler.signals.connect(extension.shared.start_heartbeat, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(extension.engine_stopped, signal=signals.engine_stopped)
        return extension

    @property
    def staging(self) -> Path:
        assert self.root is not None
        return staging_dir(self.root, self.run.run_id)

    def open(self) -> None:
        """Take the locks, finish interrupted commits, and start the staging: before any call is made."""
        try:
            if self.jobdir:
                self._lock(RunLock(Path(self.jobdir) / JOBDIR_LOCK_FILE, f"JOBDIR {self.jobdir}"))
            if self.root is not None and self.shared is not None:
                self._open_shared()
            elif self.root is not None:
                if (self.staging / SHARED_MARKER).exists():
                    raise RunLocked(f"run {self.run.run_id} of {self.root} is a shared run on Redis: give its "
                                    "workers' IMAGESEARCH_REDIS_URL to join it, or choose another DATASET_RUN_ID")
                self._lock(run_lock(self.root, self.run.run_id))
                finish_interrupted_commits(self.root, held=self.run.run_id)
            if self.jobdir:
                remember(self.jobdir, self.run, self.shared.worker if self.shared else None)
        except OSError as exc:
            self.release()
            raise RunStorageFailed(storage_message(exc, Path(self.jobdir or self.root or "."))) from None
        except BaseException:
            self.release()
            raise
        if self.root is None:
            return
        if self.shared is not None:
            try:
                self._staged = {name: PartStage(self.shared.parts, table, name, self.stage_rows)
                                for name, table in STAGED_TABLES.items()}
            except OSError as exc:
                self.release()
                raise RunStorageFailed(storage_message(exc, self.shared.parts)) from None
            self.shared.stages = self._staged
            self.shared.manifest = manifest_path(self.root, self.run.run_id)
            return
        # A part of this run killed before its commit left staged rows: this crawl stages them all again.
        shutil.rmtree(self.staging, ignore_errors=True)
        try:
            self._staged = {
                name: StagedTable(self.staging / f"{name}.parquet", table, self.stage_rows)
                for name, table in STAGED_TABLES.items()
            }
        except OSError as exc:
            self.release()
            raise RunStorageFailed(storage_message(exc, self.staging)) from None

    def _open_shared(self) -> None:
        """A worker of a shared run: no lock of the run (its workers share it; the committer takes it), but
        the staging is marked shared, so that no other crawl's start removes it, and it is kept as it is."""
        assert self.root is not None and self.shared is not None
        finish_interrupted_commits(self.root, held=self.run.run_id)
        try:
            self.shared.queue.ping()
        except SharedRunUnavailable as exc:
            raise ConfigurationError(f"IMAGESEARCH_REDIS_URL: {exc}: start Redis, or fix the URL") from None
        self.staging.mkdir(parents=True, exist_ok=True)
        marker = self.staging / SHARED_MARKER
        if not marker.exists():
            atomic_write_bytes(marker, json.dumps({"run_id": self.run.run_id}).encode("utf-8"))

    def scratch_dir(self) -> Path | None:
        """Where the crawl may keep files it needs only while it runs (downloaded seed images): inside
        the run's staging, which the commit and the next start of the run remove, so that even a
        killed crawl leaves nothing of its own behind for long. ``None`` with user feeds."""
        return self.staging / "scratch" if self.root is not None else None

    def _lock(self, lock: RunLock) -> None:
        lock.acquire()
        self._locks.append(lock)

    def release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()
        self._locks = []

    # -- staging ---------------------------------------------------------------------------------

    def item_scraped(self, item: Any) -> None:
        if not self._staged or self.failure is not None:
            return
        kind = item_kind(item)
        name = HITS.name if kind is ProductHit else SEEDS.name if kind is SeedSummary else None
        if name is None:
            return
        staged = self._staged[name]
        try:
            staged.add(item)
        except Exception as exc:  # noqa: BLE001 - _staging_failed fails the run, logging any non-OSError's traceback
            self._staging_failed(exc, staged.path)
            return
        if self.shared is not None and name == SEEDS.name:
            self.shared.seed_done(seed_key(str(item.get("seed_id")), int(item.get("view") or 1)))

    def item_dropped(self, item: Any) -> None:
        """A shared run's seed whose row was dropped (invalid) has no row to wait for."""
        if self.shared is not None and item_kind(item) is SeedSummary:
            self.shared.seed_done(seed_key(str(item.get("seed_id")), int(item.get("view") or 1)))

    def _staging_failed(self, exc: Exception, path: Path) -> None:
        """Rows could not be staged at ``path``: the run fails (exit 6) with one line, never passing for written."""
        if isinstance(exc, OSError):
            self.fail(storage_message(exc, path))
            return
        logger.error("Staging in %s failed", path, exc_info=exc)
        self.fail(f"cannot stage rows in {path}: {type(exc).__name__}: {exc}")

    def fail(self, message: str) -> None:
        """A write failed: the run is not committed, JOBDIR is kept, and the crawl closes (exit 6)."""
        if self.failure is not None:
            return
        self.failure = message
        logger.error("%s", message)
        self.crawler.stats.set_value("dataset/failure", message)
        close_crawl(self.crawler, STORAGE_FAILED_REASON)

    # -- the end of the crawl --------------------------------------------------------------------

    def spider_closed(self, reason: str) -> None:
        try:
            self._finish(reason)
        finally:
            self.release()

    def engine_stopped(self) -> None:
        self.release()  # a crawl that never opened its spider

    def _finish(self, reason: str) -> None:
        if self.root is None:
            return
        if self.shared is not None:
            self._finish_shared(reason)
            return
        outcomes = getattr(self.crawler.spider, "unfinished_outcomes", None)  # the imagesearch spider's
        for row in outcomes(reason) if outcomes is not None and self._staged else ():
            row["run_started_at"] = self.run.started_at
            self.item_scraped(row)
        failed: list[Exception] = []
        for name, staged in self._staged.items():  # each closed, whatever another's close did (a full disk)
            try:
                staged.close()
            except Exception as exc:  # noqa: BLE001 - as in item_scraped
                failed.append(exc)
                continue
            self.crawler.stats.set_value(f"dataset/staged/{name}", staged.rows_written)
            if staged.rejected:
                self.crawler.stats.set_value(f"dataset/rejected/{name}", staged.rejected)
        if failed:
            self._staging_failed(failed[0], self.staging)
        if self.failure is not None:
            logger.error("Dataset run %s not committed: %s. With JOBDIR the same command resumes it once "
                         "the cause is fixed", self.run.run_id, self.failure)
            return
        if reason == GATEWAY_UNREACHABLE_REASON:
            logger.warning("Dataset run %s not committed: the gateway never answered", self.run.run_id)
            return
        if self.jobdir and reason != "finished":
            logger.warning(
                "Dataset run %s stopped (%s) before it finished: nothing committed. "
                "Run the same command again to resume it from %s", self.run.run_id, reason, self.jobdir,
            )
            return
        if reason != "finished":
            logger.warning(
                "Dataset run %s stopped (%s) before it finished: committing what it has under %s/, marked "
                "\"complete\": false in its manifest (with -s JOBDIR=DIR a stopped run is resumable instead)",
                self.run.run_id, reason, self.root / INCOMPLETE_DIR,
            )
        try:
            self.commit(reason)
        except OSError as exc:
            self.fail(storage_message(exc, self.staging))
            if self.recorded:  # what is left is renames, which the next start finishes
                logger.error("Dataset run %s partly committed: %s. The next crawl on %s, or python -m pipeline.runs "
                             "%s, finishes its commit", self.run.run_id, self.failure, self.root, self.root)
            else:
                logger.error("Dataset run %s not committed: %s", self.run.run_id, self.failure)
        except Exception as exc:  # a bug must not pass for a run that was written
            logger.error("Dataset run %s: the commit failed", self.run.run_id, exc_info=True)
            self.fail(f"the commit failed: {type(exc).__name__}: {exc}")

    def _finish_shared(self, reason: str) -> None:
        """A worker's end: ack what is durable; the one elected commits the run from every worker's parts."""
        assert self.shared is not None and self.root is not None
        try:
            commits = self.shared.finish(reason)
        except OSError as exc:
            self.fail(storage_message(exc, self.shared.parts))
            return
        for name, staged in self._staged.items():
            self.crawler.stats.set_value(f"dataset/staged/{name}", staged.rows_written)
        if self.shared.run_done and self.jobdir and self.failure is None:
            forget_finished_run(self.jobdir)  # its journal is of a run that is done: the next start is a new run
        if not commits or self.failure is not None:
            return
        lock = run_lock(self.root, self.run.run_id)
        lock.acquire(wait=True)  # one committer at a time, whatever Redis says of leases
        try:
            status, who = self.shared.queue.elect()
            if status == "committed" or self.shared.committed_on_disk():
                # Committed already (Redis may not have heard of it, if it was down just then): never again,
                # from parts that the commit removed.
                self.shared.lines.append(f"Run {self.run.run_id} is committed (by worker {who or 'another'})")
                self.shared.queue.committed()
                if self.jobdir:
                    forget_finished_run(self.jobdir)
                return
            if (self.staging / COMMIT_RECORD).exists():  # a committer died half-way: finish its commit
                finish_interrupted_commits(self.root)
            else:
                self.commit("finished")
            self.shared.queue.committed()
        except SharedRunUnavailable as exc:
            self.shared.unavailable(exc)
        except OSError as exc:
            self.fail(storage_message(exc, self.staging))
        except Exception as exc:  # a bug must not pass for a run that was written
            logger.error("Dataset run %s: the commit failed", self.run.run_id, exc_info=True)
            self.fail(f"the commit failed: {type(exc).__name__}: {exc}")
        finally:
            lock.release()

    def commit(self, reason: str) -> None:
        """Build the tables from the staging, then move them in by a durable, resumable commit record."""
        assert self.root is not None

        def recorded() -> None:
            self.recorded = True

        stats = self.crawler.stats.get_stats()
        workers = None
        if self.shared is not None:
            spider_seeds = getattr(self.crawler.spider, "shared_seed_jobs", None)
            seed_jobs: dict[tuple[str, int], str] = spider_seeds() if spider_seeds is not None else {}
            stats, workers = self._shared_stats(stats)
            merge_worker_parts(self.staging, self.shared.queue.owners(), seed_jobs)
            statuses = seed_statuses(self.staging)
            for status in ("ok", "rejected", "failed", "unfinished"):
                stats[f"imagesearch/seeds/{status}"] = statuses.get(status, 0)
        self.written = commit_staged(self.root, self.run, self.formats, self.batch_items, self.compression, reason,
                                     stats, self.started_at, on_record=recorded,
                                     csv_dialect=self.csv_dialect, workers=workers, grouping=self.grouping,
                                     checks=self.checks)
        logger.info("Dataset run %s finished: manifest %s (%d files)", self.run.run_id,
                    manifest_path(self.root, self.run.run_id), len(self.written["files"]))
        self.report_checks(self.written["checks"])
        if self.jobdir:
            forget_finished_run(self.jobdir)
        self.write_report()

    def _shared_stats(self, stats: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The committer's stats with the run's calls (every worker's) in place of its own, and each
        worker's summary, for the manifest."""
        assert self.shared is not None
        workers: dict[str, Any] = self.shared.queue.worker_stats()
        workers[self.shared.worker] = self.shared.summary()
        stats = dict(stats)
        stats["imagesearch/calls"] = sum(int(w.get("calls", 0)) for w in workers.values())
        return stats, workers

    def report_checks(self, results: list[dict[str, Any]]) -> None:
        """Each failed data-quality check in a line (a warning, or an error for one set to fail the run) and in
        the stats (``checks/failed``, ``checks/failed_fail``: the crawl then exits 8)."""
        failed = [result for result in results if not result["passed"]]
        self.crawler.stats.set_value("checks/failed", len(failed))
        self.crawler.stats.set_value("checks/failed_fail", sum(result["on_fail"] == "fail" for result in failed))
        for result in failed:
            level = logging.ERROR if result["on_fail"] == "fail" else logging.WARNING
            logger.log(level, "Check failed: %s%s", result["line"],
                       " (the run is committed, marked; exit 8)" if result["on_fail"] == "fail" else "")

    def write_report(self) -> None:
        """Say the run is committed (the ``run_committed`` signal): the report is written by its receiver
        (pipeline.monitor.report.RunReport, with REPORT_ENABLED), which answers with the report's path."""
        assert self.root is not None
        for _, answer in self.crawler.signals.send_catch_log(signal=run_committed, root=self.root,
                                                             run_id=self.run.run_id):
            if isinstance(answer, Path):
                self.report = answer


def fail_run(crawler: Crawler, message: str) -> None:
    """A write the run depends on failed (its staging, its commit, the JOBDIR journal): stop, exit 6."""
    run = crawler.get_extension(DatasetRun) if crawler._extensions is not None else None
    if run is not None:
        run.fail(message)
        return
    logger.error("%s", message)
    crawler.stats.set_value("dataset/failure", message)
    close_crawl(crawler, STORAGE_FAILED_REASON)


def close_crawl(crawler: Crawler, reason: str) -> None:
    engine = crawler._engine  # None before the crawl starts: then it never starts
    if engine is not None and engine.spider is not None:
        closing = deferred_from_coro(engine.close_spider_async(reason=reason))
        closing.addErrback(lambda failure: logger.error("Closing the crawl failed", exc_info=failure.value))

