"""Durable journal of gateway answers in JOBDIR, so a crawl killed at any moment resumes without re-spending calls.

Scrapy's own JOBDIR keeps the scheduler queue and the seen-requests set, saved as requests are
scheduled, before their items reach any file: after a SIGKILL it believes pages done whose rows
were never written. We keep instead, per successful gateway answer, its body, appended and fsynced
before the spider sees it. A restarted crawl re-runs ``start()`` from the seeds; every call whose
answer is in the journal is answered from it (no call spent), and the spider rebuilds exactly the
items it made the first time. The rows reach the dataset only when the run commits (see
``exporters.commit``), so nothing half-done is ever visible.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.core.scheduler import Scheduler
from scrapy.exceptions import NotConfigured
from scrapy.http import TextResponse
from scrapy.utils.job import job_dir

from pipeline.components.datasetrun import fail_run
from pipeline.errors import ConfigurationError, GatewayStopped, RunStorageFailed, storage_message
from pipeline.gateways.base import CALL_KEY_META_KEY, METHOD_META_KEY, load_gateway
from pipeline.runs.identity import JOURNAL_FILE

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

    from pipeline.gateways.base import Gateway

logger = logging.getLogger(__name__)

#: Journals of earlier versions, whose keys this one does not make: a JOBDIR holding one is refused.
EARLIER_JOURNALS = ("gateway-journal.jsonl",)
#: Response flag of an answer served from the journal.
REPLAYED_FLAG = "journal"


class PageJournal:
    """An append-only JSON-lines file of ``{"key", "method", "body"}`` records, each fsynced as written.

    Memory holds an index (each key's place in the file), not the answers: a body is read back
    from the file when a resumed crawl replays it. A record torn by a kill mid-write (the last
    line, incomplete) is dropped on open and the file cut back to the last whole record, so later
    appends stay readable.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: key -> (offset, length) of its record in the file.
        self._index: dict[str, tuple[int, int]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        good_size = self._load()
        # Unbuffered: a write that fails (a full disk) leaves nothing behind to be flushed later.
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size != good_size:
            logger.warning("Gateway journal %s: dropping a record torn by an interrupted write", path)
            os.ftruncate(self._fd, good_size)
        self._size = good_size

    def _load(self) -> int:
        """Index every whole record; return the byte length of the whole ones."""
        if not self.path.exists():
            return 0
        good = 0
        with self.path.open("rb") as file:
            for line in file:
                if not line.endswith(b"\n"):
                    break
                try:
                    record = json.loads(line)
                    key = record["key"]
                    if not isinstance(key, str) or not isinstance(record["body"], str):
                        break
                except (ValueError, KeyError, TypeError):
                    break
                self._index[key] = (good, len(line))
                good += len(line)
        return good

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: str) -> str | None:
        """The answer saved for ``key``, read back from the file; None if there is none."""
        place = self._index.get(key)
        if place is None:
            return None
        offset, length = place
        body: str = json.loads(os.pread(self._fd, length, offset))["body"]
        return body

    def put(self, key: str, method: str, body: str) -> None:
        """Append one answer and make it durable before returning."""
        if key in self._index:
            return
        line = (json.dumps({"key": key, "method": method, "body": body}, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            written = 0
            while written < len(line):
                written += os.write(self._fd, line[written:])
            os.fsync(self._fd)
        except OSError:
            # A partial record (a full disk) is cut away, so the answers after it stay readable.
            os.ftruncate(self._fd, self._size)
            raise
        self._index[key] = (self._size, len(line))
        self._size += len(line)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Forget the journal (its run is finished and committed)."""
        self.close()
        self.path.unlink(missing_ok=True)


class GatewayJournalMiddleware:
    """Downloader middleware (first in the chain): answers journaled calls, journals new successful answers.

    Enabled when JOBDIR is set. A journaled call never reaches pacing, signing or the network:
    stats ``journal/replayed``; every successful answer is saved before the spider sees it:
    ``journal/saved``. Error answers are not journaled, so a resumed crawl asks again. A journal that
    cannot be written (a full disk) stops the crawl like any write the run depends on (exit 6,
    JOBDIR kept), never failing a seed.
    """

    def __init__(self, crawler: Crawler, journal: PageJournal, gateway: Gateway) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.journal = journal
        self.gateway = gateway

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        directory = job_dir(crawler.settings)
        if not directory:
            raise NotConfigured("no JOBDIR: gateway answers are not journaled")
        for name in EARLIER_JOURNALS:
            if (earlier := Path(directory) / name).exists():
                raise ConfigurationError(
                    f"JOBDIR {directory} was started by an earlier version of this pipeline, whose journal "
                    f"({name}) this one cannot match to its calls: resuming would pay again for every answer in "
                    f"it. Finish that run with the version that started it, or remove {earlier} to start over"
                )
        try:
            journal = PageJournal(Path(directory) / JOURNAL_FILE)
        except OSError as exc:  # a full disk, say: exit 6 before any call, as for the run's other files
            raise RunStorageFailed(storage_message(exc, Path(directory) / JOURNAL_FILE)) from None
        if len(journal):
            logger.info(
                "Resuming from %s: %d gateway answers already saved will not be asked again", directory, len(journal)
            )
        return cls(crawler, journal, load_gateway(crawler))

    def process_request(self, request: Request) -> Response | None:
        key = request.meta.get(CALL_KEY_META_KEY)
        body = self.journal.get(key) if key else None
        if body is None:
            return None
        self.stats.inc_value("journal/replayed")
        return TextResponse(
            request.url,
            status=200,
            body=body.encode("utf-8"),
            encoding="utf-8",
            headers={"Content-Type": "application/json;charset=UTF-8"},
            request=request,
            flags=[REPLAYED_FLAG],
        )

    def process_response(self, request: Request, response: Response) -> Response | Request:
        key = request.meta.get(CALL_KEY_META_KEY)
        if (
            key
            and REPLAYED_FLAG not in response.flags
            and response.status == 200
            and isinstance(response, TextResponse)
            and self.gateway.parse_error(response) is None
        ):
            try:
                self.journal.put(key, str(request.meta.get(METHOD_META_KEY, "")), response.text)
            except OSError as exc:
                # Not the seed's fault: the crawl stops, resumable, and this answer is asked again then.
                fail_run(self.crawler, storage_message(exc, self.journal.path))
                raise GatewayStopped("not journaled: the crawl is stopping") from None
            self.stats.inc_value("journal/saved")
        return response


class JournalScheduler(Scheduler):
    """Scrapy's scheduler with its JOBDIR disk queue switched off.

    The gateway journal makes the crawl resumable from ``start()``; a disk queue saved by an earlier,
    killed part would send its pending requests a second time beside those ``start()`` makes again.
    """

    def _dqdir(self, jobdir: str | None) -> str | None:
        return None
