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
DATASET_DIR = "data/datasets"

# ---------------------------------------------------------------------------------------------
# Long crawls (pacing, faults, resume)
# ---------------------------------------------------------------------------------------------
