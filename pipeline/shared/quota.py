"""Each app key's quota on Redis (``RedisQuotaStore``): a sliding window of booked slots and its ban, booked by
one Lua script against Redis' clock, so every crawl of this Redis, of any run, shares each key's quota,
and a ban one worker meets holds all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline.pacing.quota import project_pool
from pipeline.shared.client import PREFIX, SharedRedis, client_for

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

    from pipeline.pacing.quota import Slot


#: Book the earliest free slot over a pool of keys. KEYS: window, ban of each key. ARGV: keys, margin,
#: then calls (0: unpaced), seconds of each, then the latest offset a slot may have (-1: any), past which
#: nothing is booked. Times are Redis' (TIME), returned as offsets from its now.
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
local latest = tonumber(ARGV[3 + 2 * n])
if latest >= 0 and best_at - now > latest then
  return {best - 1, string.format('%.6f', best_at - now), 0}
end
if calls > 0 then
  redis.call('RPUSH', KEYS[2 * best - 1], string.format('%.6f', best_at))
  redis.call('LTRIM', KEYS[2 * best - 1], -calls, -1)
  redis.call('PEXPIRE', KEYS[2 * best - 1], math.ceil((best_at - now + seconds + margin + 60) * 1000))
end
return {best - 1, string.format('%.6f', best_at - now), 1}
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
    gateway and the key (``pipeline.pacing.apps.App.slot``): Redis never holds an app key or secret.
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

    def reserve(self, slots: Sequence[Slot], now: float, margin: float,
                latest: float | None = None) -> tuple[int, float]:
        keys = [name for key, _ in slots for name in self._keys(key)]
        args: list[Any] = [len(slots), margin]
        for _, quota in slots:
            args += [quota.calls, quota.seconds] if quota else [0, 0]
        args.append(-1 if latest is None else max(0.0, latest - now))
        index, offset, booked = self._run(self._reserve, keys, args)
        at = now + float(offset)
        if latest is not None:  # the script decided on Redis' clock; its answer is rounded to the µs
            at = min(at, latest) if int(booked) else max(at, latest + 0.001)
        return int(index), at

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

