"""The Redis side of shared runs, on a real redis-server: the quota store books what the in-memory one
books, and the queue hands each search out once, takes back expired leases, and elects one committer."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pipeline.pacing.apps import Quota
from pipeline.pacing.quota import InMemoryQuotaStore
from pipeline.shared.client import SharedRedis
from pipeline.shared.queue import SharedQueue
from pipeline.shared.quota import RedisQuotaStore
from sandbox.testing import RedisServer


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


def test_the_redis_store_books_the_in_memory_schedule_over_a_pool(server: RedisServer) -> None:
    shared_redis = SharedRedis(server.url)
    client = shared_redis.client
    client.flushdb()
    slots = [("a", Quota(4, 30.0)), ("b", Quota(2, 30.0))]
    shared, local = RedisQuotaStore(shared_redis), InMemoryQuotaStore()
    now = time.monotonic()
    booked = [shared.reserve(slots, now, 0.5) for _ in range(9)]
    expected = [local.reserve(slots, now, 0.5) for _ in range(9)]
    assert [index for index, _ in booked] == [index for index, _ in expected] == [0, 0, 0, 0, 1, 1, 0, 0, 0]
    # Times are Redis' clock moved onto ours: the first six go now, the rest a window (+ margin) on.
    for (_, at), (_, want) in zip(booked, expected, strict=True):
        assert at == pytest.approx(want, abs=0.2)
    assert shared.projected(slots, now, 0.5, 3) == pytest.approx(local.projected(slots, now, 0.5, 3), abs=0.2)
    # With latest (the search service's longest wait), a slot past it is not booked, as in memory.
    client.flushdb()
    shared, local = RedisQuotaStore(shared_redis), InMemoryQuotaStore()
    now = time.monotonic()
    refused = 0
    for latest in (*[now + 1] * 7, None, now + 1, now + 100):  # six free now, then a window (+ margin) on
        one, want = shared.reserve(slots, now, 0.5, latest=latest), local.reserve(slots, now, 0.5, latest=latest)
        assert one[0] == want[0] and one[1] == pytest.approx(want[1], abs=0.2), latest
        refused += latest is not None and want[1] > latest
    assert refused == 2
    assert shared.projected(slots, now, 0.5, 0) == pytest.approx(local.projected(slots, now, 0.5, 0), abs=0.2)
    client.flushdb()
    # A ban one crawler meets holds every crawler of the Redis, for that key only.
    other = RedisQuotaStore(SharedRedis(server.url))
    other.ban("b", time.monotonic(), 20.0)
    assert shared.banned_until("b", now) == pytest.approx(now + 20.0, abs=0.3)
    assert shared.banned_until("a", now) == 0.0
    # The store holds no app key: only the hashed slot names.
    assert all(key.startswith("imagesearch:quota:") for key in client.keys("*"))


def test_the_queue_leases_each_search_once_and_takes_back_expired_leases(server: RedisServer) -> None:
    first = SharedRedis(server.url)
    first.client.flushdb()
    one = SharedQueue(first, "r", "one", lease_seconds=0.3)
    two = SharedQueue(SharedRedis(server.url), "r", "two", lease_seconds=60)
    assert one.register("fp", ["a", "b", "c"]) == ("first", "")
    assert two.register("fp", ["a", "b", "c"]) == ("joined", "")
    assert two.register("other", ["x"]) == ("mismatch", "")
    assert one.lease() == ("a", "") and two.lease() == ("b", "")
    assert one.elect() == ("busy", "")
    # One's lease on "a" expires (no heartbeat): the next to ask takes it, saying from whom.
    time.sleep(0.4)
    assert two.lease() == ("a", "one")
    assert two.lease() == ("c", "")
    assert two.lease() == (None, "")
    assert (two.done, two.total) == (0, 3)
    assert sorted(two.renew()) == ["a", "b", "c"]
    # One finishes "a" late: the first to say a search is done owns it.
    assert one.ack(["a"], {"calls": 1}) == (1, 3)
    assert two.ack(["a", "b", "c"], {"calls": 3}) == (3, 3)
    assert two.owners() == {"a": "one", "b": "two", "c": "two"}
    assert two.elect() == ("you", "")
    assert one.elect() == ("other", "two")
    two.committed()
    assert one.elect() == ("committed", "two")
    assert one.register("fp", ["a", "b", "c"]) == ("committed", "two")
    assert two.worker_stats() == {"one": {"calls": 1}, "two": {"calls": 3}}
