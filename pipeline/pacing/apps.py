"""The app keys a crawl calls with: IMAGESEARCH_APP_KEY alone, or a pool named by IMAGESEARCH_APP_KEYS.

A pool spreads the calls over several keys, each with its own quota: every call goes to the key
whose next free slot comes first (pipeline.pacing.quota), so the crawl's rate is the sum of the quotas.
Each entry is ``KEY`` or ``KEY:CALLS/SECONDS`` (IMAGESEARCH_QUOTA when no quota is given). Secrets
never come from the command line: for each key, the first of

1. a ``KEY=SECRET`` line of the file IMAGESEARCH_APP_SECRETS_FILE (``#`` starts a comment line);
2. the environment variable ``IMAGESEARCH_APP_SECRET_<KEY>`` (the key in capitals, every other
   character than A-Z and 0-9 as ``_``);
3. IMAGESEARCH_APP_SECRET, for the key that is IMAGESEARCH_APP_KEY.

Logs, stats and errors name a key by its place in the pool (``key 2``), never by the key itself.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ConfigurationError

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

#: The request meta key of the pool index of the app key a call was booked on (and is signed with).
APP_META_KEY = "imagesearch_app"
_ENV_PREFIX = "IMAGESEARCH_APP_SECRET_"
_QUOTA_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Quota:
    """``calls`` per ``seconds``, e.g. ``Quota.parse("1000/3600")``."""

    calls: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Quota:
        match = _QUOTA_RE.match(str(text))
        if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
            raise ValueError(f"IMAGESEARCH_QUOTA={text!r}: expected CALLS/SECONDS, e.g. 1000/3600")
        return cls(int(match.group(1)), float(match.group(2)))

    @property
    def rate(self) -> float:
        """Calls per second."""
        return self.calls / self.seconds


@dataclass(frozen=True)
class Credentials:
    """The app key and secret a gateway signs with; the secret never shows in a repr."""

    key: str
    secret: str = field(repr=False)

    @classmethod
    def from_settings(cls, crawler: Crawler) -> Credentials:
        settings = crawler.settings
        return cls(str(settings.get("IMAGESEARCH_APP_KEY") or ""), str(settings.get("IMAGESEARCH_APP_SECRET") or ""))


@dataclass(frozen=True)
class App:
    """One app key of the pool: its credentials, its quota (None: unpaced) and its place in the pool."""

    credentials: Credentials
    quota: Quota | None
    index: int = 0

    @property
    def label(self) -> str:
        """How logs and stats name this key: ``key1``, ``key2``..., never the key itself."""
        return f"key{self.index + 1}"

    def slot(self, scope: str) -> str:
        """The name of this key's quota in a shared store: a hash of the gateway (``scope``) and the key,
        so that the store never holds the key itself."""
        digest = hashlib.sha256(f"{scope}\0{self.credentials.key}".encode()).hexdigest()
        return digest[:24]

    def __repr__(self) -> str:
        return f"App({self.label}, quota={self.quota})"


def env_name(key: str) -> str:
    """The environment variable holding ``key``'s secret."""
    return _ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", key.upper())


def _secrets_file(settings: BaseSettings) -> dict[str, str]:
    name = settings.get("IMAGESEARCH_APP_SECRETS_FILE")
    if not name:
        return {}
    path = Path(str(name)).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigurationError(f"IMAGESEARCH_APP_SECRETS_FILE={str(path)!r} cannot be read ({why})") from None
    secrets: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, secret = line.partition("=")
        if not equals or not key.strip() or not secret.strip():
            # The line is not shown: it may hold a secret.
            raise ConfigurationError(f"IMAGESEARCH_APP_SECRETS_FILE {path}, line {number}: expected KEY=SECRET")
        secrets[key.strip()] = secret.strip()
    return secrets


def app_pool(settings: BaseSettings, quota_spec: str | None = None) -> tuple[App, ...]:
    """The crawl's app keys, in the order given; ConfigurationError (naming no key or secret) if one cannot be used.

    ``quota_spec``: the quota of a key that gives none, as the gateway defaults it
    (pipeline.gateways.base.quota_setting); IMAGESEARCH_QUOTA as set when not given."""
    spec = str(settings.get("IMAGESEARCH_QUOTA") or "").strip() if quota_spec is None else quota_spec
    default_quota = Quota.parse(spec) if spec else None
    single = Credentials(str(settings.get("IMAGESEARCH_APP_KEY") or ""),
                         str(settings.get("IMAGESEARCH_APP_SECRET") or ""))
    entries = settings.getlist("IMAGESEARCH_APP_KEYS")
    if not entries:
        return (App(single, default_quota),)
    from_file = _secrets_file(settings)
    apps: list[App] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"IMAGESEARCH_APP_KEYS, key {index + 1}"
        key, colon, quota_text = str(entry).strip().partition(":")
        key = key.strip()
        if not key:
            raise ConfigurationError(f"{where} is empty: give KEY or KEY:CALLS/SECONDS, separated by commas")
        if key in seen:
            raise ConfigurationError(f"{where} is given twice: each key's quota is counted once")
        seen.add(key)
        try:
            quota = Quota.parse(quota_text) if colon else default_quota
        except ValueError:
            # Not shown: a secret given here by mistake (KEY:SECRET) would be printed.
            raise ConfigurationError(f"{where}: what follows the key is not a quota CALLS/SECONDS such as 1000/3600 "
                                     "(secrets never go in IMAGESEARCH_APP_KEYS)") from None
        secret = from_file.get(key) or os.environ.get(env_name(key)) or (single.secret if key == single.key else "")
        if not secret.strip():
            raise ConfigurationError(
                f"{where} has no secret: put a KEY=SECRET line in the file IMAGESEARCH_APP_SECRETS_FILE names, or set "
                f"{_ENV_PREFIX}<KEY> (the key in capitals, other characters as _); never on the command line"
            )
        apps.append(App(Credentials(key, secret), quota, index))
    return tuple(apps)
