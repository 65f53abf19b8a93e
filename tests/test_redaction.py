"""Credentials masked in log lines and exception messages, as given and URL-encoded."""

from __future__ import annotations

import io
import logging

from pipeline.redaction import MASK, Redactor, install

SECRET = "s3cret+value/with=marks"


def test_the_secret_is_masked_as_given_and_url_encoded() -> None:
    redactor = Redactor([SECRET, ""])
    for form in (SECRET, "s3cret%2Bvalue%2Fwith%3Dmarks", "s3cret%2Bvalue/with%3Dmarks"):
        assert redactor.redact(f"GET /x?secret={form}&page=1") == f"GET /x?secret={MASK}&page=1"
    assert not Redactor([])


def test_a_log_line_its_arguments_and_its_traceback_are_masked() -> None:
    stream = io.StringIO()
    log = logging.getLogger("tests.redaction")
    handler = logging.StreamHandler(stream)
    log.addHandler(handler)
    log.propagate = False
    try:
        added = install(Redactor([SECRET]), [log])
        assert any(added_to is handler for added_to, _ in added)
        log.warning("calling %s", f"http://h/?secret={SECRET}")
        try:
            raise ValueError(f"bad url http://h/?secret={SECRET}")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text and text.count(MASK) == 2 and "ValueError" in text


def test_short_secrets_are_masked_too_but_not_the_sandboxs_public_test_credentials() -> None:
    assert Redactor(["k3y!"]).redact("secret=k3y%21") == f"secret={MASK}"
    assert Redactor(["test"]).redact("tests/test_redaction.py") == "tests/test_redaction.py"


def test_a_redis_urls_password_is_masked_like_the_app_secret() -> None:
    import logging

    from scrapy.utils.test import get_crawler

    from pipeline.components.extensions import SecretRedaction

    handler = logging.StreamHandler()
    logging.getLogger().addHandler(handler)
    try:
        crawler = get_crawler(settings_dict={"IMAGESEARCH_REDIS_URL": "redis://:pw-8f3k2j@127.0.0.1:6379/0"})
        extension = SecretRedaction.from_crawler(crawler)
        filters = [log_filter for installed, log_filter in extension.installed if installed is handler]
        assert filters
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "connecting to %s", ("redis://:pw-8f3k2j@h",), None)
        assert filters[0].filter(record) and "pw-8f3k2j" not in record.getMessage()
        extension.engine_stopped()
    finally:
        logging.getLogger().removeHandler(handler)
