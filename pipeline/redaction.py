"""Keeping credentials out of everything a crawl writes: log lines, exception messages, stats."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
#: The embedded sandbox's public test credentials: no secret, and masking the word would garble lines.
PUBLIC_CREDENTIALS = frozenset({"test"})
#: Shorter values are no real credential and would mask fragments of ordinary text.
MIN_LENGTH = 4


class Redactor:
    """Replaces each secret, as given and URL-encoded (as it appears in a query string), by ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {
            form
            for secret in secrets if len(secret) >= MIN_LENGTH and secret not in PUBLIC_CREDENTIALS
            for form in (secret, quote(secret, safe=""), quote(secret), quote_plus(secret))
        }
        # Longest first: a secret that contains another is masked whole.
        self.forms = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.forms)

    def redact(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def redact_exception(self, exc: BaseException) -> BaseException:
        """``exc`` with the secrets masked in its arguments (the text its message is made of), in place."""
        if self.forms:
            exc.args = tuple(self.redact(a) if isinstance(a, str) else a for a in exc.args)
        return exc


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in a record's message, arguments and traceback text."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(redactor: Redactor, loggers: Iterable[logging.Logger] = ()) -> list[tuple[logging.Handler, logging.Filter]]:
    """Add a RedactingFilter to every handler of the root logger (and of ``loggers``); what was added."""
    added: list[tuple[logging.Handler, logging.Filter]] = []
    if not redactor:
        return added
    handlers = {id(h): h for lg in (logging.getLogger(), *loggers) for h in lg.handlers}
    for handler in handlers.values():
        log_filter = RedactingFilter(redactor)
        handler.addFilter(log_filter)
        added.append((handler, log_filter))
    return added
