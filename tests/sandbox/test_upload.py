"""taobao.upload.img: Base64 and image_url uploads, and searching by the returned id or URL."""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import io
import socket
import threading
import time
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


@pytest.fixture
def raw_image_host():
    """``raw_image_host(respond)``: a loopback TCP server whose every connection is handed, after the
    request head is read, to ``respond(sock)``; yields the base URL.  For bodies http.server won't send."""
    servers: list[socket.socket] = []

    def start(respond):
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def serve():
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(10)
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                    try:
                        respond(conn)
                    except OSError:
                        pass  # the sandbox hung up on us: that is what some tests want

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


def test_image_url_without_content_length_is_capped_while_read(sandbox, raw_image_host):
    """A chunked body announces no length: the sandbox must count the bytes and hang up past the cap."""
    from sandbox.server import MAX_FETCH_BYTES

    sent = [0]
    stopped = threading.Event()

    def endless_chunks(conn):
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"\0" * (1 << 20)
            framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
            for _ in range(300):  # 300 MB, unless the sandbox hangs up
                conn.sendall(framed)
                sent[0] += len(chunk)
            conn.sendall(b"0\r\n\r\n")
        finally:
            stopped.set()

    started = time.monotonic()
    error = upload(sandbox, image_url=raw_image_host(endless_chunks) + "/big.png")["error_response"]
    assert error["code"] == 21
    assert f"larger than {MAX_FETCH_BYTES} bytes" in error["sub_msg"]
    assert time.monotonic() - started < 5
    # The sandbox hung up soon after the cap (socket buffers hold a few MB more), not after 300 MB.
    assert stopped.wait(5)
    assert sent[0] < MAX_FETCH_BYTES + (32 << 20)


def test_image_url_body_ended_by_closing_the_connection_is_accepted(sandbox, raw_image_host, png_bytes, product):
    """No Content-Length, not chunked: the body ends when the server closes (HTTP/1.0 style); that is complete."""

    def close_delimited(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n" + png_bytes)
        conn.shutdown(socket.SHUT_WR)

    answer = upload(sandbox, image_url=raw_image_host(close_delimited) + "/photo.png")
    image = answer["upload_img_response"]["image"]
    assert image["id"] == hashlib.sha1(png_bytes).hexdigest()
    assert first_ids(sandbox, image["id"])[0] == product.num_iid


def test_image_url_body_cut_short_of_its_content_length_is_refused(sandbox, raw_image_host, png_bytes):
    def truncated(conn):
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(png_bytes)
            + png_bytes[: len(png_bytes) // 2]
        )
        conn.shutdown(socket.SHUT_WR)

    error = upload(sandbox, image_url=raw_image_host(truncated) + "/photo.png")["error_response"]
    assert error["code"] == 21 and error["sub_msg"].startswith("cannot fetch image_url")


@pytest.mark.parametrize(("codes", "code"), [("article", 21), ("top", 41)])
def test_malformed_image_url_is_an_image_error_not_an_internal_one(make_sandbox, codes, code):
    sb = make_sandbox("--codes", codes)
    for url in ("http://[::1/x.jpg", "https://[not-an-ip]/img/1.jpg"):
        error = upload(sb, image_url=url)["error_response"]
        assert (error["code"], error["sub_code"].split(":")[-1]) == (
            code, "image_url" if code == 41 else "isv.invalid-image-format"
        )
        assert "not a valid URL" in error["sub_msg"]
    assert "Traceback" not in sb.stderr()
