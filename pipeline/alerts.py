"""A crawl run's summary posted to chat webhooks: DingTalk, Feishu/Lark, WeCom, and Slack-compatible ones.

The kind of a webhook is told by its host, or by a prefix that overrides it (``dingtalk+https://...``,
``feishu+``, ``wecom+``, ``slack+``). A signing secret of DingTalk or Feishu is given in the URL as
``secret=SEC...``: it is taken out of the URL posted to, and signs the request. Nothing here raises for a
network problem, and no secret of a URL (token, key, signing secret, signature) reaches an outcome or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

from pipeline.redaction import MASK

logger = logging.getLogger(__name__)

SLACK, DINGTALK, FEISHU, WECOM = "slack", "dingtalk", "feishu", "wecom"
KINDS = (SLACK, DINGTALK, FEISHU, WECOM)
#: The hosts each kind is told by; any other host is a Slack-compatible incoming webhook.
HOSTS = {
    "oapi.dingtalk.com": DINGTALK,
    "open.feishu.cn": FEISHU,
    "open.larksuite.com": FEISHU,
    "qyapi.weixin.qq.com": WECOM,
}
#: Query parameters whose values are masked whole; any parameter whose name holds one of SECRET_WORDS is too.
SECRET_PARAMS = frozenset({"access_token", "key", "secret", "sign", "token"})
SECRET_WORDS = ("token", "secret", "key", "sign", "pass", "auth")
#: The waits before the first and the second retry (the last one is repeated for any further retry).
BACKOFF = (0.5, 1.0)
#: The most of an answer read: a webhook's answer is a few dozen bytes.
MAX_ANSWER = 64 * 1024
MAX_ERROR = 300
#: Shorter secrets are not masked in an error text, where they would mask fragments of ordinary words.
MIN_SECRET = 3
OUTCOMES = ("finished", "stopped", "failed", "checks_failed")


@dataclass(frozen=True)
class RunSummary:
    """What a run's alert says: its outcome, its counts, the checks that failed and where its report is."""

    run_id: str
    outcome: str
    dataset: str
    seeds_ok: int
    seeds_total: int
    products: int
    matches: int
    calls: int
    checks_failed: tuple[str, ...]
    report: str | None
    reason: str = ""


@dataclass(frozen=True)
class Outcome:
    """One webhook's result: its URL with every secret masked, and the last error (masked too) if it failed."""

    url: str
    ok: bool
    attempts: int
    error: str = ""


@dataclass(frozen=True)
class Delivery:
    """The request made for one webhook: its kind, the URL posted to, its JSON body and extra headers, its secrets."""

    kind: str
    url: str = field(repr=False)
    payload: dict[str, Any] = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)


class _Attempt(NamedTuple):
    ok: bool
    retry: bool
    error: str


def render(summary: RunSummary) -> tuple[str, str]:
    """A title and a short text of plain lines (``- `` for the failed checks), readable in every service."""
    title = f"Crawl run {summary.run_id}: {summary.outcome}"
    lines = [
        f"Run: {summary.run_id}",
        f"Outcome: {summary.outcome}",
        f"Seeds ok: {summary.seeds_ok}/{summary.seeds_total}",
        f"Products: {summary.products}",
        f"Matches: {summary.matches}",
        f"Calls: {summary.calls}",
        f"Dataset: {summary.dataset}",
    ]
    if summary.reason:
        lines.append(f"Reason: {' '.join(summary.reason.split())}")
    if summary.checks_failed:
        lines.append(f"Failed checks ({len(summary.checks_failed)}):")
        lines.extend(f"- {' '.join(check.split())}" for check in summary.checks_failed)
    if summary.report:
        lines.append(f"Report: {summary.report}")
    return title, "\n".join(lines)


def split_kind(url: str) -> tuple[str | None, str]:
    """``("dingtalk", "https://...")`` for ``dingtalk+https://...``; ``(None, url)`` for a URL with no kind prefix."""
    prefix, plus, rest = url.partition("+")
    if plus and prefix.lower() in KINDS and rest.lower().startswith(("http://", "https://")):
        return prefix.lower(), rest
    return None, url


def webhook_kind(url: str) -> str:
    """The kind of a webhook URL: its prefix's, else its host's, else ``slack``."""
    kind, rest = split_kind(url.strip())
    if kind:
        return kind
    try:
        host = (urlsplit(rest).hostname or "").lower()
    except ValueError:
        return SLACK
    return HOSTS.get(host, SLACK)


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """DingTalk's ``sign``: Base64 of HMAC-SHA256 keyed by the secret over ``"{timestamp}\\n{secret}"``, URL-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode("ascii"))


def feishu_sign(timestamp_s: int, secret: str) -> str:
    """Feishu/Lark's ``sign``: Base64 of HMAC-SHA256 keyed by ``"{timestamp}\\n{secret}"`` over an empty message."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _secret_param(name: str) -> bool:
    name = name.lower()
    return name in SECRET_PARAMS or any(word in name for word in SECRET_WORDS)


def _masked_path(path: str) -> tuple[str, list[str]]:
    """The path with its token segments masked (Feishu's /hook/, Slack's /services/, Discord's /api/webhooks/)."""
    parts = path.split("/")
    lowered = [part.lower() for part in parts]
    masked: set[int] = set()
    for index, part in enumerate(lowered):
        if part in ("hook", "hooks"):  # Feishu/Lark, Mattermost, Rocket.Chat: everything after is the token
            masked.update(range(index + 1, len(parts)))
        elif part == "services":  # Slack: /services/T.../B.../<secret>, the IDs kept
            after = list(range(index + 1, len(parts)))
            masked.update(after[2:] if len(after) >= 3 else after)
        elif part == "webhooks" and index and lowered[index - 1] == "api":  # Discord: /api/webhooks/<id>/<token>
            masked.update(range(index + 2, min(index + 3, len(parts))))
    secrets = [unquote_plus(parts[i]) for i in sorted(masked) if parts[i]]
    return "/".join(MASK if i in masked and parts[i] else part for i, part in enumerate(parts)), secrets


def _masked_query(query: str) -> tuple[str, list[str]]:
    pairs, secrets = [], []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if equals and value and _secret_param(unquote_plus(name)):
            secrets.append(unquote_plus(value))
            pair = f"{name}={MASK}"
        pairs.append(pair)
    return "&".join(pairs), secrets


def _redact(url: str) -> tuple[str, list[str]]:
    """``url`` with its secrets masked, and the secrets (as given, decoded)."""
    kind, rest = split_kind(url.strip())
    try:
        parts = urlsplit(rest)
    except ValueError:
        return MASK, [url]
    netloc, secrets = parts.netloc, []
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        secrets.append(unquote_plus(userinfo))
        secrets.extend(unquote_plus(piece) for piece in userinfo.split(":"))
        netloc = f"{MASK}@{netloc}"
    path, path_secrets = _masked_path(parts.path)
    query, query_secrets = _masked_query(parts.query) if parts.query else ("", [])
    fragment = MASK if parts.fragment else ""
    if parts.fragment:
        secrets.append(parts.fragment)
    masked = urlunsplit((parts.scheme, netloc, path, query, fragment))
    return (f"{kind}+{masked}" if kind else masked), [*secrets, *path_secrets, *query_secrets]


def redact_url(url: str) -> str:
    """``url`` with every secret it holds masked as ``***``: tokens, keys, signatures, path tokens, userinfo."""
    return _redact(url)[0]


#: The ends of a run an alert can be posted for (IMAGESEARCH_ALERT_ON).
OUTCOMES = ("finished", "stopped", "failed", "checks_failed")


def alert_outcomes(value: str | Iterable[str] | None) -> list[str]:
    """IMAGESEARCH_ALERT_ON as a list of OUTCOMES; ValueError naming one that is not."""
    items = value.replace(",", " ").split() if isinstance(value, str) else [str(v).strip() for v in value or ()]
    for item in items:
        if item not in OUTCOMES:
            raise ValueError(f"{item!r} is not one of {', '.join(OUTCOMES)}")
    return items


def url_secrets(url: str) -> list[str]:
    """The secrets ``url`` holds (tokens, keys, signing secret, path tokens, userinfo), for a log redactor."""
    return [secret for secret in _redact(url)[1] if secret]


def parse_urls(value: str | Iterable[str] | None) -> list[str]:
    """The webhook URLs of a list or of a comma/whitespace-separated string, duplicates dropped.

    Raises ValueError, naming the URL redacted, for one that is not http(s).
    """
    if value is None:
        return []
    items = value.replace(",", " ").split() if isinstance(value, str) else [str(item).strip() for item in value]
    urls: list[str] = []
    for item in items:
        if not item:
            continue
        _, rest = split_kind(item)
        try:
            parts = urlsplit(rest)
            valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"alert webhook URL is not an http(s) URL: {redact_url(item)}")
        if item not in urls:
            urls.append(item)
    return urls


def _take_secret(url: str) -> tuple[str, str]:
    """``url`` without its ``secret=`` query parameter, and that secret ("" if none)."""
    head, question, query = url.partition("?")
    if not question:
        return url, ""
    fragment = ""
    if "#" in query:
        query, _, fragment = query.partition("#")
    kept, secret = [], ""
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if unquote_plus(name) == "secret":
            secret = unquote_plus(value)
        elif pair:
            kept.append(pair)
    rebuilt = head + ("?" + "&".join(kept) if kept else "")
    return rebuilt + ("#" + fragment if fragment else ""), secret


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _take_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its ``user:password@``, and the Basic authorization header made of it."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, {}
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote_plus(user)}:{unquote_plus(password)}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), {"Authorization": f"Basic {token}"}


def prepare(url: str, title: str, text: str, *, now: Callable[[], float] = time.time) -> Delivery:
    """The request for one webhook: the URL posted to (signed, secret removed) and the JSON body of its kind."""
    kind = webhook_kind(url)
    posted, headers = _take_userinfo(split_kind(url.strip())[1])
    secrets = [*_redact(url)[1], *(value.split()[-1] for value in headers.values())]
    payload: dict[str, Any]
    if kind == DINGTALK:
        posted, secret = _take_secret(posted)
        if secret:
            timestamp = int(now() * 1000)
            sign = dingtalk_sign(timestamp, secret)
            posted += ("&" if "?" in posted else "?") + f"timestamp={timestamp}&sign={sign}"
            secrets += [secret, sign, unquote_plus(sign)]
        body = f"### {title}\n\n" + text.replace("\n", "\n\n")
        payload = {"msgtype": "markdown", "markdown": {"title": title, "text": body}}
    elif kind == FEISHU:
        posted, secret = _take_secret(posted)
        payload = {"msg_type": "text", "content": {"text": f"{title}\n{text}"}}
        if secret:
            timestamp = int(now())
            sign = feishu_sign(timestamp, secret)
            payload = {"timestamp": str(timestamp), "sign": sign, **payload}
            secrets += [secret, sign]
    elif kind == WECOM:
        payload = {"msgtype": "markdown", "markdown": {"content": f"**{title}**\n{text}"}}
    else:
        host = (urlsplit(posted).hostname or "").lower()
        message = f"*{title}*\n{text}"
        payload = {"text": _slack_escape(message) if host.endswith("slack.com") else message}
    return Delivery(kind, posted, payload, headers, tuple(secret for secret in secrets if secret))


def _masker(url: str, delivery: Delivery | None) -> Callable[[str], str]:
    """A function masking every secret of ``url`` (and of its delivery) in a text, and cutting it to one line."""
    redacted, secrets = _redact(url)
    known = {*secrets, *(delivery.secrets if delivery else ())}
    forms = sorted({form for secret in known if len(secret) >= MIN_SECRET
                    for form in (secret, quote(secret, safe=""), quote(secret), quote_plus(secret))},
                   key=len, reverse=True)
    posted = [(delivery.url, redact_url(delivery.url))] if delivery else []
    whole = sorted({(url, redacted), (url.strip(), redacted), *posted}, key=lambda pair: len(pair[0]), reverse=True)

    def mask(text: str) -> str:
        for form, replacement in whole:
            if form:
                text = text.replace(form, replacement)
        for form in forms:
            text = text.replace(form, MASK)
        text = " ".join(text.split())
        return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"

    return mask


def _answer_error(kind: str, answer: bytes) -> str | None:
    """None when a 2xx answer says the message was taken, else what it says went wrong."""
    if kind == SLACK:
        return None
    try:
        data = json.loads(answer.decode("utf-8", "replace"))
    except ValueError:
        return f"the answer is not JSON: {answer[:80]!r}"
    if not isinstance(data, dict):
        return f"the answer is not a JSON object: {answer[:80]!r}"
    if kind == FEISHU:
        code = data["code"] if "code" in data else data.get("StatusCode")
        message = data.get("msg") or data.get("StatusMessage") or ""
    else:
        code, message = data.get("errcode"), data.get("errmsg") or ""
    return None if code == 0 else f"error code {code}: {message}".rstrip(": ")


def _http_error(exc: urllib.error.HTTPError) -> _Attempt:
    try:
        answer = exc.read(MAX_ANSWER)
    except (OSError, http.client.HTTPException):
        answer = b""
    detail = answer.decode("utf-8", "replace").strip()[:120]
    retry = exc.code == 429 or exc.code >= 500
    return _Attempt(False, retry, f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else ""))


def _describe(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, str):
        return reason
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


def _post(delivery: Delivery, timeout: float) -> _Attempt:
    """One POST of the delivery's JSON body, judged: taken, worth retrying, or failed for good."""
    body = json.dumps(delivery.payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        delivery.url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "imagesearch-alerts/1", **delivery.headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, answer = response.status, response.read(MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        return _http_error(exc)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return _Attempt(False, True, _describe(exc))
    if not 200 <= status < 300:
        return _Attempt(False, False, f"HTTP {status}")
    error = _answer_error(delivery.kind, answer)
    return _Attempt(error is None, False, error or "")


@dataclass
class _Budget:
    """The time left of ``send``'s deadline, over all URLs."""

    end: float
    clock: Callable[[], float]

    def left(self) -> float:
        return self.end - self.clock()


class _Settings(NamedTuple):
    timeout: float
    retries: int
    backoff: Sequence[float]
    sleep: Callable[[float], None]
    now: Callable[[], float]


def _deliver(url: str, title: str, text: str, budget: _Budget, settings: _Settings) -> Outcome:
    """Post to one webhook, retrying what is worth it within the budget: its outcome."""
    redacted = redact_url(url)
    try:
        delivery = prepare(url, title, text, now=settings.now)
    except ValueError as exc:
        return Outcome(redacted, False, 0, _masker(url, None)(f"invalid webhook URL: {exc}"))
    mask = _masker(url, delivery)
    attempts, error = 0, ""
    for attempt in range(settings.retries + 1):
        if attempt:
            wait = settings.backoff[min(attempt, len(settings.backoff)) - 1] if settings.backoff else 0.0
            if wait >= budget.left():
                error += " (deadline reached)"
                break
            settings.sleep(wait)
        left = budget.left()
        if left <= 0:
            error = f"{error} (deadline reached)" if error else "deadline reached before the first attempt"
            break
        attempts += 1
        result = _post(delivery, min(settings.timeout, left))
        if result.ok:
            logger.info("Alert posted to %s (%s, %d attempt(s))", redacted, delivery.kind, attempts)
            return Outcome(redacted, True, attempts)
        error = mask(result.error)
        logger.debug("Alert to %s: attempt %d failed: %s", redacted, attempts, error)
        if not result.retry:
            break
    logger.warning("Alert to %s failed after %d attempt(s): %s", redacted, attempts, error)
    return Outcome(redacted, False, attempts, error)


def send(
    urls: Iterable[str],
    summary: RunSummary,
    *,
    timeout: float = 5.0,
    retries: int = 2,
    deadline: float = 8.0,
    backoff: Sequence[float] = BACKOFF,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
) -> list[Outcome]:
    """Post the run's summary to each webhook, in order; one outcome a URL. Never raises for a network problem.

    Each attempt waits at most ``timeout`` seconds, a URL gets at most ``retries`` retries (after the waits of
    ``backoff``), and all of it together ends within about ``deadline`` seconds: an attempt the deadline leaves
    no time for is not made. ``clock`` and ``sleep`` measure and wait that time; ``now`` is the wall clock
    the signatures' timestamps are taken from.
    """
    title, text = render(summary)
    budget = _Budget(clock() + deadline, clock)
    settings = _Settings(timeout, max(0, retries), tuple(backoff), sleep, now)
    return [_deliver(url, title, text, budget, settings) for url in urls]
