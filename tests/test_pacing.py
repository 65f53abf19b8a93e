"""Quota pacing: the schedule never puts more than CALLS calls in any window, and uses the quota fully."""

from __future__ import annotations

import bisect

import pytest

from pipeline.pacing import InMemoryQuotaStore, Quota


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
        times.append(store.reserve("k", quota, now, margin=0.0))
    assert max_calls_in_any_window(times, quota.seconds) <= quota.calls
    # Never earlier than asked for.
    assert all(t >= 0 for t in times)


def test_schedule_uses_the_quota_fully() -> None:
    store, quota = InMemoryQuotaStore(), Quota(10, 2.0)
    times = [store.reserve("k", quota, 0.0, margin=0.0) for _ in range(50)]
    # 50 calls at 5 calls/s: the last may go after 4 windows, i.e. within the ideal 10 s.
    assert times[:10] == [0.0] * 10
    assert times[-1] == pytest.approx(8.0)
    assert max_calls_in_any_window(times, quota.seconds) <= quota.calls


def test_a_ban_holds_every_later_call_of_that_key_only() -> None:
    store, quota = InMemoryQuotaStore(), Quota(100, 10.0)
    store.ban("k", until=5.0)
    assert store.reserve("k", quota, 1.0, margin=0.0) == 5.0
    assert store.reserve("k", quota, 2.0, margin=0.0) == 5.0
    assert store.reserve("other", quota, 1.0, margin=0.0) == 1.0


def test_margin_widens_the_window() -> None:
    store, quota = InMemoryQuotaStore(), Quota(2, 1.0)
    times = [store.reserve("k", quota, 0.0, margin=0.2) for _ in range(3)]
    assert times == [0.0, 0.0, pytest.approx(1.2)]


def test_a_shorter_ban_does_not_shorten_a_longer_one() -> None:
    store = InMemoryQuotaStore()
    store.ban("k", until=105.0)
    store.ban("k", until=102.0)
    assert store.banned_until("k") == 105.0
    assert store.banned_until("other") == 0.0
