"""The sandbox answers requests built exactly as real TOP clients build them (api.md section 5), as real TOP would.

``python_sdk_request`` follows Taobao's own Python SDK (``top/api/base.py``): common parameters in
the query string with an epoch-milliseconds timestamp, business parameters in the body, ``byte[]``
arguments as ``Content-Disposition: file`` parts left out of the signature, every other parameter
signed, an empty one as its bare key, md5. The Java SDK drops empty values and never sends them;
that is how ``sandbox.testing.signed_params`` signs.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from sandbox.catalog import builtin_catalog, jpeg_bytes
from sandbox.testing import SandboxProcess, post, signed_params

SEARCH, UPLOAD = "taobao.image.search", "taobao.upload.img"


@pytest.fixture(scope="module")
def sb():
    with SandboxProcess("--codes", "top") as process:
        yield process


@pytest.fixture(scope="module")
def photo() -> bytes:
    return jpeg_bytes(builtin_catalog().products[123].image())


def python_sdk_sign(secret: str, params: dict[str, str]) -> str:
    """The Python SDK's ``sign()``: md5(secret + k1v1k2v2... + secret) over the sorted keys, empty values too."""
    text = secret + "".join(f"{key}{params[key]}" for key in sorted(params)) + secret
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def python_sdk_request(
    endpoint: str, method: str, business: dict[str, str], files: dict[str, bytes] | None = None,
    app_key: str = "test", secret: str = "test", extra_system: dict[str, str] | None = None,
) -> tuple[bytes, str]:
    """Send ``method`` as the official Python SDK does; the answer's body and Content-Type."""
    system = {
        "format": "json", "app_key": app_key, "sign_method": "md5", "v": "2.0",
        "timestamp": str(int(time.time() * 1000)), "partner_id": "top-sdk-python-20220101", "method": method,
        **(extra_system or {}),
    }
    system["sign"] = python_sdk_sign(secret, {**system, **business})  # file parts are not signed
    url = endpoint + "?" + urllib.parse.urlencode(system)
    if files:
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n'
            f"Content-Type: text/plain; charset=UTF-8\r\n\r\n{value}\r\n".encode()
            for key, value in business.items()
        ]
        parts += [
            f'--{boundary}\r\nContent-Disposition: file; name="{key}"; filename="{key}.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n"
            for key, data in files.items()
        ]
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        content_type = f"multipart/form-data; boundary={boundary}"
    else:
        body = urllib.parse.urlencode(business).encode()
        content_type = "application/x-www-form-urlencoded;charset=UTF-8"
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), response.headers["Content-Type"]


def _json(answer: tuple[bytes, str]) -> dict[str, Any]:
    body, content_type = answer
    assert content_type.startswith("application/json"), content_type
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def test_a_picture_sent_as_a_file_part_is_left_out_of_the_signature_and_uploaded(sb, photo):
    answer = _json(python_sdk_request(sb.endpoint, UPLOAD, {}, files={"image": photo}))
    image = answer["upload_img_response"]["image"]
    assert image["id"] == hashlib.sha1(photo).hexdigest()
    # The upload is searchable, and finds the product the photo shows.
    found = post(sb.endpoint, signed_params(SEARCH, image_data=image["id"]))["image_search_response"]
    assert str(found["items"]["item"][0]["num_iid"]) == str(builtin_catalog().products[123].fields["num_iid"])


def test_a_file_part_that_was_signed_after_all_is_refused(sb, photo):
    # Signing the file (as the sandbox used to expect) is not what TOP does: the signature no longer matches.
    system = {"format": "json", "app_key": "test", "sign_method": "md5", "v": "2.0",
              "timestamp": str(int(time.time() * 1000)), "method": UPLOAD}
    system["sign"] = python_sdk_sign("test", {**system, "image": photo.decode("latin-1")})
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: file; name="image"; filename="a.jpg"\r\n\r\n'.encode()
            + photo + f"\r\n--{boundary}--\r\n".encode())
    request = urllib.request.Request(sb.endpoint + "?" + urllib.parse.urlencode(system), data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.load(response)["error_response"]["code"] == 25


def test_an_empty_value_signed_as_its_bare_key_is_accepted(sb, photo):
    upload_id = hashlib.sha1(photo).hexdigest()
    python_sdk_request(sb.endpoint, UPLOAD, {}, files={"image": photo})
    answer = _json(python_sdk_request(sb.endpoint, SEARCH, {"image_data": upload_id, "cat": ""}))
    assert int(answer["image_search_response"]["total_results"]) > 0


def test_an_empty_value_sent_but_left_out_of_the_signature_is_accepted(sb, photo):
    upload_id = hashlib.sha1(photo).hexdigest()
    python_sdk_request(sb.endpoint, UPLOAD, {}, files={"image": photo})
    params = signed_params(SEARCH, image_data=upload_id)  # signed without cat
    answer = post(sb.endpoint, {**params, "cat": ""})
    assert int(answer["image_search_response"]["total_results"]) > 0


def test_an_empty_value_does_not_open_the_door_to_a_wrong_signature(sb, photo):
    upload_id = hashlib.sha1(photo).hexdigest()
    python_sdk_request(sb.endpoint, UPLOAD, {}, files={"image": photo})
    params = signed_params(SEARCH, image_data=upload_id, secret="wrong")
    assert post(sb.endpoint, {**params, "cat": ""})["error_response"]["code"] == 25


def test_simplify_answers_without_the_method_wrapper(sb, photo):
    upload_id = hashlib.sha1(photo).hexdigest()
    python_sdk_request(sb.endpoint, UPLOAD, {}, files={"image": photo})
    answer = _json(python_sdk_request(sb.endpoint, SEARCH, {"image_data": upload_id},
                                      extra_system={"simplify": "true"}))
    assert "image_search_response" not in answer
    assert int(answer["total_results"]) > 0 and answer["items"]["item"] and answer["request_id"]


@pytest.mark.parametrize("fmt", ["xml", None])
def test_xml_is_answered_when_asked_for_or_when_no_format_is_named(sb, photo, fmt):
    upload_id = hashlib.sha1(photo).hexdigest()
    python_sdk_request(sb.endpoint, UPLOAD, {}, files={"image": photo})
    params = signed_params(SEARCH, image_data=upload_id)
    params.pop("format")
    if fmt:
        params["format"] = fmt
    params.pop("sign")
    from pipeline.gateways.top.signing import sign

    params["sign"] = sign(params, "test")
    request = urllib.request.Request(sb.endpoint, data=urllib.parse.urlencode(params).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/xml")
        root = ET.parse(io.BytesIO(response.read())).getroot()
    assert root.tag == "image_search_response"
    items = root.find("items")
    assert items is not None and items.get("list") == "true"
    titles = [item.findtext("title") for item in items.findall("item")]
    assert len(titles) == 20 and all(titles)
    assert int(root.findtext("total_results") or 0) > 0


def test_errors_come_as_xml_too(sb):
    params = signed_params(SEARCH, image_data="x", secret="wrong")
    params.pop("format")
    request = urllib.request.Request(sb.endpoint, data=urllib.parse.urlencode(params).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        root = ET.parse(io.BytesIO(response.read())).getroot()
    assert root.tag == "error_response" and root.findtext("code") == "25"
    assert root.findtext("sub_code") == "isv.invalid-signature"


def test_an_unknown_format_is_refused(sb):
    params = signed_params(SEARCH, image_data="x", format="yaml")
    request = urllib.request.Request(sb.endpoint, data=urllib.parse.urlencode(params).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        root = ET.parse(io.BytesIO(response.read())).getroot()
    assert (root.findtext("code"), root.findtext("sub_code")) == ("41", "isv.invalid-parameter:format")
