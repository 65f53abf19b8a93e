"""Known-answer vectors for the shared signing function, computed independently of it (openssl dgst)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.gateways.top.signing import parse_top_timestamp, sign, top_timestamp, verify

DOC_PARAMS = {
    "app_key": "12345678",
    "fields": "num_iid,title,nick,price,num",
    "format": "json",
    "method": "taobao.item.seller.get",
    "num_iid": "11223344",
    "session": "test",
    "timestamp": "2016-01-01 12:00:00",
    "v": "2.0",
}

# Each hex digest was produced with openssl on the hand-written concatenation, e.g.
#   printf '%s' 'helloworldapp_key12345678fields...v2.0helloworld' | openssl dgst -md5
#   printf '%s' 'app_key12345678fields...v2.0' | openssl dgst -md5 -hmac helloworld
#   printf '%s' 'app_key12345678fields...v2.0' | openssl dgst -sha256 -hmac helloworld
KNOWN_ANSWERS = [
    ("md5", "66987CB115214E59E6EC978214934FB8"),  # also the public TOP documentation's vector
    ("hmac", "D56D7858309C31B6251083A874D48273"),
    ("hmac-sha256", "04DB15AD0774D5CFCE2C837DE43E3FCEA9011ED74F3038FB6AB5F3C4CEA119E8"),
]


@pytest.mark.parametrize(("sign_method", "expected"), KNOWN_ANSWERS)
def test_sign_matches_independent_known_answer(sign_method, expected):
    params = {**DOC_PARAMS, "sign_method": sign_method}
    assert sign(params, "helloworld", sign_method) == expected
    assert verify({**params, "sign": expected}, "helloworld")
    assert verify({**params, "sign": expected.lower()}, "helloworld")


def test_sign_skips_empty_values_and_the_sign_itself_and_encodes_utf8():
    # openssl: printf '%s' 'app_key23456789cat16image_data图片methodtaobao.image.search'\
    #   'sign_methodhmac-sha256timestamp2024-05-01 08:00:00v2.0' | openssl dgst -sha256 -hmac 'sëcret'
    params = {
        "app_key": "23456789",
        "cat": "16",
        "image_data": "图片",
        "method": "taobao.image.search",
        "page": "",
        "sign": "WHATEVER",
        "sign_method": "hmac-sha256",
        "timestamp": "2024-05-01 08:00:00",
        "v": "2.0",
    }
    assert sign(params, "sëcret", "hmac-sha256") == "57BEFDD9CF0295BBE1FB96B29AFE9A0B19442AB36B63F3682402B5C13FE65025"


def test_verify_refuses_a_wrong_secret_a_changed_param_and_an_unknown_method():
    params = {**DOC_PARAMS, "sign_method": "md5", "sign": KNOWN_ANSWERS[0][1]}
    assert not verify(params, "other-secret")
    assert not verify({**params, "num_iid": "11223345"}, "helloworld")
    assert not verify({**params, "sign_method": "sha1"}, "helloworld")


def test_timestamps_are_gmt8_and_epoch_ms_is_accepted():
    moment = datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
    assert top_timestamp(moment) == "2024-01-01 08:30:00"
    assert parse_top_timestamp("2024-01-01 08:30:00") == moment
    assert parse_top_timestamp(str(int(moment.timestamp() * 1000))) == moment
