"""Normalisers over every value form seen in the wild (docs/api.md section 2), with exact results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from pipeline.normalize import (
    INT64_MAX,
    clean_title,
    normalize_bool,
    normalize_count,
    normalize_num_iid,
    normalize_price,
    normalize_sales,
    normalize_text,
    normalize_timestamp,
    normalize_url,
    sales_kind,
    split_price,
)

D = Decimal
GARBAGE: list[Any] = [None, "", "   ", "abc", "面议", [], {}, object(), True, False, float("nan"), float("inf")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("39.50", (D("39.50"), D("39.50"))),
        (39.5, (D("39.50"), D("39.50"))),
        ("38.71", (D("38.71"), D("38.71"))),
        (38.71, (D("38.71"), D("38.71"))),  # the float 38.71 is not exact; the price must be
        (39, (D("39.00"), D("39.00"))),
        (D("12.3"), (D("12.30"), D("12.30"))),
        ("200-600", (D("200.00"), D("600.00"))),
        ("200 - 600", (D("200.00"), D("600.00"))),
        ("200~600", (D("200.00"), D("600.00"))),
        ("¥200-¥600", (D("200.00"), D("600.00"))),  # a currency sign on both ends
        ("￥39.5 ~ ￥59", (D("39.50"), D("59.00"))),
        ("39.50元-59.00元", (D("39.50"), D("59.00"))),
        ("¥", (None, None)),
        ("200-", (None, None)),
        ("19.9-29.9", (D("19.90"), D("29.90"))),
        ("600-200", (D("200.00"), D("600.00"))),
        ("¥39.50", (D("39.50"), D("39.50"))),
        ("￥ 1,299.00", (D("1299.00"), D("1299.00"))),
        ("39.50元", (D("39.50"), D("39.50"))),
        (" 0.01 ", (D("0.01"), D("0.01"))),
        ("0", (D("0.00"), D("0.00"))),
        ("9.999", (None, None)),  # finer than a fen: refused, never rounded
        ("0.001", (None, None)),  # not 0.00
        (0.001, (None, None)),
        ("39.500", (D("39.50"), D("39.50"))),  # zeros past the fen change nothing
        ("￥39.9起", (D("39.90"), None)),  # "from 39.90": the lower bound only
        ("39.9元起", (D("39.90"), None)),
        ("88.8元/件", (D("88.80"), D("88.80"))),  # a unit, ignored
        ("88.8/件", (D("88.80"), D("88.80"))),
        ("¥59 元/双", (D("59.00"), D("59.00"))),
        ("券后 29.9", (None, None)),  # a coupon price is not the listing's price: split_price gives it
        ("-5", (None, None)),
        ("1,2", (None, None)),
        ("39.50.1", (None, None)),
        ("200-", (None, None)),
        ("1e3", (None, None)),
        ("9999999999999", (None, None)),  # does not fit decimal128(14, 2)
        (-1, (None, None)),
    ]
    + [(g, (None, None)) for g in GARBAGE],
)
def test_normalize_price(raw: Any, expected: tuple[Decimal | None, Decimal | None]) -> None:
    got = normalize_price(raw)
    assert got == expected
    # Decimal("39.5") == Decimal("39.50"): also check the fen scale that CSV will print.
    assert [str(v) if v is not None else None for v in got] == [str(v) if v is not None else None for v in expected]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (7, 7),
        (777, 777),
        (0, 0),
        ("7", 7),
        (12.0, 12),
        ("100+", 100),
        ("1万＋人付款", 10_000),  # a full-width plus
        ("1.2萬+", 12_000),  # traditional characters
        ("338人付款", 338),
        ("1000+人收货", 1000),
        ("1.2万人付款", 12000),
        ("1.2万+人付款", 12000),
        ("2.0万+人付款", 20000),
        ("1万+人付款", 10000),
        ("10万+", 100000),
        ("月销 3.5万", 35000),
        ("已售 200", 200),
        ("1.5w+", 15000),
        ("1.5W+", 15000),
        ("2,345", 2345),
        ("销量：2,345笔", 2345),
        ("3.3千", 3300),
        ("1.23456万", 12345),
        ("9.99999999999999999万", 99999),  # exact decimal arithmetic, no float rounding up
        ("", None),
        ("1.5", None),
        ("30天销量 200", None),
        ("abc123", None),
        ("-3", None),
        (-3, None),
        (12.5, None),
        ("99999999999999999999亿", None),
    ]
    + [(g, None) for g in GARBAGE],
)
def test_normalize_sales(raw: Any, expected: int | None) -> None:
    got = normalize_sales(raw)
    assert got == expected
    assert got is None or type(got) is int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (123, 123),
        ("123", 123),
        (" 123 ", 123),
        (652345678901, 652345678901),
        ("652345678901", 652345678901),
        (123.0, 123),
        (INT64_MAX, INT64_MAX),
        (str(INT64_MAX), INT64_MAX),
        (INT64_MAX + 1, None),
        (str(INT64_MAX + 1), None),
        (0, None),
        ("0", None),
        (-5, None),
        ("-5", None),
        (123.5, None),
        ("123.0", None),
        ("12a", None),
        ("１２３", None),  # full-width digits are not an id a gateway sends
    ]
    + [(g, None) for g in GARBAGE],
)
def test_normalize_num_iid(raw: Any, expected: int | None) -> None:
    got = normalize_num_iid(raw)
    assert got == expected
    assert got is None or type(got) is int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0, 0), ("0", 0), ("1", 1), (1, 1), ("x", None), (-1, None), (None, None)],
)
def test_normalize_count(raw: Any, expected: int | None) -> None:
    assert normalize_count(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("//item.taobao.com/item.htm?id=1", "https://item.taobao.com/item.htm?id=1"),
        ("//g-search3.alicdn.com/img/bao/uploaded/i4/x.jpg", "https://g-search3.alicdn.com/img/bao/uploaded/i4/x.jpg"),
        ("http://img.alicdn.com/a.jpg", "https://img.alicdn.com/a.jpg"),
        ("HTTP://img.alicdn.com/a.jpg", "https://img.alicdn.com/a.jpg"),
        ("https://detail.tmall.com/item.htm?id=2", "https://detail.tmall.com/item.htm?id=2"),
        (" https://x.com/a ", "https://x.com/a"),
        # Loopback stays http: the sandbox serves pictures there.
        ("http://127.0.0.1:8765/img/1.jpg", "http://127.0.0.1:8765/img/1.jpg"),
        ("http://localhost:8765/img/1.jpg", "http://localhost:8765/img/1.jpg"),
        ("http://[::1]:8765/img/1.jpg", "http://[::1]:8765/img/1.jpg"),
        ("http://127.0.0.1.evil.com/x", "https://127.0.0.1.evil.com/x"),
        ("//127.0.0.1:8765/img/1.jpg", "http://127.0.0.1:8765/img/1.jpg"),  # the sandbox's pic_url
        ("//localhost/x", "http://localhost/x"),
        ("//LocalHost:8765/x", "http://LocalHost:8765/x"),
        ("//img.localhost/x", "http://img.localhost/x"),
        ("//user@127.0.0.1:8765/x", "http://user@127.0.0.1:8765/x"),
        ("//shop.taobao.com@127.0.0.1/x", "http://shop.taobao.com@127.0.0.1/x"),  # the host is after the @
        ("//item.taobao.com?id=1", "https://item.taobao.com?id=1"),
        ("///x", None),
        ("ftp://x.com/a", None),
        ("javascript:alert(1)", None),
        ("/item.htm?id=1", None),
        ("item.htm", None),
        ("https://", None),
        ("http://[::1/x", None),
        ("", None),
        (None, None),
        (123, None),
    ],
)
def test_normalize_url(raw: Any, expected: str | None) -> None:
    assert normalize_url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("false", False),
        ("True", True),
        (" FALSE ", False),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("1", True),
        ("0", False),
        (2, None),
        ("maybe", None),
        ("", None),
        (None, None),
        (1.0, None),
    ],
)
def test_normalize_bool(raw: Any, expected: bool | None) -> None:
    assert normalize_bool(raw) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<span class=H>耐克</span>运动鞋", "耐克运动鞋"),
        ('<span class="H">Nike</span> Air &amp; Max', "Nike Air & Max"),
        ("  多个\t空格\n换行\u3000全角 ", "多个 空格 换行 全角"),
        ("&lt;b&gt;literal&lt;/b&gt;", "<b>literal</b>"),
        ("a &quot;b&quot; &#39;c&#39;", "a \"b\" 'c'"),
        ("<br/>", None),
        ("尺码 3 < 5 > 4", "尺码 3 < 5 > 4"),  # not tags: kept
        ("", None),
        (None, None),
        (123, "123"),
    ],
)
def test_clean_title(raw: Any, expected: str | None) -> None:
    assert clean_title(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" nick ", "nick"), (50015374, "50015374"), (15.0, "15"), ("", None), ("  ", None), (None, None), (True, None)],
)
def test_normalize_text(raw: Any, expected: str | None) -> None:
    assert normalize_text(raw) == expected


def test_normalize_timestamp() -> None:
    utc = datetime(2026, 11, 25, 10, 15, 0, 123456, tzinfo=UTC)
    assert normalize_timestamp(utc) == utc
    china = utc.astimezone(timezone(timedelta(hours=8)))
    assert normalize_timestamp(china) == utc
    assert normalize_timestamp(china).tzinfo is UTC  # type: ignore[union-attr]
    assert normalize_timestamp(utc.replace(tzinfo=None)) == utc
    assert normalize_timestamp("2026-11-25T10:15:00.123456Z") == utc
    assert normalize_timestamp("2026-11-25 18:15:00.123456+08:00") == utc
    assert normalize_timestamp(utc.timestamp()) == utc
    for bad in (None, "", "yesterday", True, 1e30, object()):
        assert normalize_timestamp(bad) is None


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("券后 29.9", (None, None, D("29.90"))),
        ("券后：¥19.90元", (None, None, D("19.90"))),
        ("券后29.9起", (None, None, D("29.90"))),
        ("￥39.9起", (D("39.90"), None, None)),
        ("88.8元/件", (D("88.80"), D("88.80"), None)),
        ("0.001", (None, None, None)),
        (39.9, (D("39.90"), D("39.90"), None)),
        ("面议", (None, None, None)),
    ],
)
def test_split_price_gives_a_coupon_price_its_own_place(raw: Any, expected: tuple[Any, Any, Any]) -> None:
    assert split_price(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("月销 300", "monthly"),
        ("月销300+", "monthly"),
        ("30天销量 200", "monthly"),
        ("1.2万+人付款", "paid"),
        ("338人付款", "paid"),
        ("300人收货", "received"),
        ("已售 1000", "total"),
        ("累计销量 5万+", "total"),
        ("1000", "unknown"),
        (1000, "unknown"),
        ("很多", "unknown"),
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_sales_kind_says_what_sales_counts(raw: Any, expected: str | None) -> None:
    assert sales_kind(raw) == expected
