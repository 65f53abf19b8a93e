"""The search service's answer cache: a page of results by (image content, category, page), for a TTL.

On disk (SQLite, one file under IMAGESEARCH_SERVE_CACHE_DIR) by default, or in Redis when
IMAGESEARCH_REDIS_URL is set, so that every service process of that Redis shares it. Either way
it survives a restart. Entries are JSON text; times are wall-clock seconds (``time.time()``), as
a TTL that survives a restart must be.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from scrapy.settings import BaseSettings

#: Key prefix of the Redis cache (pipeline.shared uses ``imagesearch:``; these live beside them).
REDIS_PREFIX = "imagesearch:serve:cache:"


class AnswerCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None:
        """The entry stored under ``key`` if it is younger than the TTL, else None."""

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` (JSON-able) under ``key`` for the TTL."""

    def close(self) -> None: ...


class DiskCache:
    """SQLite in WAL mode, one row per key; expired rows are skipped on read, and purged at open and
    every PURGE_EVERY stores."""

    PURGE_EVERY = 1000

    def __init__(self, path: Path, ttl: float, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.ttl = ttl
        self.clock = clock
        # The reactor thread is the only user; check_same_thread guards nothing here.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, stored_at REAL NOT NULL, "
                         "value TEXT NOT NULL)")
        self._stored = 0
        self.purge()

    def purge(self) -> None:
        self._db.execute("DELETE FROM answers WHERE stored_at < ?", (self.clock() - self.ttl,))

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT stored_at, value FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] < self.clock() - self.ttl:
            return None
        value: dict[str, Any] = json.loads(row[1])
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO answers (key, stored_at, value) VALUES (?, ?, ?)",
                         (key, self.clock(), json.dumps(value, ensure_ascii=False, separators=(",", ":"))))
        self._stored += 1
        if self._stored % self.PURGE_EVERY == 0:
            self.purge()

    def close(self) -> None:
        self._db.close()


class RedisCache:
    """``SET key value EX ttl`` in the Redis of IMAGESEARCH_REDIS_URL."""

    def __init__(self, client: Any, ttl: float) -> None:
        self.client = client
        self.ttl = max(1, round(ttl))

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.client.get(REDIS_PREFIX + key)
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.client.set(REDIS_PREFIX + key, json.dumps(value, ensure_ascii=False, separators=(",", ":")),
                        ex=self.ttl)

    def close(self) -> None:
        self.client.close()


class NoCache:
    """IMAGESEARCH_SERVE_CACHE_TTL=0: every search calls the gateway."""

    def get(self, key: str) -> dict[str, Any] | None:
        return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


def open_cache(settings: BaseSettings) -> AnswerCache:
    """The cache the settings ask for (Redis with IMAGESEARCH_REDIS_URL, else disk; none with a TTL of 0)."""
    ttl = settings.getfloat("IMAGESEARCH_SERVE_CACHE_TTL")
    if ttl <= 0:
        return NoCache()
    url = settings.get("IMAGESEARCH_REDIS_URL")
    if url:
        import redis

        return RedisCache(redis.Redis.from_url(str(url), socket_timeout=5.0, socket_connect_timeout=5.0), ttl)
    path = Path(settings.get("IMAGESEARCH_SERVE_CACHE_DIR")) / "answers.sqlite3"
    try:
        return DiskCache(path, ttl)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigurationError(f"IMAGESEARCH_SERVE_CACHE_DIR: cannot open the cache file {path} "
                                 f"({type(exc).__name__}: {exc}): give a writable directory") from None
