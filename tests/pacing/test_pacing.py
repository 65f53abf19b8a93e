"""Quota pacing: the schedule never puts more than CALLS calls in any window, and uses the quota fully."""

from __future__ import annotations

import asyncio
import bisect
from typing import Any

import pytest
from scrapy import Spider
from scrapy.utils.test import get_crawler

from pipeline.pacing.apps import App, Credentials, Quota
from pipeline.pacing.quota import InMemoryQuotaStore, QuotaPacer, SlotTooLate, project_pool


def book(store: InMemoryQuotaStore, key: str, quota: Quota, now: float, margin: float) -> float:
    """Book one call on ``key`` alone; its time."""
    index, at = store.reserve([(key, quota)], now, margin)
    assert index == 0
    return at


def max_calls_in_any_window(times: list[float], seconds: float) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + seconds) - i for i, t in enumerate(times))


@pytest.mark.parametrize("text,calls,seconds", [("1000/3600", 1000, 3600.0), (" 5 / 2.5 ", 5, 2.5)])
def test_quota_parses_calls_per_seconds(text: str, calls: int, seconds: float) -> None:
    assert Quota.parse(text) == Quota(calls, seconds)


@pytest.mark.parametrize("text", ["", "1000", "0/10", "10/0", "abc/def", "-1/5"])
def test_bad_quota_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="CALLS/SECONDS"):
        Quota.parse(text)


def test_schedule_never_exceeds_the_quota_in_any_window() -> None:
    store, quota = InMemoryQuotaStore(), Quota(7, 3.0)
    # Calls asked for in irregular bursts, as a crawl with concurrent requests asks for them.
    now, times = 0.0, []
    for i in range(100):
        now += 0.01 if i % 9 else 1.3
        times.append(book(store, "k", quota, now, 0.0))
    assert max_calls_in_any_window(times, quota.seconds) <= quota.calls
    # Never earlier than asked for.
    assert all(t >= 0 for t in times)


def test_schedule_uses_the_quota_fully() -> None:
    store, quota = InMemoryQuotaStore(), Quota(10, 2.0)
    times = [book(store, "k", quota, 0.0, 0.0) for _ in range(50)]
    # 50 calls at 5 calls/s: the last may go after 4 windows, i.e. within the ideal 10 s.
    assert times[:10] == [0.0] * 10
    assert times[-1] == pytest.approx(8.0)
    assert max_calls_in_any_window(times, quota.seconds) <= quota.calls


def test_a_ban_holds_every_later_call_of_that_key_only() -> None:
    store, quota = InMemoryQuotaStore(), Quota(100, 10.0)
    store.ban("k", 0.0, 5.0)
    assert book(store, "k", quota, 1.0, 0.0) == 5.0
    assert book(store, "k", quota, 2.0, 0.0) == 5.0
    assert book(store, "other", quota, 1.0, 0.0) == 1.0


def test_margin_widens_the_window() -> None:
    store, quota = InMemoryQuotaStore(), Quota(2, 1.0)
    times = [book(store, "k", quota, 0.0, 0.2) for _ in range(3)]
    assert times == [0.0, 0.0, pytest.approx(1.2)]


def test_a_shorter_ban_does_not_shorten_a_longer_one() -> None:
    store = InMemoryQuotaStore()
    store.ban("k", 100.0, 5.0)
    store.ban("k", 100.0, 2.0)
    assert store.banned_until("k", 100.0) == 105.0
    assert store.banned_until("other", 100.0) == 0.0


def test_a_pool_books_each_call_on_the_key_free_first_so_its_rate_is_the_sum() -> None:
    store, a, b = InMemoryQuotaStore(), Quota(10, 2.0), Quota(5, 2.0)
    slots = [("a", a), ("b", b)]
    booked = [store.reserve(slots, 0.0, 0.0) for _ in range(60)]
    times = [at for _, at in booked]
    # 15 calls per 2 s: the 60th call goes in the fourth window after the first, at 6 s.
    assert times[:15] == [0.0] * 15 and times[-1] == pytest.approx(6.0)
    for name, quota in slots:
        on_key = [at for (index, at) in booked if slots[index][0] == name]
        assert max_calls_in_any_window(on_key, quota.seconds) <= quota.calls
    assert sum(index == 1 for index, _ in booked) == 20


def test_a_banned_key_of_a_pool_is_passed_over() -> None:
    store, quota = InMemoryQuotaStore(), Quota(100, 10.0)
    slots = [("a", quota), ("b", quota)]
    store.ban("a", 0.0, 30.0)
    assert store.reserve(slots, 1.0, 0.0) == (1, 1.0)
    store.ban("b", 0.0, 20.0)
    assert store.reserve(slots, 1.0, 0.0) == (1, 20.0)


def test_the_pool_projection_is_the_schedule_reserve_gives() -> None:
    store, slots = InMemoryQuotaStore(), [("a", Quota(4, 1.0)), ("b", Quota(2, 1.0))]
    for _ in range(5):
        store.reserve(slots, 0.0, 0.25)
    for more in (0, 1, 7, 20):
        copy = InMemoryQuotaStore()
        for _ in range(5):
            copy.reserve(slots, 0.0, 0.25)
        last = max([0.0, *(copy.reserve(slots, 0.0, 0.25)[1] for _ in range(more))])
        assert store.projected(slots, 0.0, 0.25, more) == last, more
    assert project_pool([[], []], [None, Quota(1, 1.0)], [0.0, 0.0], 0.0, 50, 0.0) == 0.0


def test_a_slot_past_latest_is_not_booked() -> None:
    # The search service books with latest = now + IMAGESEARCH_SERVE_MAX_WAIT: a caller is told to come back
    # rather than held for a slot another crawl's bookings pushed further away.
    store, slots = InMemoryQuotaStore(), [("a", Quota(2, 10.0))]
    assert [store.reserve(slots, 0.0, 0.0, latest=1.0) for _ in range(2)] == [(0, 0.0), (0, 0.0)]
    assert store.reserve(slots, 0.0, 0.0, latest=1.0) == (0, 10.0)
    # Nothing was booked by the refused reservations: the window's end has both its slots, then the next.
    assert store.reserve(slots, 0.0, 0.0) == (0, 10.0)
    assert store.reserve(slots, 0.0, 0.0, latest=5.0) == (0, 10.0)
    assert store.reserve(slots, 0.0, 0.0, latest=30.0) == (0, 10.0)
    assert store.reserve(slots, 0.0, 0.0) == (0, 20.0)

def test_the_pacer_raises_slot_too_late_and_counts_no_call() -> None:
    crawler = get_crawler(Spider)
    pacer = QuotaPacer(crawler, [App(Credentials("k", "s"), Quota(1, 60.0))], InMemoryQuotaStore(), margin=0.0)
    # A wait of 0 (IMAGESEARCH_SERVE_MAX_WAIT=0) takes a slot that is free now, on the real clock.
    assert asyncio.run(pacer.wait_turn(max_wait=0.0)) == 0
    with pytest.raises(SlotTooLate) as late:
        asyncio.run(pacer.wait_turn(max_wait=1.0))
    assert late.value.wait == pytest.approx(60.0, abs=1) and crawler.stats.get_value("pacing/calls") == 1


class _StoreOfItsOwn(InMemoryQuotaStore):
    """An IMAGESEARCH_QUOTA_STORE written before ``latest``: its reserve takes three arguments."""

    def reserve(self, slots: Any, now: float, margin: float) -> tuple[int, float]:  # type: ignore[override]
        return super().reserve(slots, now, margin)


def test_a_store_without_latest_books_as_before() -> None:
    pacer = QuotaPacer(get_crawler(Spider), [App(Credentials("k", "s"), Quota(1, 60.0))], _StoreOfItsOwn(),
                       margin=0.0, clock=lambda: 100.0)
    assert asyncio.run(pacer.wait_turn(max_wait=0.0)) == 0
    assert pacer.store.reserve(pacer.slots, 100.0, 0.0) == (0, 160.0)  # the bound was not applied, nothing lost
