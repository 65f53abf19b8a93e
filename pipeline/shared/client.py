"""The crawl's one Redis client (IMAGESEARCH_REDIS_URL), shared by the quota store and the run's queue:
its round trips counted, any Redis error (after redis-py's retries) one ``SharedRunUnavailable``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:

    import redis
    from scrapy.crawler import Crawler


PREFIX = "imagesearch"


class SharedRunUnavailable(Exception):
    """Redis did not answer (after redis-py's retries): the worker stops, resumable."""


def redis_host(url: str) -> str:
    """``host:port`` of a Redis URL, for messages (never its password)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}"


def connect(url: str) -> redis.Redis:
    """A client for ``url`` that retries a dropped connection a few times (within seconds) before giving up.

    redis-py is imported here, not with this module: a crawl without IMAGESEARCH_REDIS_URL never loads it."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 4),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


class SharedRedis:
    """The crawl's one Redis client (shared by the quota store and the run), counting its round trips
    (stat ``shared/redis_round_trips``); any Redis error, after the client's retries, becomes
    SharedRunUnavailable."""

    def __init__(self, url: str, recover_after: float | None = None) -> None:
        import redis

        self.url = url
        self.client = connect(url)
        self.round_trips = 0
        self._errors = redis.RedisError
        #: Set by the first call that failed after its retries: the worker is stopping, and every later
        #: call fails at once (each would block the crawl for seconds of retries). With ``recover_after``
        #: (``scrapy serve``, which lives on), only for that many seconds; then Redis is tried again.
        self.down: SharedRunUnavailable | None = None
        self.recover_after = recover_after
        self._down_at = 0.0

    def _failed(self, exc: Exception) -> SharedRunUnavailable:
        self.down = unavailable(self.url, exc)
        self._down_at = time.monotonic()
        return self.down

    def _check(self) -> None:
        if self.down is None:
            return
        if self.recover_after is not None and time.monotonic() - self._down_at >= self.recover_after:
            self.down = None
            return
        raise self.down

    def script(self, source: str) -> Any:
        return self.client.register_script(source)

    def run(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script, one round trip (EVALSHA; redis-py loads it the first time)."""
        self._check()
        self.round_trips += 1
        try:
            return script(keys=list(keys), args=list(args))
        except self._errors as exc:
            raise self._failed(exc) from None

    def command(self, method: str, *args: Any) -> Any:
        self._check()
        self.round_trips += 1
        try:
            return getattr(self.client, method)(*args)
        except self._errors as exc:
            raise self._failed(exc) from None

    def pipeline(self, commands: Sequence[tuple[str, tuple[Any, ...]]], transaction: bool = False) -> list[Any]:
        """Several commands in one round trip."""
        self._check()
        self.round_trips += 1
        try:
            pipe = self.client.pipeline(transaction=transaction)
            for method, args in commands:
                getattr(pipe, method)(*args)
            return list(pipe.execute())
        except self._errors as exc:
            raise self._failed(exc) from None


_CLIENTS: dict[int, SharedRedis] = {}


def client_for(crawler: Crawler) -> SharedRedis:
    """The crawl's one Redis client (IMAGESEARCH_REDIS_URL)."""
    client = _CLIENTS.get(id(crawler))
    if client is None:
        # The search service outlives a Redis outage: it tries again after a few seconds.
        recover_after = 5.0 if getattr(crawler.spider, "serves", False) else None
        client = _CLIENTS[id(crawler)] = SharedRedis(str(crawler.settings.get("IMAGESEARCH_REDIS_URL")),
                                                     recover_after)
    return client


def unavailable(url: str, exc: Exception) -> SharedRunUnavailable:
    return SharedRunUnavailable(f"Redis at {redis_host(url)} does not answer ({type(exc).__name__}: {exc})")

