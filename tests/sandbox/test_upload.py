"""taobao.upload.img: Base64 and image_url uploads, and searching by the returned id or URL."""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import io
import threading
import urllib.request

import pytest

from sandbox.catalog import builtin_catalog
from sandbox.testing import post, signed_params

SEARCH, UPLOAD = "taobao.image.search", "taobao.upload.img"


@pytest.fixture(scope="module")
def product():
    return builtin_catalog().products[77]


@pytest.fixture(scope="module")
def png_bytes(product):
    buffer = io.BytesIO()
    product.image().resize((300, 300)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def image_host(tmp_path, png_bytes):
    """A plain http.server on loopback serving ``photo.png`` (and 404 for anything else)."""
    (tmp_path / "photo.png").write_bytes(png_bytes)
    (tmp_path / "notes.txt").write_text("not an image")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def upload(sb, **business):
    return post(sb.endpoint, signed_params(UPLOAD, **business))


def first_ids(sb, image_data):
    answer = post(sb.endpoint, signed_params(SEARCH, image_data=image_data))
    return [str(i["num_iid"]) for i in answer["image_search_response"]["items"]["item"]]


def test_base64_upload_returns_a_content_id_and_a_working_url(sandbox, png_bytes):
    answer = upload(sandbox, image=base64.b64encode(png_bytes).decode())
    image = answer["upload_img_response"]["image"]
    assert answer["upload_img_response"]["request_id"]
    assert image["id"] == hashlib.sha1(png_bytes).hexdigest()
    assert image["url"] == f"{sandbox.url}/upload/{image['id']}.jpg"
    with urllib.request.urlopen(image["url"], timeout=10) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.read()[:2] == b"\xff\xd8"
    # Identical bytes, identical id.
    again = upload(sandbox, image=base64.b64encode(png_bytes).decode(), sign_method="hmac")
    assert again["upload_img_response"]["image"]["id"] == image["id"]


def test_search_by_upload_id_or_url_matches_search_by_base64(sandbox, png_bytes, product):
    image = upload(sandbox, image=base64.b64encode(png_bytes).decode())["upload_img_response"]["image"]
    by_base64 = first_ids(sandbox, base64.b64encode(png_bytes).decode())
    assert by_base64[0] == product.num_iid
    assert first_ids(sandbox, image["id"]) == by_base64
    assert first_ids(sandbox, image["url"]) == by_base64
    # The spider may present the URL under another host name: matched on the path.
    other_host = image["url"].replace(sandbox.url, "https://sandbox.example:8443")
    assert first_ids(sandbox, other_host) == by_base64


def test_search_by_catalogue_picture_url(sandbox, product):
    assert first_ids(sandbox, f"http://img.example/img/{product.num_iid}.jpg")[0] == product.num_iid


def test_image_url_upload_fetches_over_http(sandbox, image_host, png_bytes, product):
    answer = upload(sandbox, image_url=image_host + "/photo.png")
    image = answer["upload_img_response"]["image"]
    assert image["id"] == hashlib.sha1(png_bytes).hexdigest()
    assert first_ids(sandbox, image["id"])[0] == product.num_iid


@pytest.mark.parametrize("path", ["/missing.png", "/notes.txt"])
def test_unusable_image_url_is_an_image_format_error(sandbox, image_host, path):
    error = upload(sandbox, image_url=image_host + path)["error_response"]
    assert (error["code"], error["sub_code"]) == (21, "isv.invalid-image-format")


def test_unreachable_image_url_is_an_image_format_error(sandbox):
    error = upload(sandbox, image_url="http://127.0.0.1:9/photo.jpg")["error_response"]
    assert error["code"] == 21


def test_top_table_names_the_upload_parameter(make_sandbox):
    sb = make_sandbox("--codes", "top")
    error = upload(sb, image=base64.b64encode(b"GIF89a broken").decode())["error_response"]
    assert (error["code"], error["sub_code"]) == (41, "isv.invalid-parameter:image")
    error = upload(sb)["error_response"]
    assert error["code"] == 40


def test_unknown_upload_id_or_foreign_url_is_refused(sandbox):
    for image_data in ("0" * 40, "https://img.alicdn.com/imgextra/i4/abc.jpg"):
        error = post(sandbox.endpoint, signed_params(SEARCH, image_data=image_data))["error_response"]
        assert error["code"] == 21
