"""The headless Chromium the browser tests drive (Debian's chromium package; ``CHROMIUM`` names another)."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: Flags of a headless Chromium on a machine with no network and as root (see README "Tests").
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
