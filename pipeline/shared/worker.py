"""This crawl as a worker of a shared run: its leases and heartbeat, its part files acked when durable,
and, at its end, the election of the one that commits.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import (
    GATEWAY_FATAL_REASON,
    REDIS_UNAVAILABLE_REASON,
    STOP_MESSAGE_STAT,
    STORAGE_FAILED_REASON,
    error_count,
)
from pipeline.runs.identity import WORKERS_DIR
from pipeline.shared.client import SharedRunUnavailable, client_for, redis_host
from pipeline.shared.queue import SharedQueue, fingerprint

if TYPE_CHECKING:

    from scrapy.crawler import Crawler


logger = logging.getLogger(__name__)


#: How often a worker with nothing to lease asks again (one round trip).
POLL_SECONDS = 0.5


class SharedWorker:
    """This crawl as a worker of a shared run: its leases, its heartbeat, its staged parts, when it acks.

    Built by ``pipeline.components.datasetrun.DatasetRun`` when IMAGESEARCH_REDIS_URL is set. A search is acked (done,
    owned by this worker) only after its seeds' rows are in a part file on disk: a search is ready
    when every seed it carries has its ``seeds`` row staged, and the ready ones are flushed and acked
    together, when the staging holds STAGE_ROWS rows, IMAGESEARCH_REDIS_FLUSH_SECONDS after the
    first became ready, when the worker has nothing left to lease, and at its end.
    Stats: ``shared/leases``, ``shared/taken_over``, ``shared/acked``, ``shared/flushes``,
    ``shared/leases_lost``.
    """

    def __init__(self, crawler: Crawler, run_id: str, staging: Path, worker: str,
                 close: Callable[[str], None]) -> None:
        settings = crawler.settings
        self.crawler = crawler
        #: Closes the crawl with a finish reason (the DatasetRun's, which owns the crawl's end).
        self.close = close
        self.url = str(settings.get("IMAGESEARCH_REDIS_URL"))
        self.worker = worker
        self.run_id = run_id
        self.lease_seconds = settings.getfloat("IMAGESEARCH_REDIS_LEASE_SECONDS")
        self.flush_seconds = settings.getfloat("IMAGESEARCH_REDIS_FLUSH_SECONDS")
        self.redis = client_for(crawler)
        self.queue = SharedQueue(self.redis, run_id, worker, self.lease_seconds)
        self.parts = staging / WORKERS_DIR / worker
        #: Seeds of each leased search still without their seeds row.
        self._open: dict[str, set[str]] = {}
        self._seed_job: dict[str, str] = {}
        #: Searches whose rows are all staged, to ack at the next flush, and since when the first waits.
        self._ready: list[str] = []
        self._ready_since: float | None = None
        self._lost_said: set[str] = set()
        self.stages: dict[str, Any] = {}
        self._heartbeat: Any = None
        #: What the crawl's last lines say of this worker's part (for the crawl command).
        self.lines: list[str] = []
        #: The run is done (committed, or being committed by another worker), as the worker's end found it.
        self.run_done = False
        #: The run's manifest on disk, there once the run is committed (set by DatasetRun).
        self.manifest: Path | None = None

    def committed_on_disk(self) -> bool:
        """The run is committed complete in DATASET_DIR (whatever Redis says: its keys expire)."""
        if self.manifest is None or not self.manifest.is_file():
            return False
        try:
            return json.loads(self.manifest.read_text(encoding="utf-8")).get("complete") is True
        except (OSError, ValueError, AttributeError):
            return False

    def start_heartbeat(self) -> None:
        from twisted.internet import task

        self._heartbeat = task.LoopingCall(self.tick)
        self._heartbeat.start(max(0.05, self.lease_seconds / 4), now=False).addErrback(
            lambda failure: logger.error("The shared run's heartbeat failed", exc_info=failure.value))

    def stop_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None

    def tick(self) -> None:
        """The heartbeat: renew the leases (and say which were lost), and flush what is due."""
        try:
            held = set(self.queue.renew())
            for job in self._open:
                if job not in held and job not in self._lost_said:
                    self._lost_said.add(job)
                    self.crawler.stats.inc_value("shared/leases_lost")
                    logger.warning("Worker %s lost its lease on a search (its heartbeat came too late): another "
                                   "worker may search it too; the rows of the first to finish it are kept", self.worker)
            self.flush_due()
        except SharedRunUnavailable as exc:
            self.unavailable(exc)

    def unavailable(self, exc: SharedRunUnavailable) -> None:
        """Redis is gone: this worker stops (resumable), with one line."""
        self.stop_heartbeat()
        stats = self.crawler.stats
        if stats.get_value(STOP_MESSAGE_STAT) is None:
            message = (f"{exc}: worker {self.worker} stops; its searches go back to the queue when its leases "
                       "expire, and the same command rejoins the run once Redis answers")
            logger.error("%s", message)
            stats.set_value(STOP_MESSAGE_STAT, message)
        self.close(REDIS_UNAVAILABLE_REASON)

    # -- the spider's side -------------------------------------------------------------------------

    def register(self, jobs: Sequence[tuple[str, Sequence[str]]]) -> tuple[str, str]:
        status, by = self.queue.register(fingerprint(jobs), [job for job, _ in jobs])
        if status == "first":
            logger.info("Worker %s registered run %s on Redis at %s: %d searches", self.worker, self.run_id,
                        redis_host(self.url), len(jobs))
        elif status == "joined":
            logger.info("Worker %s joined run %s on Redis at %s", self.worker, self.run_id, redis_host(self.url))
        return status, by

    def held(self) -> list[str]:
        return self.queue.held()

    def lease(self) -> str | None:
        job, was = self.queue.lease()
        if job is not None:
            self.crawler.stats.inc_value("shared/leases")
            if was and was != self.worker:
                self.crawler.stats.inc_value("shared/taken_over")
                logger.info("Worker %s took over a search from worker %s, whose lease expired", self.worker, was)
        return job

    def leased(self, job_id: str, seed_ids: Iterable[str]) -> None:
        seeds = set(seed_ids)
        self._open[job_id] = seeds
        for seed_id in seeds:
            self._seed_job[seed_id] = job_id
        if not seeds:
            self._job_ready(job_id)

    def run_progress(self) -> tuple[int, int, int]:
        """(searches of the run done, in all, that no worker has begun), as Redis last said."""
        queue = self.queue
        return queue.done, queue.total, max(0, queue.total - queue.done - queue.leased)

    def drained(self) -> bool:
        """Every search of the run is done (by any worker), as Redis last said (a lease that found none free)."""
        return self.queue.total > 0 and self.queue.done >= self.queue.total

    def idle(self) -> None:
        """Nothing to lease just now: ack what is ready, so the other workers see the run's end sooner."""
        self.flush_due(force=True)

    # -- the run's side ----------------------------------------------------------------------------

    def seed_done(self, seed_id: str) -> None:
        """A seed's row is staged (or was dropped): its search is ready once all its seeds are."""
        job = self._seed_job.pop(seed_id, None)
        if job is None or job not in self._open:
            return
        self._open[job].discard(seed_id)
        if not self._open[job]:
            self._job_ready(job)

    def _job_ready(self, job: str) -> None:
        del self._open[job]
        self._ready.append(job)
        if self._ready_since is None:
            self._ready_since = time.monotonic()

    def flush_due(self, force: bool = False) -> None:
        if not self._ready:
            return
        waited = time.monotonic() - (self._ready_since or 0.0)
        if force or waited >= self.flush_seconds:
            self.flush_and_ack()

    def flush_and_ack(self) -> None:
        """Write every staged row to a part file, then ack the searches that were ready."""
        ready, self._ready, self._ready_since = self._ready, [], None
        for stage in self.stages.values():
            stage.flush()  # an OSError here fails the run (DatasetRun), nothing acked
        if not ready:
            return
        self.crawler.stats.inc_value("shared/flushes")
        self.crawler.stats.inc_value("shared/acked", len(ready))
        self.queue.ack(ready, self.summary())

    def summary(self) -> dict[str, Any]:
        """What this worker did, for the committer's manifest."""
        self.crawler.stats.set_value("shared/redis_round_trips", self.redis.round_trips)
        stats = self.crawler.stats.get_stats()
        return {"calls": stats.get("imagesearch/calls", 0), "pages": stats.get("imagesearch/pages", 0),
                "searches": stats.get("shared/acked", 0), "errors": error_count(stats),
                "taken_over": stats.get("shared/taken_over", 0), "redis_round_trips": self.redis.round_trips}

    def finish(self, reason: str) -> bool:
        """The crawl ended: ack what is durable, then, if the run is done, ask to commit. True: commit it."""
        self.stop_heartbeat()
        try:
            if reason not in (GATEWAY_FATAL_REASON, STORAGE_FAILED_REASON, REDIS_UNAVAILABLE_REASON):
                self.flush_and_ack()
            if reason != "finished":
                logger.warning("Worker %s of run %s stopped (%s): its unfinished searches go back to the queue when "
                               "its leases expire; the same command rejoins the run", self.worker, self.run_id, reason)
                return False
            status, who = self.queue.elect()
        except SharedRunUnavailable as exc:
            self.unavailable(exc)
            return False
        if status == "you":
            return True
        if status == "committed":
            line = f"Run {self.run_id} is committed (by worker {who}): nothing left for worker {self.worker}"
        elif status == "other":
            line = f"Run {self.run_id}: every search is done; worker {who} commits it"
        else:
            left = self.queue.total - self.queue.done
            line = (f"Run {self.run_id}: {left} searches are not done yet: the other workers finish them, and the "
                    "last commits")
        logger.info("%s", line)
        self.lines.append(f"{line} (worker {self.worker} made {self.summary()['calls']} calls)")
        #: The run is done (committed, or being committed by another worker): this worker's part is over.
        self.run_done = status in ("committed", "other")
        return False
