"""What to do about a gateway error: a table of actions keyed by code and sub_code glob."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from pipeline.errors import ConfigurationError

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

    from pipeline.errors import GatewayError


FATAL = "fatal"
RETRY = "retry"
THROTTLE = "throttle"
SEED_ERROR = "seed_error"
STOP = "stop"
#: fatal: the gateway refused the crawl as a whole (credentials, permission): stop at once, exit 3.
#: retry: a transient failure: send the call again, with backoff (RETRY_TIMES).
#: throttle: a quota ban: hold every call for the app key for the seconds it names, then send again.
#: seed_error: this call's seed cannot be searched: record it on the seed, go on.
#: stop: the gateway takes no call for now (the day's quota is spent): stop cleanly, resumable, exit 4.
ACTIONS: tuple[str, ...] = (FATAL, RETRY, THROTTLE, SEED_ERROR, STOP)


def _is_glob(text: str) -> bool:
    return "*" in text or "?" in text or "[" in text


@dataclass(frozen=True)
class _Rule:
    key: str
    code: str
    sub_code_glob: str | None
    action: str

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        """An exact code before a code glob (``Throttling*``) before ``*``, longer code globs first; then
        with a sub_code glob before without, longer literal globs first."""
        literal = len((self.sub_code_glob or "").replace("*", "").replace("?", ""))
        code_literal = len(self.code.replace("*", "").replace("?", ""))
        return (not _is_glob(self.code), code_literal, self.sub_code_glob is not None, literal)

    def matches(self, error: GatewayError) -> bool:
        """Same code (or ``*``), and the glob, if any, matches the sub_code, or the msg ignoring case.

        The msg matters where a gateway sends a bare code: real TOP's 21 "Missing Method" and the
        article's 21 "image format not supported" can only be told apart by their text.
        """
        if self.code != error.code and not (_is_glob(self.code) and fnmatchcase(error.code, self.code)):
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
    def from_settings(cls, settings: BaseSettings, defaults: Mapping[str, str]) -> ErrorActions:
        """IMAGESEARCH_ERROR_ACTIONS (a dict, or JSON with ``-s``) merged over the gateway's ``defaults``."""
        try:
            user = settings.getdict("IMAGESEARCH_ERROR_ACTIONS")
        except ValueError as exc:
            raise ConfigurationError(f"IMAGESEARCH_ERROR_ACTIONS is not a JSON object: {exc}") from None
        return cls({**defaults, **{str(k): v for k, v in user.items()}})

    def action_for(self, error: GatewayError) -> str:
        for rule in self.rules:
            if rule.matches(error):
                return rule.action
        return SEED_ERROR
