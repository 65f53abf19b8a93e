"""The run alerts' webhooks (pipeline/alerts.py), posted to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline.alerts import (
    Outcome,
    RunSummary,
    dingtalk_sign,
    feishu_sign,
    parse_urls,
    prepare,
    redact_url,
    render,
    send,
    webhook_kind,
)

#: A fixed wall clock for the signatures: 2023-11-14T22:13:20.123Z, whatever the date or zone of the machine.
NOW = 1_700_000_000.123
TOKEN = "dt-access-token-0123456789"
SEC = "SEC0f3c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0"
FEISHU_TOKEN = "5e3d587e-d78e-4a07-bd07-265f269f86fd"
FEISHU_SECRET = "nIMtb7r3N9pkXyXdtAbx6e"
WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
SLACK_SECRET = "XXXXXXXXXXXXXXXXXXXXXXXX1234"

SUMMARY = RunSummary(
    run_id="20240101T000000-abc123", outcome="checks_failed", dataset="data/runs/abc123",
    seeds_ok=3, seeds_total=5, products=120, matches=410, calls=57,
    checks_failed=("price coverage 12% < 80%", "seeds ok 60% < 90%"),
    report="data/runs/abc123/report.html", reason="closespider_timeout",
)
OK_ANSWER = {"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """A webhook receiver: records each request, and answers as told (500 N times, a JSON answer, or no answer)."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    errors_first: int = 0
    error_status: int = 500
    answer: dict[str, Any] | str = field(default_factory=lambda: dict(OK_ANSWER))
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, kind: str = "") -> str:
        return f"{kind + '+' if kind else ''}http://127.0.0.1:{self.port}{path}"


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(Received(self.path, dict(self.headers.items()), json.loads(body)))
            if receiver.hang:
                receiver.release.wait(10)
                return
            if receiver.errors_first > 0:
                receiver.errors_first -= 1
                self._answer(receiver.error_status, b"server error")
                return
            answer = receiver.answer
            self._answer(200, (answer if isinstance(answer, str) else json.dumps(answer)).encode())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A started receiver on 127.0.0.1 (no proxy in the way), stopped after the test."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sleeps(list[float]):
    """A ``sleep`` that records the waits and does not wait."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _send(urls: list[str], **options: Any) -> list[Outcome]:
    options.setdefault("now", lambda: NOW)
    options.setdefault("sleep", Sleeps())
    return send(urls, SUMMARY, **options)


# --- the message -------------------------------------------------------------------------------------------


def test_render_gives_a_title_and_a_line_per_fact_and_per_failed_check() -> None:
    title, text = render(SUMMARY)
    assert title == "Crawl run 20240101T000000-abc123: checks_failed"
    lines = text.splitlines()
    for line in ("Run: 20240101T000000-abc123", "Outcome: checks_failed", "Seeds ok: 3/5", "Products: 120",
                 "Matches: 410", "Calls: 57", "Dataset: data/runs/abc123", "Reason: closespider_timeout",
                 "- price coverage 12% < 80%", "- seeds ok 60% < 90%", "Report: data/runs/abc123/report.html"):
        assert line in lines


def test_render_leaves_out_what_a_run_has_not() -> None:
    _, text = render(RunSummary("r1", "finished", "d", 1, 1, 2, 3, 4, (), None))
    assert "Failed checks" not in text and "Report" not in text and "Reason" not in text


# --- the signatures ----------------------------------------------------------------------------------------


def test_dingtalk_sign_reproduces_a_published_vector() -> None:
    # The `dingding` crate's test (docs.rs/crate/dingding/latest/source/src/signature.rs), DingTalk's algorithm:
    # DingTalk's own docs publish the algorithm with the current time, so no fixed output of theirs exists.
    assert dingtalk_sign(1700000000000, "secret") == "OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D"


def test_dingtalk_sign_matches_openssl_on_the_docs_example_secret() -> None:
    # printf '%s\n%s' 1700000000000 'this is secret' | openssl dgst -sha256 -hmac 'this is secret' -binary | base64
    assert dingtalk_sign(1700000000000, "this is secret") == "sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0%3D"


def test_feishu_sign_matches_openssl_over_an_empty_message() -> None:
    # printf '' | openssl dgst -sha256 -hmac "$(printf '%s\n%s' 1599360473 demo-feishu-secret)" -binary | base64
    assert feishu_sign(1599360473, "demo-feishu-secret") == "I14G+BylJBIS1VqI4nUg1mKqMAjMGZlFJGT36IJRUr8="


# --- each kind's request -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "kind"), [
    ("https://oapi.dingtalk.com/robot/send?access_token=x", "dingtalk"),
    ("https://open.feishu.cn/open-apis/bot/v2/hook/x", "feishu"),
    ("https://open.larksuite.com/open-apis/bot/v2/hook/x", "feishu"),
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x", "wecom"),
    ("https://hooks.slack.com/services/T/B/x", "slack"),
    ("https://chat.example.com/hooks/x", "slack"),
    ("slack+https://oapi.dingtalk.com/robot/send?access_token=x", "slack"),
    ("wecom+http://127.0.0.1:1/x", "wecom"),
    ("FEISHU+https://example.com/x", "feishu"),
])
def test_the_kind_is_told_by_the_host_or_by_a_prefix(url: str, kind: str) -> None:
    assert webhook_kind(url) == kind


def test_dingtalk_is_posted_signed_with_the_secret_taken_out_of_the_url(receiver: Receiver) -> None:
    url = receiver.url(f"/robot/send?access_token={TOKEN}&secret={SEC}", "dingtalk")
    [outcome] = _send([url])
    assert outcome.ok and outcome.attempts == 1
    [request] = receiver.requests
    path = urlsplit(request.path)
    assert path.path == "/robot/send" and SEC not in request.path and "secret=" not in request.path
    assert path.query == f"access_token={TOKEN}&timestamp=1700000000123&sign={dingtalk_sign(1700000000123, SEC)}"
    assert parse_qs(path.query)["timestamp"] == ["1700000000123"]
    assert request.headers["Content-Type"] == "application/json"
    assert request.body["msgtype"] == "markdown"
    title, text = render(SUMMARY)
    assert request.body["markdown"]["title"] == title
    assert title in request.body["markdown"]["text"] and "Seeds ok: 3/5" in request.body["markdown"]["text"]


def test_dingtalk_without_a_secret_is_posted_unsigned(receiver: Receiver) -> None:
    [outcome] = _send([receiver.url(f"/robot/send?access_token={TOKEN}", "dingtalk")])
    assert outcome.ok and receiver.requests[0].path == f"/robot/send?access_token={TOKEN}"


def test_feishu_is_signed_in_the_body_with_the_secret_taken_out_of_the_url(receiver: Receiver) -> None:
    [outcome] = _send([receiver.url(f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}?secret={FEISHU_SECRET}", "feishu")])
    assert outcome.ok
    [request] = receiver.requests
    assert request.path == f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}"
    title, text = render(SUMMARY)
    assert request.body == {
        "timestamp": "1700000000", "sign": feishu_sign(1700000000, FEISHU_SECRET),
        "msg_type": "text", "content": {"text": f"{title}\n{text}"},
    }


def test_feishu_without_a_secret_has_no_signature(receiver: Receiver) -> None:
    receiver.answer = {"StatusCode": 0, "StatusMessage": "success"}
    [outcome] = _send([receiver.url(f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}", "feishu")])
    assert outcome.ok and set(receiver.requests[0].body) == {"msg_type", "content"}


def test_wecom_gets_markdown_content(receiver: Receiver) -> None:
    [outcome] = _send([receiver.url(f"/cgi-bin/webhook/send?key={WECOM_KEY}", "wecom")])
    assert outcome.ok
    [request] = receiver.requests
    assert request.path == f"/cgi-bin/webhook/send?key={WECOM_KEY}"
    assert request.body["msgtype"] == "markdown"
    assert "Matches: 410" in request.body["markdown"]["content"]


def test_any_other_host_gets_a_slack_text(receiver: Receiver) -> None:
    receiver.answer = "ok"
    [outcome] = _send([receiver.url(f"/services/T000/B000/{SLACK_SECRET}")])
    assert outcome.ok
    [request] = receiver.requests
    assert list(request.body) == ["text"] and "- price coverage 12% < 80%" in request.body["text"]


def test_slack_itself_gets_its_control_characters_escaped() -> None:
    delivery = prepare(f"https://hooks.slack.com/services/T/B/{SLACK_SECRET}", "t", "a < b & c > d")
    assert delivery.kind == "slack" and delivery.payload == {"text": "*t*\na &lt; b &amp; c &gt; d"}


def test_userinfo_becomes_basic_authorization(receiver: Receiver) -> None:
    [outcome] = _send([f"http://alerts:pa55-word@127.0.0.1:{receiver.port}/hooks/abc"])
    assert outcome.ok and outcome.url == f"http://***@127.0.0.1:{receiver.port}/hooks/***"
    assert receiver.requests[0].headers["Authorization"] == "Basic YWxlcnRzOnBhNTUtd29yZA=="


# --- retries, failures and the deadline ----------------------------------------------------------------------


def test_a_500_is_retried_after_the_backoff_until_it_succeeds(receiver: Receiver) -> None:
    receiver.errors_first = 2
    sleeps = Sleeps()
    [outcome] = _send([receiver.url(f"/robot/send?access_token={TOKEN}", "dingtalk")], sleep=sleeps)
    assert outcome == Outcome(outcome.url, ok=True, attempts=3)
    assert sleeps == [0.5, 1.0] and len(receiver.requests) == 3


def test_retries_are_bounded(receiver: Receiver) -> None:
    receiver.errors_first = 10
    [outcome] = _send([receiver.url("/hooks/abc")], retries=1)
    assert not outcome.ok and outcome.attempts == 2 and outcome.error.startswith("HTTP 500")


def test_a_429_is_retried_and_a_400_is_not(receiver: Receiver) -> None:
    receiver.errors_first, receiver.error_status = 1, 429
    assert _send([receiver.url("/hooks/abc")])[0].attempts == 2
    receiver.errors_first, receiver.error_status = 5, 400
    [outcome] = _send([receiver.url("/hooks/abc")])
    assert not outcome.ok and outcome.attempts == 1 and "HTTP 400" in outcome.error


@pytest.mark.parametrize(("kind", "path", "answer", "expected"), [
    ("dingtalk", "/robot/send?access_token=t0k3n", {"errcode": 310000, "errmsg": "sign not match"},
     "error code 310000: sign not match"),
    ("wecom", "/cgi-bin/webhook/send?key=k3y5", {"errcode": 93000, "errmsg": "invalid webhook url"},
     "error code 93000: invalid webhook url"),
    ("feishu", "/open-apis/bot/v2/hook/t0k3n", {"code": 19021, "msg": "sign match fail", "data": {}},
     "error code 19021: sign match fail"),
    ("dingtalk", "/robot/send?access_token=t0k3n", "<html>not json</html>", "the answer is not JSON"),
])
def test_a_json_error_answer_is_a_failure_not_retried(
    receiver: Receiver, kind: str, path: str, answer: dict[str, Any] | str, expected: str
) -> None:
    receiver.answer = answer
    [outcome] = _send([receiver.url(path, kind)])
    assert not outcome.ok and outcome.attempts == 1 and expected in outcome.error
    assert len(receiver.requests) == 1


def test_an_unreachable_url_fails_fast_within_the_deadline(closed_port: int) -> None:
    start = time.monotonic()
    [outcome] = send([f"http://127.0.0.1:{closed_port}/hooks/abc"], SUMMARY, deadline=0.8)
    elapsed = time.monotonic() - start
    # Refused at once; retried once after 0.5 s; the next wait (1 s) would pass the deadline: no third attempt.
    assert not outcome.ok and outcome.attempts == 2 and "deadline reached" in outcome.error
    assert "Connection" in outcome.error or "refused" in outcome.error.lower()
    assert elapsed < 0.8


def test_a_hanging_receiver_is_bounded_by_the_deadline(receiver: Receiver, closed_port: int) -> None:
    receiver.hang = True
    urls = [receiver.url("/hooks/one"), f"http://127.0.0.1:{closed_port}/hooks/two"]
    start = time.monotonic()
    first, second = send(urls, SUMMARY, timeout=0.3, retries=5, deadline=0.8, backoff=(0.05,))
    elapsed = time.monotonic() - start
    assert not first.ok and 2 <= first.attempts <= 3 and "timed out" in first.error
    assert second == Outcome(second.url, ok=False, attempts=0, error="deadline reached before the first attempt")
    assert elapsed < 0.8 + 0.3


def test_send_to_no_url_sends_nothing() -> None:
    assert send([], SUMMARY) == []


# --- no secret anywhere --------------------------------------------------------------------------------------


def test_no_secret_reaches_an_outcome_or_the_log(
    receiver: Receiver, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer = {"errcode": 310000, "errmsg": "sign not match", "code": 19021, "msg": "sign match fail"}
    urls = [
        receiver.url(f"/robot/send?access_token={TOKEN}&secret={SEC}", "dingtalk"),
        receiver.url(f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}?secret={FEISHU_SECRET}", "feishu"),
        f"dingtalk+http://127.0.0.1:{closed_port}/robot/send?access_token={TOKEN}&secret={SEC}",
        f"http://127.0.0.1:{closed_port}/services/T000/B000/{SLACK_SECRET}",
    ]
    with caplog.at_level(logging.DEBUG, logger="pipeline.alerts"):
        outcomes = _send(urls)
    assert [outcome.ok for outcome in outcomes] == [False] * 4 and caplog.records
    shown = repr(outcomes) + caplog.text
    for secret in _secrets():
        assert secret not in shown
    assert f"127.0.0.1:{receiver.port}" in outcomes[0].url and f"127.0.0.1:{closed_port}" in outcomes[3].url


def test_an_error_that_quotes_the_url_is_masked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(request: urllib.request.Request, timeout: float) -> None:
        raise urllib.error.URLError(f"cannot reach {request.full_url} ({request.full_url.partition('?')[2]})")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    urls = [f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}&secret={SEC}",
            f"https://open.feishu.cn/open-apis/bot/v2/hook/{FEISHU_TOKEN}?secret={FEISHU_SECRET}",
            f"https://hooks.slack.com/services/T000/B000/{SLACK_SECRET}"]
    with caplog.at_level(logging.DEBUG, logger="pipeline.alerts"):
        outcomes = _send(urls, retries=0)
    assert [outcome.attempts for outcome in outcomes] == [1, 1, 1]
    assert "cannot reach https://oapi.dingtalk.com/robot/send?access_token=***" in outcomes[0].error
    shown = repr(outcomes) + caplog.text
    for secret in _secrets():
        assert secret not in shown


def _secrets() -> list[str]:
    """Every secret the tests' URLs hold or make: tokens, signing secrets, and the signatures made at NOW."""
    ding = dingtalk_sign(1700000000123, SEC)
    return [TOKEN, SEC, ding, urllib.parse.unquote(ding), feishu_sign(1700000000, FEISHU_SECRET),
            FEISHU_TOKEN, FEISHU_SECRET, SLACK_SECRET]


# --- redact_url and parse_urls -------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "redacted"), [
    (f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}&secret={SEC}",
     "https://oapi.dingtalk.com/robot/send?access_token=***&secret=***"),
    ("https://oapi.dingtalk.com/robot/send?access_token=a1b2c3&timestamp=1700000000000&sign=abc%2B%3D",
     "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=1700000000000&sign=***"),
    (f"https://open.feishu.cn/open-apis/bot/v2/hook/{FEISHU_TOKEN}?secret=s3cr3t",
     "https://open.feishu.cn/open-apis/bot/v2/hook/***?secret=***"),
    ("https://open.larksuite.com/open-apis/bot/v2/hook/abc", "https://open.larksuite.com/open-apis/bot/v2/hook/***"),
    (f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}",
     "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"),
    (f"https://hooks.slack.com/services/T000/B000/{SLACK_SECRET}", "https://hooks.slack.com/services/T000/B000/***"),
    ("https://discord.com/api/webhooks/1234567/tok-en_abc/slack", "https://discord.com/api/webhooks/1234567/***/slack"),
    ("https://chat.example.com/hooks/abcdef", "https://chat.example.com/hooks/***"),
    ("https://user:pw@example.com:8443/x?token=t&api_key=k&page=2",
     "https://***@example.com:8443/x?token=***&api_key=***&page=2"),
    (f"dingtalk+http://127.0.0.1:8080/robot/send?access_token={TOKEN}&secret={SEC}",
     "dingtalk+http://127.0.0.1:8080/robot/send?access_token=***&secret=***"),
    ("https://example.com/plain?page=1", "https://example.com/plain?page=1"),
    ("http://[::1", "***"),
])
def test_redact_url_masks_every_secret_and_keeps_the_host(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_parse_urls_takes_a_string_or_a_list() -> None:
    a, b = "https://oapi.dingtalk.com/robot/send?access_token=x", "slack+https://chat.example.com/hooks/y"
    assert parse_urls(f" {a},{b}\n {a} ") == [a, b]
    assert parse_urls([a, " ", b]) == [a, b]
    assert parse_urls("") == [] and parse_urls(None) == [] and parse_urls([]) == []


@pytest.mark.parametrize(("value", "named"), [
    ("ftp://user:pw@files.example.com/x?token=abcdef", "ftp://***@files.example.com/x?token=***"),
    ("https://ok.example.com/hooks/x, oapi.dingtalk.com/robot/send?access_token=abcdef",
     "oapi.dingtalk.com/robot/send?access_token=***"),
    ("teams+https://example.com/hooks/abcdef", "teams+https://example.com/hooks/***"),
    ("https:///hooks/abcdef", "https:///hooks/***"),
])
def test_parse_urls_names_a_bad_url_redacted(value: str, named: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_urls(value)
    message = str(error.value)
    assert "\n" not in message and message.endswith(named) and "abcdef" not in message and "pw" not in message
