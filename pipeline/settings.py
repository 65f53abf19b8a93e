"""Scrapy settings for the image-search pipeline: every setting a user may change, with its one default.

Override any of them with ``scrapy crawl imagesearch -s NAME=value``. The ``IMAGESEARCH_GATEWAY``,
``IMAGESEARCH_ENDPOINT``, ``IMAGESEARCH_APP_KEY``, ``IMAGESEARCH_APP_SECRET`` and
``IMAGESEARCH_SIGN_METHOD`` settings also read environment variables of the same names (``-s`` wins
over the environment).
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
#: Scrapy's telnet console and remote-control HTTP server run code inside the crawl, where the app
#: secret is: any local process of the same user could read it (and the remote control leaves a
#: job file with its token behind after a kill). Both stay off unless you turn them on.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
LOG_LEVEL = "INFO"
#: Requests in flight at once: the gateway's calls (at most CONCURRENT_REQUESTS_PER_DOMAIN; its quota,
#: IMAGESEARCH_QUOTA, not politeness, limits a crawl) and the listings' pictures (DOWNLOAD_SLOTS).
CONCURRENT_REQUESTS = 12
CONCURRENT_REQUESTS_PER_DOMAIN = 8
#: The CDN's politeness: the listings' pictures have a download slot of their own, ``pictures``, with
#: this many at once and this delay between them (seconds), whatever their host.
DOWNLOAD_SLOTS = {"pictures": {"concurrency": 4, "delay": 0.0}}
DOWNLOAD_DELAY = 0
#: Seconds before a call is abandoned and retried.
DOWNLOAD_TIMEOUT = 60
COOKIES_ENABLED = False

# ---------------------------------------------------------------------------------------------
# Gateway (spider, signing, errors)
# ---------------------------------------------------------------------------------------------
#: Which API to speak: ``top`` (the TOP router, the article's ``taobao.image.search``), ``onebound``
#: (Onebound's ``item_search_img``), ``aliyun`` (Alibaba Cloud Image Search, Taobao-Union edition, the
#: official route; see README "Choosing a gateway"), or the import path of a pipeline.gateways.base.Gateway class.
IMAGESEARCH_GATEWAY = os.environ.get("IMAGESEARCH_GATEWAY", "top")
#: ``sandbox`` (default) starts the embedded sandbox, which speaks every gateway, on a free loopback
#: port; otherwise the gateway's URL: for top the router URL (``https://eco.taobao.com/router/rest``),
#: for onebound the base URL (``https://api-gw.onebound.cn``), for aliyun the region's endpoint
#: (``https://imagesearch.cn-shanghai.aliyuncs.com``).
IMAGESEARCH_ENDPOINT = os.environ.get("IMAGESEARCH_ENDPOINT", "sandbox")
#: Your app key (env IMAGESEARCH_APP_KEY), for aliyun the AccessKey ID; the embedded sandbox knows ``test``.
IMAGESEARCH_APP_KEY = os.environ.get("IMAGESEARCH_APP_KEY", "test")
#: Your app secret (env IMAGESEARCH_APP_SECRET), for aliyun the AccessKey secret. Used only to sign calls;
#: never logged or exported.
IMAGESEARCH_APP_SECRET = os.environ.get("IMAGESEARCH_APP_SECRET", "test")
#: A pool of app keys to spread the calls over, each with its own quota: ``KEY[:CALLS/SECONDS]``
#: separated by commas (IMAGESEARCH_QUOTA when no quota is given). Each call goes to the key whose next
#: free slot comes first, so the crawl's rate is the sum of the quotas. The secrets come from the file
#: IMAGESEARCH_APP_SECRETS_FILE or the environment (``IMAGESEARCH_APP_SECRET_<KEY>``), never the
#: command line (README "Several app keys"). Empty: IMAGESEARCH_APP_KEY alone.
IMAGESEARCH_APP_KEYS: list[str] = []
#: A file of ``KEY=SECRET`` lines, one per key of IMAGESEARCH_APP_KEYS (keep it readable by you alone).
IMAGESEARCH_APP_SECRETS_FILE = os.environ.get("IMAGESEARCH_APP_SECRETS_FILE", "")
#: top: md5, hmac (HMAC-MD5) or hmac-sha256.
IMAGESEARCH_SIGN_METHOD = os.environ.get("IMAGESEARCH_SIGN_METHOD", "md5")
#: onebound: ``no`` asks for fresh answers, ``yes`` (Onebound's own default) takes its cached ones.
IMAGESEARCH_ONEBOUND_CACHE = "no"
#: onebound: the language of titles, ``cn``, ``en`` or ``ru``.
IMAGESEARCH_ONEBOUND_LANG = "cn"
#: aliyun: results per page (``Num``, 1 to 20); pages are ``Start`` windows of it, up to Start 499.
IMAGESEARCH_ALIYUN_NUM = 20
#: aliyun: the result fields asked for (``Fields``); ItemId is always asked for, and PicUrl, ReservePrice,
#: Title, Url and ZkFinalPrice always come. Empty: those the datasets' columns need.
IMAGESEARCH_ALIYUN_FIELDS: list[str] = []
#: aliyun: let the service find the product in the photo and search it (``Crop``; the seeds table then
#: says region_source service); False searches the whole picture. A photo the pipeline cut already (a
#: region, or IMAGESEARCH_CROP=auto) is sent with Crop=false.
IMAGESEARCH_ALIYUN_CROP = True
#: aliyun: the product's box in every photo, ``x1,x2,y1,y2`` pixels (``Region``; it overrides Crop). Empty: none.
IMAGESEARCH_ALIYUN_REGION = ""
#: aliyun: your Taobao-Union PID, ``mm_<account>_<site>_<adzone>`` (``Pid``; the service's SDK samples
#: mark it required, the sandbox does not). Empty: not sent.
IMAGESEARCH_ALIYUN_PID = os.environ.get("IMAGESEARCH_ALIYUN_PID", "")
#: aliyun: your Taobao-Union channel id (``RelationId``). Empty: not sent.
IMAGESEARCH_ALIYUN_RELATION_ID = ""
#: aliyun: only Tmall (``1`` or ``tmall``) or only Taobao (``0`` or ``taobao``) sellers (``UserType``). Empty: both.
IMAGESEARCH_ALIYUN_USER_TYPE = ""
#: aliyun: ``v3`` signs each call with Alibaba Cloud's V3 signature (ACS3-HMAC-SHA256, what its SDK sends);
#: ``v2`` with the older RPC signature (HMAC-SHA1, SignatureVersion 1.0).
IMAGESEARCH_ALIYUN_SIGNATURE = "v3"
#: Most result pages fetched per seed image (``-a pages=N`` overrides it per crawl).
IMAGESEARCH_PAGES = 5
#: Results per page assumed when page 1 comes back empty; otherwise page 1's item count is the page size.
IMAGESEARCH_PAGE_SIZE = 20
#: Longest side, in pixels, of the JPEG sent for a local image (larger images are scaled down).
IMAGESEARCH_MAX_IMAGE_SIDE = 1024
#: Local images with more pixels than this are refused as image_too_large (decompression bombs).
IMAGESEARCH_MAX_IMAGE_PIXELS = 89_478_485
#: What of a seed photo without a region is searched: "none", the whole photo; "auto", the subject a local
#: detector finds (pipeline/crop.py), the whole photo when it finds none or the subject fills the frame.
#: Off by default: it finds a product in a cluttered frame, and costs matches on a photo of the product
#: alone (bench/bench_matches.py).
IMAGESEARCH_CROP = "none"
#: Hosts (fnmatch patterns) of the platform's own CDN: their URLs are searched as they are; any other
#: image URL is downloaded by the crawl (no call) and sent like a local photo.
IMAGESEARCH_CDN_HOSTS = ["*.alicdn.com", "*.tbcdn.cn", "*.taobaocdn.com"]
#: Your changes to the gateway's table of actions per error (a dict, or JSON with -s), merged over it;
#: a value of None removes a key. Keys are "code" or "code:glob", the code itself a glob or not ("*" for any
#: code, "Throttling*" for aliyun's throttling codes), the glob matched
#: against the sub_code, or the msg ignoring case; the most specific matching key wins (an exact code before
#: a code glob, the longer glob first, before "*"; then with a sub_code glob before without). Actions: fatal
#: (stop the crawl, exit 3), retry, throttle (wait out the ban), seed_error (record it on the seed, go
#: on), stop (the day's quota is spent: stop cleanly, exit 4, resumable). Each gateway's own table is
#: in its package (pipeline/gateways/<name>/gateway.py) and in README "Errors".
IMAGESEARCH_ERROR_ACTIONS: dict[str, str | None] = {}
#: Seconds before the first retry of a failed call, doubled on each further retry.
IMAGESEARCH_RETRY_BACKOFF = 1.0
#: Longest wait, in seconds, between two retries of a call.
IMAGESEARCH_RETRY_BACKOFF_MAX = 30.0
#: How often one call is re-sent after quota answers before its seed is recorded as failed.
IMAGESEARCH_THROTTLE_MAX_TIMES = 30
#: Seconds to pause after a quota answer that does not say how long the ban lasts.
IMAGESEARCH_THROTTLE_DEFAULT_WAIT = 60.0
#: Seconds without an answer from a gateway that did answer before, after which the log says so (and
#: again every as many seconds while it lasts); 0 never. A gateway that never answered stops the crawl.
IMAGESEARCH_OUTAGE_WARNING = 60.0
#: Extra ``python -m sandbox`` flags for the embedded sandbox, e.g. ["--page-size", "10"].
IMAGESEARCH_SANDBOX_ARGS: list[str] = []
#: Retries of a call sent before the gateway has answered once (after that, RETRY_TIMES): an
#: endpoint that refuses, does not resolve or is not the gateway stops the crawl in seconds (exit 7).
IMAGESEARCH_PROBE_RETRY_TIMES = 2
#: Retries of a call after HTTP 5xx, timeouts, dropped connections, broken bodies or transient codes.
#: 8 because at 1000 calls an hour a seed lost to a burst of 5xx costs more than a retry: if 19% of
#: attempts fail, a call is lost with p = 0.19^(1+8) = 3e-7 (with 3 retries 1.2e-3, which loses a seed
#: in 4 crawls of 400 calls out of 10), and with the default backoff the retries span 2 minutes.
RETRY_TIMES = 8
#: GatewayJournalMiddleware (resume) and GatewayMiddleware (pacing, backoff, error actions, call stats).
DOWNLOADER_MIDDLEWARES = {
    # First: with JOBDIR, answers already journaled are served from JOBDIR, new ones journaled.
    "pipeline.components.journal.GatewayJournalMiddleware": 50,
    "pipeline.components.middlewares.GatewayMiddleware": 560,
}
#: Gateway calls are signed by this download handler as they are sent (a fresh timestamp and
#: signature for every attempt), and the signed copy goes nowhere but the network.
DOWNLOAD_HANDLERS = {
    "http": "pipeline.components.handlers.GatewayDownloadHandler",
    "https": "pipeline.components.handlers.GatewayDownloadHandler",
}
#: The download handler that does the downloading for GatewayDownloadHandler (Scrapy's HTTP/1.1 one).
IMAGESEARCH_DOWNLOAD_HANDLER = "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler"
#: SecretRedaction masks the app key and secret in every log line; EmbeddedSandbox starts the
#: sandbox when IMAGESEARCH_ENDPOINT is "sandbox" (or empty); CrawlProgress shows the crawl's
#: progress (PROGRESS_*), in place of Scrapy's LogStats ("Crawled N pages (at M pages/min)").
#: Scrapy's SpiderState is off: the spider keeps no ``spider.state``, and its write into JOBDIR at the
#: very end (after the commit) was the one JOBDIR write a full disk could fail once the run was committed.
EXTENSIONS = {
    "pipeline.components.extensions.SecretRedaction": 0,
    "pipeline.components.extensions.EmbeddedSandbox": 100,
    "pipeline.monitor.progress.CrawlProgress": 400,
    # The run's report, written once the run is committed (REPORT_ENABLED).
    "pipeline.monitor.runreport.RunReport": 500,
    # With -o/-O/FEEDS: out.parquet.manifest.json beside each local feed file (run id, rows, complete).
    "pipeline.components.feedmanifest.FeedManifest": 600,
    # The run's summary posted to IMAGESEARCH_ALERT_URLS when it ends.
    "pipeline.monitor.alerting.RunAlerts": 700,
    "scrapy.extensions.logstats.LogStats": None,
    "scrapy.extensions.spiderstate.SpiderState": None,
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
#: The CSV files' dialect. ``standard``: UTF-8, ISO 8601 times, every value as in Parquet; what DuckDB,
#: pandas, polars, Spark and Power BI read (docs/schema.md gives each reader's options). ``excel``: for a
#: double-click in Excel: a UTF-8 BOM, ids as ``="652345678901"`` (kept exact), a ``'`` before text
#: that would start a formula, times as ``2026-11-25 10:15:00`` (UTC); other readers then get ids as
#: text and titles with the ``'``. Applies to the CSV tree and to -o/-O CSV feeds.
CSV_DIALECT = "standard"
#: Rows per file before a new one (<run_id>-00002...) is started; 0 for one file per table and run.
DATASET_BATCH_ITEMS = 100_000
#: The run id stamped on every row and in every file name. Empty: generated per crawl
#: (``20261125T101500Z-3fa2c1``), or the one JOBDIR remembers when a crawl is resumed.
#: Reusing an id replaces that run's files and manifest, in the dt partition it was committed under.
DATASET_RUN_ID = None
#: The dt partition (YYYY-MM-DD). Empty: the run's UTC start date; a resumed run, or a run id run
#: again, keeps the dt it had.
DATASET_RUN_DATE = None
#: Rows per Parquet row group, which is also how many rows a writer holds in memory.
PARQUET_ROW_GROUP_SIZE = 10_000
#: Parquet compression codec (zstd, snappy, gzip, none).
PARQUET_COMPRESSION = "zstd"
#: DatasetAddon resolves the run id and enables pipeline.components.datasetrun.DatasetRun, which stages every hit and
#: seed and, when the crawl ends, builds products, matches and seeds and commits them (unless
#: -o/-O/FEEDS are given: then those feeds get the hits and seeds as they come).
ADDONS = {"pipeline.components.datasetrun.DatasetAddon": 0}
ITEM_PIPELINES = {
    "pipeline.components.pipelines.ValidatePipeline": 100,
    "pipeline.components.pipelines.NormalizePipeline": 200,
    "pipeline.components.pictures.ListingPicturesPipeline": 300,
}

# ---------------------------------------------------------------------------------------------
# The listings' pictures and offer groups (pipeline/components/pictures.py, pipeline/pictures.py)
# ---------------------------------------------------------------------------------------------
#: Fetch each listing's main picture (no API call, no quota) for its pic_hash and the offer groups;
#: False: no pictures, every listing an offer of its own.
IMAGESEARCH_PICTURES = True
#: Where the pictures are kept, a local directory: a cache keyed by picture URL for the daily refreshes.
#: Empty: ``_pictures/`` in DATASET_DIR, beside the datasets it serves (with -o/-O feeds, which write no
#: datasets: ~/.cache/taobao-imagesearch/pictures).
IMAGESEARCH_PICTURES_STORE = ""
#: Days a fetched picture is good for before it is fetched again.
IMAGESEARCH_PICTURES_EXPIRES = 30
#: Retries of a picture that failed (a 5xx, a timeout), then it is counted missing.
IMAGESEARCH_PICTURES_RETRY_TIMES = 1
#: Seconds before a picture's download is abandoned.
IMAGESEARCH_PICTURES_TIMEOUT = 20.0
# ---------------------------------------------------------------------------------------------
# Data-quality checks and alerts (pipeline/runs/quality.py, pipeline/monitor/alerting.py)
# ---------------------------------------------------------------------------------------------
#: Changes to the checks at commit (pipeline.runs.quality.CHECKS; README "Checks and alerts"): a JSON
#: object of check name -> {"threshold": number, "on_fail": "warn" | "fail" | "off"}. A check set to fail
#: that fails exits 8; the run is committed and marked either way.
IMAGESEARCH_CHECKS: dict[str, dict[str, object]] = {}
#: Webhooks posted the run's summary when it ends: Slack-compatible (Slack, Mattermost, Discord's /slack),
#: DingTalk robot (``...&secret=SEC...`` to sign), Feishu/Lark (``?secret=...`` to sign), WeCom; a
#: ``dingtalk+``, ``feishu+``, ``wecom+`` or ``slack+`` prefix names the format where the host does not.
#: Comma-separated or a list. Empty: no alerts.
IMAGESEARCH_ALERT_URLS = os.environ.get("IMAGESEARCH_ALERT_URLS", "")
#: Which ends of a run are posted: finished, stopped, failed, checks_failed.
IMAGESEARCH_ALERT_ON = ["finished", "stopped", "failed", "checks_failed"]
#: Seconds an attempt to post an alert waits.
IMAGESEARCH_ALERT_TIMEOUT = 5.0
#: Retries of a webhook that failed (5xx, 429, no answer).
IMAGESEARCH_ALERT_RETRIES = 2
#: Seconds all the posting of a run may take together, whatever the webhooks do.
IMAGESEARCH_ALERT_DEADLINE = 8.0
#: Largest pic_hash distance (bits of 64) of two listings of one offer (chosen on bench/bench_offers.py).
IMAGESEARCH_OFFER_MAX_DISTANCE = 10
#: Largest colour distance (root mean square over pic_colour's 4x4 grid, 0..255) of two listings of one offer.
IMAGESEARCH_OFFER_MAX_COLOUR = 12.0
#: Exporters for feeds of your own: -O out.parquet writes the hits table (or item_export_kwargs table).
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
# Progress and the run report
# ---------------------------------------------------------------------------------------------
#: Show the crawl's progress: seeds done by outcome, calls spent and still needed, the quota, waits,
#: bans, errors, an outage, and an ETA worked out from the calls still needed and the quota.
PROGRESS_ENABLED = True
#: Seconds between two plain progress lines in the log (the bar on a terminal is redrawn every second).
PROGRESS_INTERVAL = 60.0
#: ``auto``: a live bar when stderr is a terminal, plain lines in the log otherwise (both with
#: LOG_FILE on a terminal); ``bar`` or ``log`` for one of them whatever stderr is.
PROGRESS_MODE = "auto"
#: Write the run's visual report, DATASET_DIR/_reports/<run_id>.html, at commit (``scrapy report
#: RUN_ID`` writes it again from the datasets at any time).
REPORT_ENABLED = True
#: Matches shown per seed in the report, best first.
REPORT_TOP_MATCHES = 8
#: Seeds per page of the report (its pages are switched in the browser, within the one file).
REPORT_PAGE_SEEDS = 50

# ---------------------------------------------------------------------------------------------
# Search service (scrapy serve)
# ---------------------------------------------------------------------------------------------
#: Address ``scrapy serve`` listens on. 127.0.0.1 serves this machine only; 0.0.0.0 every interface (put
#: it behind a reverse proxy with TLS: the service has no authentication of its own).
IMAGESEARCH_SERVE_HOST = "127.0.0.1"
#: Port ``scrapy serve`` listens on (0: any free port; the log line "Search service at ..." says which).
IMAGESEARCH_SERVE_PORT = 6810
#: Result pages a search fetches when the caller gives no ``pages``.
IMAGESEARCH_SERVE_PAGES = 1
#: The most pages a caller may ask for in one search (each uncached page is a call).
IMAGESEARCH_SERVE_MAX_PAGES = 5
#: Seconds a page of results stays in the cache (a repeated photo, category and page cost no call); 0
#: turns the cache off. The cache is a file under IMAGESEARCH_SERVE_CACHE_DIR, or Redis with
#: IMAGESEARCH_REDIS_URL; either survives a restart.
IMAGESEARCH_SERVE_CACHE_TTL = 86400.0
#: Where the service's cache file lives (without IMAGESEARCH_REDIS_URL).
IMAGESEARCH_SERVE_CACHE_DIR = "data/serve-cache"
#: Seconds a search may wait for its call's quota slot (or a ban's end); longer, and the caller gets 429
#: with Retry-After instead of a hung connection. Crawls and services on the same Redis share the quota.
IMAGESEARCH_SERVE_MAX_WAIT = 10.0
#: Seconds a search may take in all, retries and bans included; past it the caller gets 504 (no answer
#: in time) or 429 (a ban longer than that), with Retry-After, and no more is sent for it.
IMAGESEARCH_SERVE_TIMEOUT = 30.0
#: Largest photo a caller may send, in bytes (413 over it).
IMAGESEARCH_SERVE_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Download a caller's image URL that is not on the platform's CDN (IMAGESEARCH_CDN_HOSTS) and search
#: the picture; False: such URLs get 400 (a public service may not want to fetch URLs its callers choose).
#: Only hosts with public addresses are fetched (and the gateway endpoint's own host, whose pictures the
#: sandbox serves): never loopback, private or link-local ones, redirects included.
IMAGESEARCH_SERVE_DOWNLOAD_URLS = True

# ---------------------------------------------------------------------------------------------
# Long crawls (pacing, faults, resume)
# ---------------------------------------------------------------------------------------------
#: Gateway quota as CALLS/SECONDS per app key; calls are paced so the crawl never meets the quota
#: error. None: the gateway's own, 1000/3600 for top and onebound (the article: 1000 calls an hour),
#: 5/1 for aliyun (the product's default 5 searches a second). Empty disables pacing.
IMAGESEARCH_QUOTA: str | None = None
#: Seconds added to the quota window: the gateway counts a call when it processes it, which under
#: load comes later than we sent it (bench/bench_quota.py: 0.25 s met quota errors, 1.0 s none).
#: None: the gateway's own, 1.0 for top and onebound, 0.2 for aliyun (its window is a second).
IMAGESEARCH_QUOTA_MARGIN: float | None = None
#: Where pacing state lives (import path of a pipeline.pacing.quota.QuotaStore); in memory for one crawler.
IMAGESEARCH_QUOTA_STORE = "pipeline.pacing.quota.InMemoryQuotaStore"
#: ``redis://[:password@]host:port/db``: this crawl is a worker of a shared run (README "Many workers,
#: one run"): the seeds are handed out through Redis to every crawl started with the same DATASET_RUN_ID,
#: the quota of each app key is shared by every crawl of this Redis, and one worker commits the run.
#: Empty: the crawl is on its own and needs no Redis. (Also read from the environment.)
IMAGESEARCH_REDIS_URL = os.environ.get("IMAGESEARCH_REDIS_URL", "")
#: Seconds a worker's lease on a seed lasts without its heartbeat (renewed every quarter of it): a worker
#: that dies loses its seeds to the others this long after.
IMAGESEARCH_REDIS_LEASE_SECONDS = 60.0
#: Seconds a finished search may wait in memory before its rows are written to a part file and it is
#: acked (done) in Redis; also written at STAGE_ROWS rows. A worker that is killed redoes at most this
#: much work; a part file is written at most this often.
IMAGESEARCH_REDIS_FLUSH_SECONDS = 60.0
#: This worker's name in a shared run (letters, digits, ``.``, ``_``, ``-``). Empty: ``<host>-<pid>``,
#: remembered in JOBDIR so that a restarted worker takes its own leases back.
IMAGESEARCH_WORKER = ""
#: With JOBDIR, gateway answers are journaled there and a restarted crawl resumes from them;
#: Scrapy's disk request queue is off, since the crawl rebuilds its requests from the seeds.
SCHEDULER = "pipeline.components.journal.JournalScheduler"
#: Every gateway call is sent with ``dont_filter`` (a call is never a duplicate: retries and pages are
#: distinct calls), so Scrapy's fingerprint filter has nothing to do; its JOBDIR file (requests.seen)
#: would be one more write a full disk could fail. With JOBDIR, only the lock, the run's identity and
#: the journal are written there, all before the commit.
DUPEFILTER_CLASS = "scrapy.dupefilters.BaseDupeFilter"
