"""Scrapy settings for the image-search pipeline: every setting a user may change, with its one default.

Override any of them with ``scrapy crawl imagesearch -s NAME=value``. The ``IMAGESEARCH_ENDPOINT``,
``IMAGESEARCH_APP_KEY``, ``IMAGESEARCH_APP_SECRET`` and ``IMAGESEARCH_SIGN_METHOD`` settings also
read environment variables of the same names (``-s`` wins over the environment).
See README.md "Settings" for the full table.
"""

from __future__ import annotations

import os

BOT_NAME = "imagesearch"
SPIDER_MODULES = ["spiders"]
NEWSPIDER_MODULE = "spiders"

ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"
# The gateway's quota, not politeness towards a website, is what limits us: see IMAGESEARCH_QUOTA.
CONCURRENT_REQUESTS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_DELAY = 0
DOWNLOAD_TIMEOUT = 60
COOKIES_ENABLED = False

# ---------------------------------------------------------------------------------------------
# Gateway (spider, signing, errors)
# ---------------------------------------------------------------------------------------------
#: ``sandbox`` (default) starts the embedded sandbox on a free loopback port; otherwise the TOP
#: router URL, e.g. ``https://eco.taobao.com/router/rest``.
IMAGESEARCH_ENDPOINT = os.environ.get("IMAGESEARCH_ENDPOINT", "sandbox")
IMAGESEARCH_APP_KEY = os.environ.get("IMAGESEARCH_APP_KEY", "test")
IMAGESEARCH_APP_SECRET = os.environ.get("IMAGESEARCH_APP_SECRET", "test")
#: md5, hmac (HMAC-MD5) or hmac-sha256.
IMAGESEARCH_SIGN_METHOD = os.environ.get("IMAGESEARCH_SIGN_METHOD", "md5")

# ---------------------------------------------------------------------------------------------
# Datasets (item pipelines, exporters)
# ---------------------------------------------------------------------------------------------
#: Root of the partitioned dataset tree: DATASET_DIR/<format>/<table>/dt=<YYYY-MM-DD>/<run_id>-<NNNNN>.<ext>
#: Run manifests go to DATASET_DIR/_manifests/<run_id>.json, written last: a run without one is unfinished.
DATASET_DIR = "data/datasets"
#: Formats written, each in its own tree (parquet, csv). ``-s DATASET_FORMATS=parquet`` for one.
DATASET_FORMATS = ["parquet", "csv"]
#: Rows per file before a new one (<run_id>-00002...) is started; 0 for one file per table and run.
DATASET_BATCH_ITEMS = 100_000
#: The run id stamped on every row and in every file name. Empty: generated per crawl
#: (``20261125T101500Z-3fa2c1``), or the one JOBDIR remembers when a crawl is resumed.
#: Reusing an id replaces that run's files and manifest.
DATASET_RUN_ID = None
#: The dt partition (YYYY-MM-DD). Empty: the run's UTC start date.
DATASET_RUN_DATE = None
#: Rows per Parquet row group, which is also how many rows an exporter holds in memory.
PARQUET_ROW_GROUP_SIZE = 10_000
#: Parquet compression codec (zstd, snappy, gzip, none).
PARQUET_COMPRESSION = "zstd"
#: DatasetAddon resolves the run id and, unless -o/-O/FEEDS are given, builds FEEDS from the settings above.
ADDONS = {"exporters.addon.DatasetAddon": 0}
ITEM_PIPELINES = {
    "pipeline.pipelines.ValidatePipeline": 100,
    "pipeline.pipelines.NormalizePipeline": 200,
    "pipeline.pipelines.DeduplicatePipeline": 300,
}
FEED_EXPORTERS = {
    "parquet": "exporters.itemexporters.ParquetItemExporter",
    "csv": "exporters.itemexporters.CsvItemExporter",
}
#: Local files are written under a dot-prefixed temporary name and renamed when complete.
FEED_STORAGES = {
    "": "exporters.storage.AtomicFileFeedStorage",
    "file": "exporters.storage.AtomicFileFeedStorage",
}

# ---------------------------------------------------------------------------------------------
# Long crawls (pacing, faults, resume)
# ---------------------------------------------------------------------------------------------
#: Gateway quota as CALLS/SECONDS per app key; calls are paced so the crawl never meets the quota
#: error (the article: 1000 calls an hour). Empty disables pacing.
IMAGESEARCH_QUOTA = "1000/3600"
#: Seconds added to the quota window to absorb latency jitter between us and the gateway.
IMAGESEARCH_QUOTA_MARGIN = 0.25
#: Where pacing state lives (import path of a pipeline.pacing.QuotaStore); in memory for one crawler.
IMAGESEARCH_QUOTA_STORE = "pipeline.pacing.InMemoryQuotaStore"
