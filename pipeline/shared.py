"""One run over many crawls ("workers") on Redis: a shared seed queue with leases, shared quotas, one commit.

``-s IMAGESEARCH_REDIS_URL=redis://host:port/db`` makes a crawl a worker of the run DATASET_RUN_ID.
Every worker is started with the same seeds; Redis holds what they share, under
``imagesearch:run:<run_id>:``:

- **the seed queue.** The first worker registers the run's searches (one per distinct image and
  category, plus one per seed rejected before any call) in the order given; a worker that
  registers different seeds is refused. A worker *leases* a search before it sends any call for
  it, and its heartbeat renews its leases every quarter of IMAGESEARCH_REDIS_LEASE_SECONDS; a
  worker that dies loses them when they expire, and the next worker to ask takes them. A search
  is *done* once its rows are durable in the worker's staging (a Parquet part file of its own,
  fsynced) and the worker says so: the first worker to say so owns it. So no search is made twice
  unless a lease expired, and identical images are searched once across every worker.
- **the quotas** (``RedisQuotaStore``): each app key's sliding window of booked slots and its
  ban, booked by one Lua script against Redis' clock, so every crawl of this Redis, of any run,
  shares each key's quota, and a ban one worker meets holds all of them.
- **the commit.** When every search is done, each worker asks to commit; the first gets the
  commit lease and builds the run from every worker's staged parts (for each seed, the rows of the
  worker that owns its search), the others exit 0 naming it. A worker that starts on a committed
  run exits 0 at once.

Every call is one round trip (EVALSHA): the scripts are loaded once. A Redis that cannot be reached
stops the worker, resumable (``SharedRunUnavailable``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipeline.pacing import project_pool

if TYPE_CHECKING:
    from typing import Self

    import redis
    from scrapy.crawler import Crawler

    from pipeline.pacing import Slot

logger = logging.getLogger(__name__)

PREFIX = "imagesearch"
#: How long a committed run's keys stay in Redis (a late worker then finds it committed; after that
#: it finds the manifest on disk).
COMMITTED_KEEP_SECONDS = 7 * 86_400


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


# -- the quota ---------------------------------------------------------------------------------

#: Book the earliest free slot over a pool of keys. KEYS: window, ban of each key. ARGV: keys, margin,
#: then calls (0: unpaced), seconds of each. Times are Redis' (TIME), returned as offsets from its now.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n, margin = tonumber(ARGV[1]), tonumber(ARGV[2])
local best, best_at = 1, nil
for i = 1, n do
  local calls, seconds = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local at = math.max(now, tonumber(redis.call('GET', KEYS[2 * i]) or '0'))
  if calls > 0 and redis.call('LLEN', KEYS[2 * i - 1]) >= calls then
    at = math.max(at, tonumber(redis.call('LINDEX', KEYS[2 * i - 1], -calls)) + seconds + margin)
  end
  if best_at == nil or at < best_at then best, best_at = i, at end
end
local calls, seconds = tonumber(ARGV[1 + 2 * best]), tonumber(ARGV[2 + 2 * best])
if calls > 0 then
  redis.call('RPUSH', KEYS[2 * best - 1], string.format('%.6f', best_at))
  redis.call('LTRIM', KEYS[2 * best - 1], -calls, -1)
  redis.call('PEXPIRE', KEYS[2 * best - 1], math.ceil((best_at - now + seconds + margin + 60) * 1000))
end
return {best - 1, string.format('%.6f', best_at - now)}
"""
_BAN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seconds = tonumber(ARGV[1])
local untilt = math.max(now + seconds, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%.6f', untilt), 'PX', math.ceil((untilt - now) * 1000) + 1000)
return string.format('%.6f', untilt - now)
"""
_BANNED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return string.format('%.6f', tonumber(redis.call('GET', KEYS[1]) or '0') - now)
"""
#: The booked slots and ban of each key, as offsets from Redis' now (for the progress ETA).
_SCHEDULE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i = 1, #KEYS / 2 do
  local booked = {}
  for _, at in ipairs(redis.call('LRANGE', KEYS[2 * i - 1], 0, -1)) do
    table.insert(booked, string.format('%.6f', tonumber(at) - now))
  end
  table.insert(out, booked)
  table.insert(out, string.format('%.6f', tonumber(redis.call('GET', KEYS[2 * i]) or '0') - now))
end
return out
"""


class RedisQuotaStore:
    """IMAGESEARCH_QUOTA_STORE for crawls sharing app keys: the in-memory store's sliding windows and bans,
    kept in Redis and booked atomically (one Lua script a call) against Redis' clock.

    Chosen by itself when IMAGESEARCH_REDIS_URL is set. A key's state is named by a hash of the
    gateway and the key (``pipeline.apps.App.slot``): Redis never holds an app key or secret.
    pyrate-limiter's Redis bucket was not used: it answers "now or not" and is polled, where the
    crawl books a future slot per call (so waiting calls hold their place and the ETA can be
    projected), over a pool of keys at once.
    """

    def __init__(self, redis_: SharedRedis) -> None:
        self.redis = redis_
        self._reserve = redis_.script(_RESERVE)
        self._ban = redis_.script(_BAN)
        self._banned = redis_.script(_BANNED)
        self._schedule = redis_.script(_SCHEDULE)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(client_for(crawler))

    @staticmethod
    def _keys(key: str) -> list[str]:
        return [f"{PREFIX}:quota:{key}:booked", f"{PREFIX}:quota:{key}:ban"]

    def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        return self.redis.run(script, keys, args)

    def reserve(self, slots: Sequence[Slot], now: float, margin: float) -> tuple[int, float]:
        keys = [name for key, _ in slots for name in self._keys(key)]
        args: list[Any] = [len(slots), margin]
        for _, quota in slots:
            args += [quota.calls, quota.seconds] if quota else [0, 0]
        index, offset = self._run(self._reserve, keys, args)
        return int(index), now + float(offset)

    def ban(self, key: str, now: float, seconds: float) -> None:
        self._run(self._ban, self._keys(key)[1:], [max(0.0, seconds)])

    def banned_until(self, key: str, now: float) -> float:
        left = float(self._run(self._banned, self._keys(key)[1:], []))
        return now + left if left > 0 else 0.0

    def projected(self, slots: Sequence[Slot], now: float, margin: float, calls: int) -> float:
        out = self._run(self._schedule, [name for key, _ in slots for name in self._keys(key)], [])
        booked = [[now + float(at) for at in out[2 * i]] for i in range(len(slots))]
        starts = [max(now, now + float(out[2 * i + 1])) for i in range(len(slots))]
        return project_pool(booked, [quota for _, quota in slots], starts, margin, calls, now)


# -- the run -----------------------------------------------------------------------------------

#: Register the run's searches once. KEYS: fingerprint, jobs, pending, committed. ARGV: fingerprint, job ids.
_REGISTER = """
if redis.call('EXISTS', KEYS[4]) == 1 then return {-2, redis.call('GET', KEYS[4])} end
local fp = redis.call('GET', KEYS[1])
if fp and fp ~= ARGV[1] then return {-1, ''} end
if not fp then
  redis.call('SET', KEYS[1], ARGV[1])
  for i = 2, #ARGV do
    redis.call('SADD', KEYS[2], ARGV[i])
    redis.call('RPUSH', KEYS[3], ARGV[i])
  end
  return {1, ''}
end
return {0, ''}
"""
#: Lease the next search. KEYS: pending, leases, owner, done, lost, jobs. ARGV: worker, lease ms.
#: Expired leases go back to the head of the queue first. Returns {job or '', its previous owner or '',
#: searches done, searches in all}.
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, job in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  local was = redis.call('HGET', KEYS[3], job)
  redis.call('ZREM', KEYS[2], job)
  redis.call('HDEL', KEYS[3], job)
  if redis.call('HEXISTS', KEYS[4], job) == 0 then
    redis.call('HSET', KEYS[5], job, was or '')
    redis.call('LPUSH', KEYS[1], job)
  end
end
local job = redis.call('LPOP', KEYS[1])
while job and redis.call('HEXISTS', KEYS[4], job) == 1 do job = redis.call('LPOP', KEYS[1]) end
if not job then return {'', '', redis.call('HLEN', KEYS[4]), redis.call('SCARD', KEYS[6])} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), job)
redis.call('HSET', KEYS[3], job, ARGV[1])
local was = redis.call('HGET', KEYS[5], job) or ''
redis.call('HDEL', KEYS[5], job)
return {job, was, -1, -1}
"""
#: Renew the worker's leases (and its commit lease). KEYS: leases, owner, committer, done, jobs.
#: ARGV: worker, lease ms. Returns {the searches it still holds, searches done, in all, leased by anyone}.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = {}
local owners = redis.call('HGETALL', KEYS[2])
for i = 1, #owners, 2 do
  if owners[i + 1] == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), owners[i])
    table.insert(held, owners[i])
  end
end
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2])) end
return {held, redis.call('HLEN', KEYS[4]), redis.call('SCARD', KEYS[5]), redis.call('ZCARD', KEYS[1])}
"""
#: The searches a worker's rows are durable for. KEYS: leases, owner, done, jobs, workers.
#: ARGV: worker, its stats (JSON), job ids. Returns {searches done, searches in all}.
_ACK = """
for i = 3, #ARGV do
  redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[1])
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
return {redis.call('HLEN', KEYS[3]), redis.call('SCARD', KEYS[4])}
"""
#: Ask to commit. KEYS: committer, committed, done, jobs. ARGV: worker, lease ms.
#: Returns {'committed', by} | {'busy', ''} (searches not all done) | {'you', ''} | {'other', who}.
_ELECT = """
local by = redis.call('GET', KEYS[2])
if by then return {'committed', by} end
if redis.call('HLEN', KEYS[3]) < redis.call('SCARD', KEYS[4]) then return {'busy', ''} end
local who = redis.call('GET', KEYS[1])
if not who then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return {'you', ''}
end
if who == ARGV[1] then return {'you', ''} end
return {'other', who}
"""


def default_worker_name() -> str:
    return f"{socket.gethostname().split('.')[0] or 'worker'}-{os.getpid()}"


def fingerprint(jobs: Iterable[tuple[str, Iterable[str]]]) -> str:
    """What every worker of a run must agree on: each search and the seeds it carries, in order."""
    digest = hashlib.sha256()
    for job_id, seeds in jobs:
        digest.update(job_id.encode("utf-8", "surrogateescape") + b"\0")
        for seed_id in seeds:
            digest.update(seed_id.encode("utf-8", "surrogateescape") + b"\1")
        digest.update(b"\n")
    return digest.hexdigest()


class SharedQueue:
    """The Redis side of one shared run: its searches' queue and leases, who owns each, the commit lease."""

    def __init__(self, redis_: SharedRedis, run_id: str, worker: str, lease_seconds: float) -> None:
        self.redis = redis_
        self.run_id = run_id
        self.worker = worker
        self.lease_ms = max(1, round(lease_seconds * 1000))
        base = f"{PREFIX}:run:{run_id}:"
        self.k = {name: base + name for name in (
            "fingerprint", "jobs", "pending", "leases", "owner", "done", "lost", "workers", "committer", "committed")}
        self._register = redis_.script(_REGISTER)
        self._lease = redis_.script(_LEASE)
        self._renew = redis_.script(_RENEW)
        self._ack = redis_.script(_ACK)
        self._elect = redis_.script(_ELECT)
        #: The run's searches done (by any worker) and in all, as Redis last said (a lease that found none
        #: free, a heartbeat, an ack), and how many were leased at the last heartbeat.
        self.done = self.total = self.leased = 0

    def _call(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self.redis.run(script, [self.k[name] for name in keys], args)

    def _redis(self, method: str, *args: Any) -> Any:
        return self.redis.command(method, *args)

    def ping(self) -> None:
        self._redis("ping")

    def register(self, fp: str, job_ids: Sequence[str]) -> tuple[str, str]:
        """Register the run's searches, once: ``("first"|"joined", "")``, ``("mismatch", "")`` (other seeds)
        or ``("committed", by)``."""
        status, by = self._call(self._register, ("fingerprint", "jobs", "pending", "committed"), [fp, *job_ids])
        return {1: "first", 0: "joined", -1: "mismatch", -2: "committed"}[int(status)], str(by)

    def lease(self) -> tuple[str | None, str]:
        """The next search to do (None when none is free now) and the worker that lost it, if any."""
        job, was, done, total = self._call(self._lease, ("pending", "leases", "owner", "done", "lost", "jobs"),
                                           [self.worker, self.lease_ms])
        if not job:
            self._saw(done, total)
        return (str(job) or None), str(was)

    def held(self) -> list[str]:
        """The searches this worker holds leases on (after a restart: its own, if they have not expired)."""
        owners, done_list = self.redis.pipeline([("hgetall", (self.k["owner"],)), ("hkeys", (self.k["done"],))])
        done = set(done_list)
        return [job for job, who in owners.items() if who == self.worker and job not in done]

    def renew(self) -> list[str]:
        """Renew this worker's leases (and its commit lease); the searches it still holds."""
        held, done, total, leased = self._call(self._renew, ("leases", "owner", "committer", "done", "jobs"),
                                               [self.worker, self.lease_ms])
        self._saw(done, total)
        self.leased = int(leased)
        return [str(job) for job in held]

    def _saw(self, done: Any, total: Any) -> None:
        # Searches done only grow: the largest count heard is the latest.
        self.done, self.total = max(self.done, int(done)), max(self.total, int(total))

    def ack(self, job_ids: Sequence[str], stats: dict[str, Any]) -> tuple[int, int]:
        """Say these searches' rows are durable; ``(searches done, searches in all)``."""
        done, total = self._call(self._ack, ("leases", "owner", "done", "jobs", "workers"),
                                 [self.worker, json.dumps(stats, sort_keys=True), *job_ids])
        self._saw(done, total)
        return int(done), int(total)

    def elect(self) -> tuple[str, str]:
        """Ask to commit: ``("you", "")``, ``("other", who)``, ``("committed", by)`` or ``("busy", "")``."""
        status, who = self._call(self._elect, ("committer", "committed", "done", "jobs"), [self.worker, self.lease_ms])
        return str(status), str(who)

    def owners(self) -> dict[str, str]:
        """Each done search and the worker whose rows it takes."""
        owners: dict[str, str] = self._redis("hgetall", self.k["done"])
        return owners

    def worker_stats(self) -> dict[str, dict[str, Any]]:
        raw: dict[str, str] = self._redis("hgetall", self.k["workers"])
        return {worker: json.loads(text) for worker, text in sorted(raw.items())}

    def committed(self) -> None:
        """The run is committed: say so (late workers exit at once), and let its keys expire in a week."""
        self.redis.pipeline([("set", (self.k["committed"], self.worker)), ("delete", (self.k["committer"],)),
                             *(("expire", (key, COMMITTED_KEEP_SECONDS)) for key in self.k.values())],
                            transaction=True)


# -- the worker ----------------------------------------------------------------------------------

#: The marker file of a shared run's staging: no other crawl's start removes that staging.
SHARED_MARKER = "shared.json"
#: Where each worker's parts go inside the run's staging.
WORKERS_DIR = "workers"
#: How often a worker with nothing to lease asks again (one round trip).
POLL_SECONDS = 0.5


class SharedWorker:
    """This crawl as a worker of a shared run: its leases, its heartbeat, its staged parts, when it acks.

    Built by ``pipeline.run.DatasetRun`` when IMAGESEARCH_REDIS_URL is set. A search is acked (done,
    owned by this worker) only after its seeds' rows are in a part file on disk: a search is ready
    when every seed it carries has its ``seeds`` row staged, and the ready ones are flushed and acked
    together, when the staging holds STAGE_ROWS rows, IMAGESEARCH_REDIS_FLUSH_SECONDS after the
    first became ready, when the worker has nothing left to lease, and at its end.
    Stats: ``shared/leases``, ``shared/taken_over``, ``shared/acked``, ``shared/flushes``,
    ``shared/leases_lost``.
    """

    def __init__(self, crawler: Crawler, run_id: str, staging: Path, worker: str) -> None:
        settings = crawler.settings
        self.crawler = crawler
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
        from pipeline.errors import REDIS_UNAVAILABLE_REASON, STOP_MESSAGE_STAT
        from pipeline.run import _close

        self.stop_heartbeat()
        stats = self.crawler.stats
        if stats.get_value(STOP_MESSAGE_STAT) is None:
            message = (f"{exc}: worker {self.worker} stops; its searches go back to the queue when its leases "
                       "expire, and the same command rejoins the run once Redis answers")
            logger.error("%s", message)
            stats.set_value(STOP_MESSAGE_STAT, message)
        _close(self.crawler, REDIS_UNAVAILABLE_REASON)

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
        from pipeline.progress import error_count

        self.crawler.stats.set_value("shared/redis_round_trips", self.redis.round_trips)
        stats = self.crawler.stats.get_stats()
        return {"calls": stats.get("imagesearch/calls", 0), "pages": stats.get("imagesearch/pages", 0),
                "searches": stats.get("shared/acked", 0), "errors": error_count(stats),
                "taken_over": stats.get("shared/taken_over", 0), "redis_round_trips": self.redis.round_trips}

    def finish(self, reason: str) -> bool:
        """The crawl ended: ack what is durable, then, if the run is done, ask to commit. True: commit it."""
        from pipeline.errors import GATEWAY_FATAL_REASON, REDIS_UNAVAILABLE_REASON, STORAGE_FAILED_REASON

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
