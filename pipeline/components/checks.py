"""The settings a user may get wrong, checked once before the crawl sends anything: one line for a bad value.

``check_settings`` runs when the spider is built (``ImageSearchSpider.configure``), before any
component reads the settings, so the components can read them with Scrapy's ``getint`` /
``getfloat`` knowing the values are good. Every failure is a ConfigurationError naming the
setting, its value and what it should look like; the ``crawl`` command prints it as one line and
exits 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scrapy.utils.misc import load_object

from exporters.layout import safe_component, safe_date
from pipeline.alerts import alert_outcomes, parse_urls
from pipeline.configuration import (
    IMPORT_PATH_SETTINGS,
    INT_SETTINGS,
    NO_COMPRESSION,
    SECONDS_SETTINGS,
    csv_dialect,
    dataset_formats,
    seconds,
    wants_sandbox,
    whole_number,
)
from pipeline.crop import CROP_MODES
from pipeline.errors import ConfigurationError
from pipeline.gateways.base import gateway_class, quota_margin_setting, quota_setting
from pipeline.pacing.apps import Quota, app_pool
from pipeline.runs.quality import check_settings as quality_checks

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

    from pipeline.gateways.base import Gateway


def check(name: str, value: Any, check: Callable[[Any], Any]) -> None:
    """Run ``check(value)``; its ValueError becomes a ConfigurationError (whose message already names the setting)."""
    try:
        check(value)
    except ConfigurationError:
        raise
    except ValueError as exc:
        message = str(exc)
        raise ConfigurationError(message if name in message else f"{name}={value!r}: {message}") from None


def check_endpoint(value: Any, gateway: type[Gateway]) -> None:
    if wants_sandbox(value):
        return
    parts = urlsplit(str(value).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"IMAGESEARCH_ENDPOINT={value!r} is neither 'sandbox' nor an http(s) URL: "
            f"give the {gateway.name} gateway's URL, e.g. {gateway.public_endpoint}"
        )
    if parts.username or parts.password or parts.query:
        # Credentials go in IMAGESEARCH_APP_KEY / _SECRET, which are kept out of every log line.
        raise ConfigurationError(
            "IMAGESEARCH_ENDPOINT must not carry credentials or a query string: "
            "give the key and secret as IMAGESEARCH_APP_KEY and IMAGESEARCH_APP_SECRET"
        )


def check_credential(name: str, value: Any) -> None:
    """An app key or secret must be text that can be signed (UTF-8); its value is never shown."""
    text = str(value or "")
    if not text.strip():
        raise ConfigurationError(f"{name} is empty: set it with -s {name}=... or the environment variable {name}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # The environment or the command line gave bytes that are not UTF-8 (Python keeps them as
        # surrogates): no signature can be made of them. The value stays unshown, even in part.
        raise ConfigurationError(
            f"{name} is not valid UTF-8 text (the value is not shown): set it again as the text the vendor gave"
        ) from None


def check_redis_url(value: Any) -> None:
    """IMAGESEARCH_REDIS_URL, if given, is a redis:// (or rediss://, unix://) URL; its password is never shown."""
    if not value:
        return
    parts = urlsplit(str(value))
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise ConfigurationError(
            "IMAGESEARCH_REDIS_URL is not a Redis URL: give redis://HOST:PORT/DB (redis://:PASSWORD@HOST:PORT/DB "
            "with a password)"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ConfigurationError("IMAGESEARCH_REDIS_URL has a port that is not a number in 1-65535") from None


def check_import_path(name: str, value: Any) -> None:
    try:
        load_object(value)
    except (ImportError, AttributeError, NameError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"{name}={value!r} cannot be imported ({type(exc).__name__}: {exc}): give module.Class"
        ) from None


def check_compression(value: Any) -> None:
    import pyarrow as pa

    codec = str(value or "none").strip().lower()
    if codec in NO_COMPRESSION:
        return
    try:
        available = pa.Codec.is_available(codec)  # type: ignore[arg-type]  # any name: unknown ones raise
    except ValueError:
        available = False
    if not available:
        raise ConfigurationError(
            f"PARQUET_COMPRESSION={value!r} is not a codec pyarrow has: use zstd, snappy, gzip, brotli, lz4 or none"
        )


def check_dataset_dir(settings: BaseSettings) -> None:
    """When the default dataset layout will be written, DATASET_DIR must be a directory we can create or write."""
    if settings.getdict("FEEDS") or settings.get("FEED_URI"):
        return
    if not str(settings.get("DATASET_DIR") or "").strip():
        raise ConfigurationError(
            "DATASET_DIR is empty: give the directory the datasets go to, e.g. -s DATASET_DIR=data/datasets"
        )
    directory = Path(settings["DATASET_DIR"])
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"DATASET_DIR={str(directory)!r} cannot be written ({probe} is not a writable directory): "
            "choose another with -s DATASET_DIR=PATH"
        )


def check_appended_feeds(settings: BaseSettings) -> None:
    """``-o`` appends to a feed file; a Parquet file cannot be appended to (its footer ends it)."""
    from exporters.layout import FORMAT_EXTENSIONS

    for uri, options in settings.getdict("FEEDS").items():
        options = options or {}
        if options.get("overwrite", False) or options.get("format") != "parquet":
            continue
        path = Path(uri[len("file://") :] if str(uri).startswith("file://") else str(uri))
        if "://" not in str(path) and path.is_file() and path.stat().st_size:
            raise ConfigurationError(
                f"-o {uri}: a Parquet file cannot be appended to; use -O to replace it, or a new file name "
                f"(the {', '.join(FORMAT_EXTENSIONS)} dataset layout keeps every run apart by itself)"
            )


def _colour_distance(value: Any) -> None:
    if not 0 <= float(value) <= 442:  # ValueError for a word, too
        raise ValueError("a colour distance is 0 to 442 (0..255 a channel)")


def check_settings(settings: BaseSettings) -> None:
    """Check INT_SETTINGS, SECONDS_SETTINGS and the structured settings; raise the first ConfigurationError."""
    for name, minimum in INT_SETTINGS.items():
        whole_number(name, settings.get(name), minimum)
    for name, least in SECONDS_SETTINGS.items():
        seconds(name, settings.get(name), least)
    for name in IMPORT_PATH_SETTINGS:
        check_import_path(name, settings.get(name))
    gateway = gateway_class(settings.get("IMAGESEARCH_GATEWAY") or "top")
    gateway.check_settings(settings)
    check_endpoint(settings.get("IMAGESEARCH_ENDPOINT"), gateway)
    for name in ("IMAGESEARCH_APP_KEY", "IMAGESEARCH_APP_SECRET"):
        check_credential(name, settings.get(name))
    check_dataset_dir(settings)
    check_appended_feeds(settings)
    if quota := quota_setting(settings):
        check("IMAGESEARCH_QUOTA", quota, Quota.parse)
    seconds("IMAGESEARCH_QUOTA_MARGIN", quota_margin_setting(settings), 0.0)
    for app in app_pool(settings, quota_setting(settings)):
        check_credential(f"IMAGESEARCH_APP_KEYS {app.label}", app.credentials.key)
    check_redis_url(settings.get("IMAGESEARCH_REDIS_URL"))
    if worker := settings.get("IMAGESEARCH_WORKER"):
        check("IMAGESEARCH_WORKER", worker, lambda v: safe_component(v, "worker name"))
    dataset_formats(settings)
    csv_dialect(settings)
    if run_id := settings.get("DATASET_RUN_ID"):
        check("DATASET_RUN_ID", run_id, lambda v: safe_component(v, "run id"))
    if run_date := settings.get("DATASET_RUN_DATE"):
        check("DATASET_RUN_DATE", run_date, safe_date)
    check_compression(settings.get("PARQUET_COMPRESSION"))
    quality_checks(settings.get("IMAGESEARCH_CHECKS"))
    check("IMAGESEARCH_ALERT_URLS", settings.get("IMAGESEARCH_ALERT_URLS"), parse_urls)
    check("IMAGESEARCH_ALERT_ON", settings.get("IMAGESEARCH_ALERT_ON"), alert_outcomes)
    check("IMAGESEARCH_OFFER_MAX_COLOUR", settings.get("IMAGESEARCH_OFFER_MAX_COLOUR"), _colour_distance)
    crop = str(settings.get("IMAGESEARCH_CROP") or "none").strip().lower()
    if crop not in CROP_MODES:
        raise ConfigurationError(f"IMAGESEARCH_CROP={settings.get('IMAGESEARCH_CROP')!r}: use one of "
                                 f"{', '.join(CROP_MODES)}")
