"""The settings' shared readers and parsers (lists, whole numbers, seconds, the dataset formats and CSV
dialect): the one place a setting's value is read the same way by every component.

The checks of every setting before the crawl sends anything are pipeline.components.checks'.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigurationError

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings


#: Whole-number settings and their least value.
INT_SETTINGS: dict[str, int] = {
    "IMAGESEARCH_PICTURES_EXPIRES": 0,
    "IMAGESEARCH_PICTURES_RETRY_TIMES": 0,
    "IMAGESEARCH_OFFER_MAX_DISTANCE": 0,
    "IMAGESEARCH_ALERT_RETRIES": 0,
    "IMAGESEARCH_PAGES": 1,
    "IMAGESEARCH_PAGE_SIZE": 1,
    "IMAGESEARCH_MAX_IMAGE_SIDE": 1,
    "IMAGESEARCH_MAX_IMAGE_PIXELS": 1,
    "IMAGESEARCH_THROTTLE_MAX_TIMES": 0,
    "DATASET_BATCH_ITEMS": 0,
    "PARQUET_ROW_GROUP_SIZE": 1,
    "RETRY_TIMES": 0,
    "IMAGESEARCH_PROBE_RETRY_TIMES": 0,
    "CONCURRENT_REQUESTS": 1,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
    "REPORT_TOP_MATCHES": 1,
    "REPORT_PAGE_SEEDS": 1,
    "IMAGESEARCH_SERVE_PORT": 0,
    "IMAGESEARCH_SERVE_PAGES": 1,
    "IMAGESEARCH_SERVE_MAX_PAGES": 1,
    "IMAGESEARCH_SERVE_MAX_UPLOAD_BYTES": 1,
}
#: Settings in seconds and their least value.
SECONDS_SETTINGS: dict[str, float] = {
    "IMAGESEARCH_PICTURES_TIMEOUT": 0.001,
    "IMAGESEARCH_ALERT_TIMEOUT": 0.001,
    "IMAGESEARCH_ALERT_DEADLINE": 0.001,
    "IMAGESEARCH_RETRY_BACKOFF": 0.0,
    "IMAGESEARCH_RETRY_BACKOFF_MAX": 0.0,
    "IMAGESEARCH_THROTTLE_DEFAULT_WAIT": 0.0,
    "IMAGESEARCH_OUTAGE_WARNING": 0.0,
    "IMAGESEARCH_REDIS_LEASE_SECONDS": 1.0,
    "IMAGESEARCH_REDIS_FLUSH_SECONDS": 0.0,
    "DOWNLOAD_TIMEOUT": 0.001,
    "DOWNLOAD_DELAY": 0.0,
    "IMAGESEARCH_SERVE_CACHE_TTL": 0.0,
    "IMAGESEARCH_SERVE_MAX_WAIT": 0.0,
    "IMAGESEARCH_SERVE_TIMEOUT": 1.0,
}
#: Settings that name a class by its import path.
IMPORT_PATH_SETTINGS: tuple[str, ...] = ("IMAGESEARCH_QUOTA_STORE", "IMAGESEARCH_DOWNLOAD_HANDLER")
#: PARQUET_COMPRESSION values meaning "no compression" (pyarrow's names).
NO_COMPRESSION = frozenset({"none", "uncompressed"})


#: The IMAGESEARCH_ENDPOINT value (also the empty value) that asks for the embedded sandbox.
SANDBOX_ENDPOINT = "sandbox"


def wants_sandbox(endpoint: str | None) -> bool:
    return (endpoint or "").strip().lower() in ("", SANDBOX_ENDPOINT)


def list_setting(settings: BaseSettings, name: str) -> list[str]:
    """A list setting that may also come from ``-s`` as a JSON list (``'["a", "b"]'``) or comma-separated text."""
    value = settings.get(name)
    if isinstance(value, str) and value.strip().startswith("["):
        return json_list(value, name)
    return [str(item).strip() for item in settings.getlist(name)]


def json_list(text: str, name: str) -> list[str]:
    """``text`` parsed as a JSON list of strings, else ConfigurationError naming ``name``."""
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{name} is not a JSON list: {exc}") from None
    if not isinstance(parsed, list):
        raise ConfigurationError(f"{name} is not a JSON list: {text!r}")
    return [str(item) for item in parsed]


def dataset_formats(settings: BaseSettings) -> list[str]:
    """DATASET_FORMATS as a list of known formats, else ConfigurationError."""
    from exporters.layout import FORMAT_EXTENSIONS

    formats = list_setting(settings, "DATASET_FORMATS")
    if not formats or any(f not in FORMAT_EXTENSIONS for f in formats):
        raise ConfigurationError(f"DATASET_FORMATS={formats!r}: choose one or more of {', '.join(FORMAT_EXTENSIONS)}")
    return formats


def csv_dialect(settings: BaseSettings) -> str:
    """CSV_DIALECT, one of exporters.itemexporters.CSV_DIALECTS, else ConfigurationError."""
    from exporters.itemexporters import CSV_DIALECTS

    dialect = str(settings.get("CSV_DIALECT") or "standard").strip().lower()
    if dialect not in CSV_DIALECTS:
        raise ConfigurationError(f"CSV_DIALECT={settings.get('CSV_DIALECT')!r}: choose {' or '.join(CSV_DIALECTS)}")
    return dialect


def whole_number(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else ConfigurationError naming ``name``."""
    try:
        number = int(str(value).strip().replace("_", ""))
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum:
        kind = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
        raise ConfigurationError(f"{name}={value!r} is not {kind}, e.g. {name}={max(minimum, 5)}")
    return number


def seconds(name: str, value: Any, minimum: float = 0.0) -> float:
    """``value`` as a float >= ``minimum``, else ConfigurationError naming ``name``."""
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number) or number < minimum:
        raise ConfigurationError(
            f"{name}={value!r} is not a number of seconds >= {minimum:g}, e.g. {name}=1.5"
        )
    return number
