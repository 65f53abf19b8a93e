"""Settings checks: the project's own defaults pass, and every bad value names its setting in one line."""

from __future__ import annotations

import re
from typing import Any

import pytest
from scrapy.settings import Settings

import pipeline.settings as project_settings
from pipeline.components.checks import check_settings
from pipeline.configuration import dataset_formats, list_setting, seconds, whole_number
from pipeline.errors import ConfigurationError


def settings(**overrides: Any) -> Settings:
    values = {k: v for k, v in vars(project_settings).items() if k.isupper()}
    values.update(overrides)
    return Settings(values)


def test_the_project_defaults_pass() -> None:
    check_settings(settings())


@pytest.mark.parametrize(
    "value, expected",
    [('["parquet"]', ["parquet"]), ("csv, parquet", ["csv", "parquet"]), (["csv"], ["csv"])],
)
def test_list_settings_take_json_text_or_commas(value: Any, expected: list[str]) -> None:
    assert list_setting(settings(DATASET_FORMATS=value), "DATASET_FORMATS") == expected
    assert dataset_formats(settings(DATASET_FORMATS=value)) == expected


@pytest.mark.parametrize("value", ["abc", "-1", "", None, "1.5"])
def test_whole_numbers(value: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^RETRY_TIMES=.* is not a whole number >= 0, e\.g\. RETRY_TIMES=5$"):
        whole_number("RETRY_TIMES", value, minimum=0)


def test_numbers_in_the_usual_forms() -> None:
    assert whole_number("X", "100_000") == 100_000 and whole_number("X", 7) == 7
    assert seconds("X", "0.25") == 0.25
    with pytest.raises(ConfigurationError, match="X='nan'"):
        seconds("X", "nan")


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("IMAGESEARCH_SIGN_METHOD", "sha1", "is not a TOP sign method"),
        ("IMAGESEARCH_ENDPOINT", "gw.api.taobao.com", "neither 'sandbox' nor an http(s) URL"),
        ("IMAGESEARCH_QUOTA", "1000 per hour", "expected CALLS/SECONDS"),
        ("DATASET_RUN_DATE", "2026-02-30", "DATASET_RUN_DATE='2026-02-30'"),
        ("PARQUET_COMPRESSION", "zip", "is not a codec pyarrow has"),
        ("DOWNLOAD_TIMEOUT", "0", "DOWNLOAD_TIMEOUT='0'"),
    ],
)
def test_bad_values_name_their_setting(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(fragment)) as raised:
        check_settings(settings(**{name: value}))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("codec", ["zstd", "snappy", "gzip", "none", "NONE"])
def test_codecs_pyarrow_has_pass(codec: str) -> None:
    check_settings(settings(PARQUET_COMPRESSION=codec))
