"""The run's seed queue on Redis: its searches registered once, leased by workers, acked when durable, and
the election of the worker that commits.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.shared.client import PREFIX, SharedRedis

if TYPE_CHECKING:

    pass


#: How long a committed run's keys stay in Redis (a late worker then finds it committed; after that
#: it finds the manifest on disk).
COMMITTED_KEEP_SECONDS = 7 * 86_400


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

