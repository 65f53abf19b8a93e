"""Exceptions of the image-search crawl: bad command lines, refused seeds, and gateway error answers; the
finish reasons and the stats that say how a crawl ended."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from scrapy.exceptions import IgnoreRequest

logger = logging.getLogger(__name__)

#: finish_reason of a crawl a fatal gateway error stopped (set by the spider through CloseSpider): exit 3.
GATEWAY_FATAL_REASON = "gateway_fatal"
#: finish_reason of a crawl stopped because the gateway takes no more calls today: exit 4, resumable.
QUOTA_SPENT_REASON = "quota_spent"
#: Stat holding the one line that says why the quota stopped a crawl and when to run it again.
STOP_MESSAGE_STAT = "imagesearch/stop_message"
#: finish_reason of a crawl whose run could not be written (a full disk): exit 6, nothing committed.
STORAGE_FAILED_REASON = "storage_failed"
#: finish_reason of a crawl in which the gateway never answered (refused, DNS, 404, not its format): exit 7.
GATEWAY_UNREACHABLE_REASON = "gateway_unreachable"
#: Finish reason of a shared run's worker that lost its Redis (resumable: the same command rejoins).
REDIS_UNAVAILABLE_REASON = "redis_unavailable"
#: Finish reason of a worker whose seeds are not those the shared run was registered with.
SHARED_MISMATCH_REASON = "shared_run_mismatch"
#: A Scrapy signal (no arguments) a component sends when it stops the crawl early: every gateway call
#: still waiting gives up.
crawl_stopping = object()
#: A Scrapy signal the DatasetRun sends once its run is committed, with ``root`` (DATASET_DIR) and ``run_id``:
#: a receiver may answer with the path of what it wrote from it (the run's report).
run_committed = object()


def error_count(stats: dict[str, Any]) -> int:
    """Error answers of the gateway (``imagesearch/errors/*``) and attempts it never answered."""
    answers = sum(value for key, value in stats.items()
                  if key.startswith("imagesearch/errors/") and isinstance(value, int))
    return answers + int(stats.get("imagesearch/attempts_failed", 0))


def storage_message(exc: OSError, path: Path) -> str:
    """One line naming the path a write failed on and why (``No space left on device``)."""
    why = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"cannot write {exc.filename or path}: {why}"


class ConfigurationError(Exception):
    """The command line or settings cannot work (nothing to search, bad ``-a``/``-s`` value).

    Raised before any API call; the ``crawl`` command prints ``str(exc)`` as one line and exits 2.
    """


class ImageRejected(Exception):
    """A seed image refused before anything was sent: ``reason`` is a short code such as ``unreadable_image``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class GatewayError(Exception):
    """An error answer of the gateway: ``code`` and ``sub_code`` decide what happens (IMAGESEARCH_ERROR_ACTIONS)."""

    def __init__(self, code: str, sub_code: str = "", msg: str = "", sub_msg: str = "") -> None:
        self.code = str(code)
        self.sub_code = sub_code or ""
        self.msg = msg or ""
        self.sub_msg = sub_msg or ""
        super().__init__(self.describe())

    def describe(self) -> str:
        """``code 15 isv.invalid-signature: Signature Error (Invalid signature)``."""
        head = f"code {self.code}" + (f" {self.sub_code}" if self.sub_code else "")
        text = self.msg + (f" ({self.sub_msg})" if self.sub_msg and self.sub_msg != self.msg else "")
        return f"{head}: {text}" if text else head

    def __reduce__(self) -> tuple[type[GatewayError], tuple[str, str, str, str]]:
        return type(self), (self.code, self.sub_code, self.msg, self.sub_msg)


class MalformedResponse(GatewayError):
    """A body that is not the gateway's JSON (HTML error page, truncated JSON): code ``malformed``."""

    def __init__(self, detail: str) -> None:
        super().__init__("malformed", "", "malformed response", detail)


class RunLocked(Exception):
    """Another crawl holds this JOBDIR or run id: this one stops before any call (exit 5)."""


class RunStorageFailed(Exception):
    """The run's files cannot be written from the start (exit 6, before any call)."""


class GatewayStopped(IgnoreRequest):
    """A call not sent because the crawl is stopping (a fatal gateway answer, Ctrl-C, SIGTERM)."""
