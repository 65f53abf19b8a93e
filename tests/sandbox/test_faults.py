"""Injected faults on /router/rest: each at rate 1 happens every time, at rate 0 never; no quota cost."""

from __future__ import annotations

import fnmatch
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from pipeline.gateways.top.wire import REMOTE_RETRY_SUB_CODES
from sandbox.config import FaultConfig
from sandbox.faults import FaultInjector
from sandbox.testing import post, signed_params

SEARCH = "taobao.image.search"


def raw_post(sb, params, timeout=10.0):
    """(status, body bytes) of a POST, whatever the status."""
    request = urllib.request.Request(sb.endpoint, data=urllib.parse.urlencode(params).encode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def upload_free_image(catalog_image_b64):
    return catalog_image_b64(5)


def test_5xx_fault(make_sandbox, upload_free_image):
    sb = make_sandbox("--fault-5xx", "1")
    for _ in range(4):
        status, body = raw_post(sb, signed_params(SEARCH, image_data=upload_free_image))
        assert status in (500, 502, 503) and body.lstrip().startswith(b"<html")
    stats = sb.stats()
    assert stats["faults"]["5xx"] == 4 and stats["calls"]["total"] == 4


def test_garbage_fault_is_200_but_not_json(make_sandbox, upload_free_image):
    sb = make_sandbox("--fault-garbage", "1")
    for _ in range(6):
        status, body = raw_post(sb, signed_params(SEARCH, image_data=upload_free_image))
        assert status == 200
        with pytest.raises(ValueError):
            json.loads(body)
    assert sb.stats()["faults"]["garbage"] == 6


def test_drop_fault_breaks_the_connection_mid_body(make_sandbox, upload_free_image):
    sb = make_sandbox("--fault-drop", "1")
    for _ in range(3):
        with pytest.raises((http.client.IncompleteRead, ConnectionError, http.client.RemoteDisconnected)):
            raw_post(sb, signed_params(SEARCH, image_data=upload_free_image))
    assert sb.stats()["faults"]["drop"] == 3


@pytest.mark.parametrize(
    ("codes", "code", "sub_code"),
    [("article", 10, "isp.service-unavailable"), ("top", 15, "isp.*remote*")],
)
def test_remote_fault_is_a_transient_error_response(make_sandbox, upload_free_image, codes, code, sub_code):
    sb = make_sandbox("--fault-remote", "1", "--codes", codes)
    error = post(sb.endpoint, signed_params(SEARCH, image_data=upload_free_image))["error_response"]
    assert error["code"] == code and fnmatch.fnmatchcase(error["sub_code"], sub_code), error
    if codes == "top":  # one of the remote sub codes TOP's SDKs retry, or its -tmall form
        assert error["sub_code"].removesuffix("-tmall") in REMOTE_RETRY_SUB_CODES
    assert set(error) == {"code", "msg", "sub_code", "sub_msg", "request_id"}
    stats = sb.stats()
    assert stats["faults"]["remote"] == 1 and stats["errors"] == {str(code): 1}


def test_slow_fault_holds_the_answer_back_without_blocking_the_server(make_sandbox, upload_free_image):
    sb = make_sandbox("--fault-slow", "1", "--slow-seconds", "1.5")
    started = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        raw_post(sb, signed_params(SEARCH, image_data=upload_free_image), timeout=0.3)
    # While a call is held back, the server still answers (stats is not a router call).
    assert sb.stats()["faults"]["slow"] == 1
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    answer = post(sb.endpoint, signed_params(SEARCH, image_data=upload_free_image))
    assert 1.4 <= time.monotonic() - started < 5
    assert len(answer["image_search_response"]["items"]["item"]) == 20


def test_faulted_calls_cost_no_quota_and_zero_rates_never_fault(make_sandbox, upload_free_image):
    sb = make_sandbox("--app", "q:q:3/600", "--fault-5xx", "0.5", "--fault-seed", "11")
    outcomes = []
    for _ in range(14):
        status, body = raw_post(sb, signed_params(SEARCH, app_key="q", secret="q", image_data=upload_free_image))
        outcomes.append("5xx" if status >= 500 else next(iter(json.loads(body))))
    faulted = outcomes.count("5xx")
    assert 2 <= faulted <= 12
    # Exactly 3 answers: the faulted calls did not use up the quota.
    assert outcomes.count("image_search_response") == 3
    assert outcomes.count("error_response") == 14 - faulted - 3 == sb.stats()["quota_refused"]

    quiet = make_sandbox(
        *[arg for kind in ("5xx", "slow", "garbage", "drop", "remote") for arg in (f"--fault-{kind}", "0")]
    )
    for _ in range(10):
        assert "image_search_response" in post(quiet.endpoint, signed_params(SEARCH, image_data=upload_free_image))
    assert set(quiet.stats()["faults"].values()) == {0}


def test_fault_dice_are_seeded_and_rates_are_probabilities():
    def sequence(seed):
        injector = FaultInjector(FaultConfig(http_5xx=0.3, drop=0.3, seed=seed))
        return [injector.draw().failure for _ in range(200)]

    assert sequence(4) == sequence(4) != sequence(5)
    failures = sequence(4)
    assert 40 <= failures.count("5xx") <= 80
    assert 25 <= failures.count("drop") <= 60  # 0.7 * 0.3 of the calls: 5xx is tried first
    assert set(failures) == {None, "5xx", "drop"}
