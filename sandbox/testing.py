"""Helpers for tests and benchmarks: a sandbox in a subprocess, signed TOP calls and Onebound calls over urllib."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pipeline.gateways.onebound.wire import SEARCH_PATH, UPLOAD_PATH
from pipeline.gateways.top.signing import sign, top_timestamp
from pipeline.gateways.top.wire import API_VERSION

logger = logging.getLogger(__name__)

READY_PREFIX = "sandbox listening on "
_REPO_ROOT = Path(__file__).resolve().parent.parent


class SandboxProcess:
    """``with SandboxProcess("--codes", "top") as sb:`` runs ``python -m sandbox --port 0 ...`` and
    waits for its ready line; ``sb.url`` (``http://127.0.0.1:PORT``), ``sb.endpoint`` (TOP's router
    URL), ``sb.stats()``; terminated on exit."""

    def __init__(self, *args: str, timeout: float = 60.0, env: Mapping[str, str] | None = None) -> None:
        self.args = [str(a) for a in args]
        self.timeout = timeout
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.endpoint = ""
        self.url = ""
        self._stderr = tempfile.TemporaryFile(mode="w+b")

    def start(self) -> SandboxProcess:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH", "")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", "0", *self.args],
            stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, text=True, env=env,
        )
        line = self._read_ready_line()
        self.url = line[len(READY_PREFIX):].split()[0]
        self.endpoint = self.url + "/router/rest"
        return self

    def _read_ready_line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(self.timeout)
        line = result[0] if result else ""
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(
                f"sandbox {' '.join(self.args)} did not start (exit code {self.process.returncode}); "
                f"stdout: {line!r}; stderr:\n{self.stderr()}"
            )
        return line

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stats(self) -> dict[str, Any]:
        """``GET /_sandbox/stats``, parsed."""
        with urllib.request.urlopen(self.url + "/_sandbox/stats", timeout=10) as response:
            return json_object(response)

    def reset(self) -> None:
        """``POST /_sandbox/reset``: zero the stats and quota windows."""
        self._control("reset")

    def next_day(self) -> None:
        """``POST /_sandbox/next-day``: the sandbox's day ends now; the apps' calls for the day start again."""
        self._control("next-day")

    def _control(self, action: str) -> None:
        urllib.request.urlopen(
            urllib.request.Request(f"{self.url}/_sandbox/{action}", data=b"", method="POST"), timeout=10
        ).close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        died = self.process is not None and self.process.poll() is not None
        self.stop()
        if self.process and self.process.stdout:
            self.process.stdout.close()
        if died and exc_type is None:
            raise RuntimeError(f"sandbox died during the test (exit code {self.process.returncode}):\n{self.stderr()}")  # type: ignore[union-attr]
        self._stderr.close()


def json_object(response: IO[bytes]) -> dict[str, Any]:
    """The JSON object an HTTP response's body holds; ValueError for any other body."""
    body = json.load(response)
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    return body


def signed_params(
    method: str,
    app_key: str = "test",
    secret: str = "test",
    sign_method: str = "md5",
    timestamp: str | None = None,
    **business: Any,
) -> dict[str, str]:
    """All parameters of a TOP call, common and business, signed with ``pipeline.gateways.top.signing.sign``."""
    params = {
        "method": method,
        "app_key": app_key,
        "timestamp": timestamp if timestamp is not None else top_timestamp(),
        "format": "json",
        "v": API_VERSION,
        "sign_method": sign_method,
        **{k: str(v) for k, v in business.items() if v is not None},
    }
    params["sign"] = sign(params, secret, sign_method)
    return params


def post(endpoint: str, params: Mapping[str, str], timeout: float = 30.0) -> dict[str, Any]:
    """POST ``params`` form-encoded to ``endpoint``; the parsed JSON answer."""
    body = urllib.parse.urlencode(params).encode("utf-8")
    request = urllib.request.Request(
        endpoint, data=body, headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json_object(response)


def get(endpoint: str, params: Mapping[str, str], timeout: float = 30.0) -> dict[str, Any]:
    """GET ``endpoint?params``; the parsed JSON answer."""
    with urllib.request.urlopen(endpoint + "?" + urllib.parse.urlencode(params), timeout=timeout) as response:
        return json_object(response)


def call(
    endpoint: str, method: str, *, http_method: str = "POST", timeout: float = 30.0, **kwargs: Any
) -> dict[str, Any]:
    """Sign and send one call (``kwargs`` as for :func:`signed_params`); the parsed JSON answer."""
    params = signed_params(method, **kwargs)
    return (post if http_method == "POST" else get)(endpoint, params, timeout=timeout)


def onebound_search(url: str, imgid: str, key: str = "test", secret: str = "test", timeout: float = 30.0,
                    **params: Any) -> dict[str, Any]:
    """``GET {url}/taobao/item_search_img/?key&secret&imgid...`` as Onebound's own examples do; the parsed JSON."""
    query = urllib.parse.urlencode({"key": key, "secret": secret, "imgid": imgid, **params})
    with urllib.request.urlopen(f"{url}{SEARCH_PATH}?{query}", timeout=timeout) as response:
        return json_object(response)


def onebound_upload(
    url: str, imgcode: str, key: str = "test", secret: str = "test", timeout: float = 30.0
) -> dict[str, Any]:
    """``POST {url}/taobao/upload_img/?key&secret`` with ``imgcode`` (Base64) in the form; the parsed JSON."""
    query = urllib.parse.urlencode({"key": key, "secret": secret})
    body = urllib.parse.urlencode({"imgcode": imgcode}).encode("ascii")
    request = urllib.request.Request(f"{url}{UPLOAD_PATH}?{query}", data=body)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json_object(response)


def aliyun_post(url: str, action: str, params: Mapping[str, str], key: str = "test", secret: str = "test",
                date: str | None = None, nonce: str | None = None, timeout: float = 30.0,
                ) -> tuple[int, dict[str, str], dict[str, Any]]:
    """``POST {url}/`` of an Image Search action with the V3 signature (``date`` and ``nonce`` given or
    fresh): the HTTP status, the answer's headers (lower-cased names) and its parsed JSON, errors too."""
    from urllib.error import HTTPError

    from pipeline.gateways.aliyun import signing
    from pipeline.gateways.aliyun.wire import API_VERSION as ALIYUN_VERSION

    body = urllib.parse.urlencode(params).encode("utf-8")
    headers = {
        "host": urllib.parse.urlsplit(url).netloc, "content-type": "application/x-www-form-urlencoded",
        "x-acs-action": action, "x-acs-version": ALIYUN_VERSION, "x-acs-date": date or signing.timestamp(),
        "x-acs-signature-nonce": nonce or signing.nonce(), "x-acs-content-sha256": signing.sha256_hex(body),
    }
    headers["authorization"] = signing.v3_authorization("POST", "/", [], headers, key, secret)
    request = urllib.request.Request(url.rstrip("/") + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json_object(response)
    except HTTPError as error:
        with error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, json.loads(error.read())


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


__all__: Sequence[str] = (
    "SandboxProcess", "signed_params", "post", "get", "call", "onebound_search", "onebound_upload", "aliyun_post",
    "wait_until",
)


class RedisServer:
    """``with RedisServer() as redis:`` runs Debian's ``redis-server`` on a free loopback port, with no
    persistence, in a directory of its own; ``redis.url`` is its ``redis://127.0.0.1:PORT/0``;
    stopped on exit. ``make install`` installs redis-server (as root; else it says how). ``port``: that
    port instead of a free one (to start a Redis again where a stopped one was)."""

    def __init__(self, timeout: float = 10.0, port: int = 0) -> None:
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.port = port
        self.url = ""
        self._dir = tempfile.TemporaryDirectory(prefix="redis-")

    def start(self) -> RedisServer:
        import shutil
        import socket

        import redis

        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed: make install installs it as root, "
                               "else: sudo apt-get install redis-server")
        if not self.port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        # Never under libfaketime (make test-clock): it cannot start redis-server's allocator. Redis then
        # keeps the real time while its clients' clocks are moved, which the shared run is built for:
        # leases and quota windows are timed by Redis' clock alone.
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")}
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir.name, "--daemonize", "no", "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
        client.close()
        return self

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
