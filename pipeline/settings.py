"""Scrapy settings for the image-search pipeline: every setting a user may change, with its one default.

Override any of them with ``scrapy crawl imagesearch -s NAME=value``. The ``IMAGESEARCH_ENDPOINT``,
``IMAGESEARCH_APP_KEY``, ``IMAGESEARCH_APP_SECRET`` and ``IMAGESEARCH_SIGN_METHOD`` settings also
read environment variables of the same names (``-s`` wins over the environment).
See README.md "Settings" for the full table.
"""

from __future__ import annotations

import os

# ---------------------------------------------------------------------------------------------
# Scrapy (values this project changes from Scrapy's defaults)
# ---------------------------------------------------------------------------------------------
BOT_NAME = "imagesearch"
SPIDER_MODULES = ["spiders"]
NEWSPIDER_MODULE = "spiders"
#: The gateway is an API, not a website: there is no robots.txt to obey.
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"
#: Calls in flight at once. The gateway's quota (IMAGESEARCH_QUOTA), not politeness, limits a crawl.
CONCURRENT_REQUESTS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_DELAY = 0
#: Seconds before a call is abandoned and retried.
DOWNLOAD_TIMEOUT = 60
COOKIES_ENABLED = False

# ---------------------------------------------------------------------------------------------
# Gateway (spider, signing, errors)
# ---------------------------------------------------------------------------------------------
#: ``sandbox`` (default) starts the embedded sandbox on a free loopback port; otherwise the TOP
#: router URL, e.g. ``https://eco.taobao.com/router/rest``.
IMAGESEARCH_ENDPOINT = os.environ.get("IMAGESEARCH_ENDPOINT", "sandbox")
#: Your app key (env IMAGESEARCH_APP_KEY); the embedded sandbox knows ``test``.
IMAGESEARCH_APP_KEY = os.environ.get("IMAGESEARCH_APP_KEY", "test")
#: Your app secret (env IMAGESEARCH_APP_SECRET). Used only to sign calls; never logged or exported.
IMAGESEARCH_APP_SECRET = os.environ.get("IMAGESEARCH_APP_SECRET", "test")
#: md5, hmac (HMAC-MD5) or hmac-sha256.
IMAGESEARCH_SIGN_METHOD = os.environ.get("IMAGESEARCH_SIGN_METHOD", "md5")
#: Import path of the gateway class that builds calls and reads answers (see pipeline/gateways/base.py).
IMAGESEARCH_GATEWAY = "pipeline.gateways.top.TopGateway"
#: Most result pages fetched per seed image (``-a pages=N`` overrides it per crawl).
IMAGESEARCH_PAGES = 5
#: Results per page assumed when page 1 comes back empty; otherwise page 1's item count is the page size.
IMAGESEARCH_PAGE_SIZE = 20
#: Longest side, in pixels, of the JPEG sent for a local image (larger images are scaled down).
IMAGESEARCH_MAX_IMAGE_SIDE = 1024
#: Local images with more pixels than this are refused as image_too_large (decompression bombs).
IMAGESEARCH_MAX_IMAGE_PIXELS = 89_478_485
#: Hosts (fnmatch patterns) of the platform's own CDN: their URLs go as image_data, others are uploaded first.
IMAGESEARCH_CDN_HOSTS = ["*.alicdn.com", "*.tbcdn.cn", "*.taobaocdn.com"]
#: Default action per gateway error, keyed "code" or "code:glob" ("*" for any code), the glob matched
#: against the sub_code, or the msg ignoring case; the most specific matching key wins. Actions: fatal
#: (stop the crawl), retry, throttle (wait out the ban), seed_error (record it on the seed, go on).
#: Covers both the article's code table and real TOP's (api.md section 1), which disagree on 15 and 21:
#: 15 is a signature error unless its sub_code is isp.* or its msg says remote service error (TOP);
#: 21 is a bad image unless it says missing method (TOP), which this client never causes. TOP's 7 with
#: sub_code limited-by-app-access-count is the app's daily quota: no wait of minutes helps, so the crawl stops
#: (run it again once the quota resets; with JOBDIR it resumes).
#: Change it via IMAGESEARCH_ERROR_ACTIONS.
IMAGESEARCH_ERROR_ACTIONS_BASE = {
    "7": "throttle",
    "7:accesscontrol.limited-by-app-access-count": "fatal",
    "16": "throttle",
    "10": "retry",
    "15:isp.*": "retry",
    "15:remote service*": "retry",
    "*:isp.*": "retry",
    "malformed": "retry",
    "11": "fatal",
    "15": "fatal",
    "21:isv.missing-method": "fatal",
    "21:missing method*": "fatal",
    "21": "seed_error",
    "22": "fatal",
    "25": "fatal",
    "28": "fatal",
    "29": "fatal",
    "30": "fatal",
    "31": "fatal",
    "40": "fatal",
    "41": "seed_error",
    "*": "seed_error",
}
#: Your changes to the table above, merged over it (a dict, or JSON with -s); a value of None removes a key.
IMAGESEARCH_ERROR_ACTIONS: dict[str, str | None] = {}
#: Seconds before the first retry of a failed call, doubled on each further retry.
IMAGESEARCH_RETRY_BACKOFF = 1.0
#: Longest wait, in seconds, between two retries of a call.
IMAGESEARCH_RETRY_BACKOFF_MAX = 30.0
#: How often one call is re-sent after quota answers before its seed is recorded as failed.
IMAGESEARCH_THROTTLE_MAX_TIMES = 30
#: Seconds to pause after a quota answer that does not say how long the ban lasts.
IMAGESEARCH_THROTTLE_DEFAULT_WAIT = 60.0
#: Extra ``python -m sandbox`` flags for the embedded sandbox, e.g. ["--page-size", "10"].
IMAGESEARCH_SANDBOX_ARGS: list[str] = []
#: Retries of a call after HTTP 5xx, timeouts, dropped connections, broken bodies or transient codes.
#: 8 because at 1000 calls an hour a seed lost to a burst of 5xx costs more than a retry: if 19% of
#: attempts fail, a call is lost with p = 0.19^(1+8) = 3e-7 (with 3 retries 1.2e-3, which loses a seed
#: in 4 crawls of 400 calls out of 10), and with the default backoff the retries span 2 minutes.
RETRY_TIMES = 8
#: GatewayMiddleware (pacing, backoff, error actions, call stats) and TopSigningMiddleware (signs each attempt).
DOWNLOADER_MIDDLEWARES = {
    # First: with JOBDIR, answers already journaled are served from JOBDIR, new ones journaled.
    "pipeline.journal.GatewayJournalMiddleware": 50,
    "pipeline.middlewares.GatewayMiddleware": 560,
    # Last before the download handler, so every attempt is signed with a fresh timestamp.
    "pipeline.middlewares.TopSigningMiddleware": 950,
}
#: EmbeddedSandbox starts the sandbox when IMAGESEARCH_ENDPOINT is "sandbox" (or empty).
EXTENSIONS = {
    "pipeline.extensions.EmbeddedSandbox": 100,
}
#: Our ``crawl`` command: one-line errors and exit codes (2: bad arguments, 3: the gateway refused us).
COMMANDS_MODULE = "pipeline.commands"

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
#: Seconds added to the quota window: the gateway counts a call when it processes it, which under
#: load comes later than we sent it (bench/bench_quota.py: 0.25 s met quota errors, 1.0 s none).
IMAGESEARCH_QUOTA_MARGIN = 1.0
#: Where pacing state lives (import path of a pipeline.pacing.QuotaStore); in memory for one crawler.
IMAGESEARCH_QUOTA_STORE = "pipeline.pacing.InMemoryQuotaStore"
#: With JOBDIR, gateway answers are journaled there and a restarted crawl resumes from them;
#: Scrapy's disk request queue is off, since the crawl rebuilds its requests from the seeds.
SCHEDULER = "pipeline.journal.JournalScheduler"
