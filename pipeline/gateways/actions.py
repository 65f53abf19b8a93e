"""What to do about a gateway error: the ``IMAGESEARCH_ERROR_ACTIONS`` table, keyed by code and sub_code glob."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from pipeline.errors import ConfigurationError, GatewayError

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

FATAL = "fatal"
RETRY = "retry"
THROTTLE = "throttle"
SEED_ERROR = "seed_error"
ACTIONS: tuple[str, ...] = (FATAL, RETRY, THROTTLE, SEED_ERROR)

#: What a user should fix when a code is fatal (the article's and real TOP's meanings, api.md §1).
_FIX_HINTS: dict[str, str] = {
    "7": "the app's call quota is spent for the day: run the same command again once it resets "
         "(with -s JOBDIR=DIR the crawl resumes where it stopped)",
    "11": "the app lacks permission for this API: ask the platform to grant it, or check IMAGESEARCH_APP_KEY",
    "15": "check IMAGESEARCH_APP_SECRET and IMAGESEARCH_SIGN_METHOD",
    "25": "check IMAGESEARCH_APP_SECRET and IMAGESEARCH_SIGN_METHOD",
    "28": "set IMAGESEARCH_APP_KEY",
    "29": "check IMAGESEARCH_APP_KEY",
    "30": "the timestamp was not sent: check the gateway setup",
    "31": "check this machine's clock (TOP allows 10 minutes of skew)",
    "21": "the gateway does not know this method: check IMAGESEARCH_ENDPOINT and IMAGESEARCH_GATEWAY",
    "22": "the gateway does not know this method: check IMAGESEARCH_ENDPOINT and IMAGESEARCH_GATEWAY",
    "40": "a required parameter is missing: check IMAGESEARCH_GATEWAY matches the endpoint",
}
_CREDENTIAL_CODES = frozenset({"15", "25", "28", "29"})


def fix_hint(error: GatewayError) -> str:
    """One sentence on what to change after a fatal ``error``."""
    return _FIX_HINTS.get(error.code, "see the gateway's documentation for this code")


def fatal_message(error: GatewayError, method: str) -> str:
    """The one line logged when a fatal error stops the crawl."""
    what = "refused the credentials" if error.code in _CREDENTIAL_CODES else f"refused {method}"
    return f"gateway {what} ({error.describe()}): {fix_hint(error)}"


@dataclass(frozen=True)
class _Rule:
    key: str
    code: str
    sub_code_glob: str | None
    action: str

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Exact code before ``*``; with a sub_code glob before without; longer literal globs first."""
        literal = len((self.sub_code_glob or "").replace("*", "").replace("?", ""))
        return (self.code != "*", self.sub_code_glob is not None, literal)

    def matches(self, error: GatewayError) -> bool:
        """Same code (or ``*``), and the glob, if any, matches the sub_code, or the msg ignoring case.

        The msg matters where a gateway sends a bare code: real TOP's 21 "Missing Method" and the
        article's 21 "image format not supported" can only be told apart by their text.
        """
        if self.code != "*" and self.code != error.code:
            return False
        glob = self.sub_code_glob
        return glob is None or fnmatchcase(error.sub_code, glob) or fnmatchcase(error.msg.lower(), glob.lower())


class ErrorActions:
    """``action_for(error)``: the action of the most specific matching rule (``"*"`` is the catch-all)."""

    def __init__(self, table: Mapping[str, str | None]) -> None:
        rules = []
        for key, action in table.items():
            if action is None:  # a user's None switches a base rule off, as in Scrapy's *_BASE dicts
                continue
            action = str(action).strip().lower()
            if action not in ACTIONS:
                raise ConfigurationError(
                    f"IMAGESEARCH_ERROR_ACTIONS[{key!r}]={action!r}: use one of {', '.join(ACTIONS)}"
                )
            code, sep, glob = str(key).strip().partition(":")
            rules.append(_Rule(str(key), code.strip() or "*", glob.strip() if sep else None, action))
        self.rules = sorted(rules, key=lambda rule: rule.specificity, reverse=True)

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> ErrorActions:
        """IMAGESEARCH_ERROR_ACTIONS (a dict, or JSON with ``-s``) merged over IMAGESEARCH_ERROR_ACTIONS_BASE."""
        try:
            user = settings.getdict("IMAGESEARCH_ERROR_ACTIONS")
        except ValueError as exc:
            raise ConfigurationError(f"IMAGESEARCH_ERROR_ACTIONS is not a JSON object: {exc}") from None
        return cls({**settings.getdict("IMAGESEARCH_ERROR_ACTIONS_BASE"), **{str(k): v for k, v in user.items()}})

    def action_for(self, error: GatewayError) -> str:
        for rule in self.rules:
            if rule.matches(error):
                return rule.action
        return SEED_ERROR
