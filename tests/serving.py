"""``scrapy serve`` as a subprocess for the tests: started on a free port, stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from datasets import REPO, free_port

READY = "Search service at "


class ServeProcess:
    """``with ServeProcess(endpoint, "-s", "NAME=VALUE") as service:``; ``service.url``, ``service.post_photo()``."""

    def __init__(self, endpoint: str, *options: str, cache_dir: Path, timeout: float = 90.0,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.command = [sys.executable, "-m", "scrapy", "serve", "-s", f"IMAGESEARCH_SERVE_PORT={self.port}",
                        "-s", f"IMAGESEARCH_ENDPOINT={endpoint}", "-s", f"IMAGESEARCH_SERVE_CACHE_DIR={cache_dir}",
                        *options]
        self.url = f"http://127.0.0.1:{self.port}"
        self.timeout = timeout
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
        self.env.update(env or {})
        self.log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServeProcess:
        self.process = subprocess.Popen(self.command, cwd=REPO, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.timeout
        while READY not in self.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"scrapy serve did not start (exit {self.process.poll()}):\n{self.text()[-4000:]}")
            time.sleep(0.1)
        return self

    def text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.stop()
        if exc_type is not None:  # a failing test shows what the service said (pytest prints captured stderr)
            print(f"--- scrapy serve's log (tail) ---\n{self.text()[-6000:]}", file=sys.stderr)

    # -- requests -----------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": content_type} if content_type else {}
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def post_photo(self, data: bytes, **fields: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                 for name, value in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="photo.jpg"\r\n'
                     "Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        status, headers, raw = self.request("POST", "/search", body, f"multipart/form-data; boundary={boundary}")
        return status, headers, json.loads(raw)

    def post_json(self, payload: Any) -> tuple[int, dict[str, str], bytes]:
        return self.request("POST", "/search", json.dumps(payload).encode(), "application/json")
