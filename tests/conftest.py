"""Shared fixtures: sandboxes in subprocesses (``sandbox``, ``make_sandbox``) and signed TOP calls."""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.testing import SandboxProcess, call

logger = logging.getLogger(__name__)


def _zone_on_another_date(now: datetime) -> str:
    """A POSIX TZ in which the local date differs from the UTC date at ``now``: UTC-12 before noon UTC, else UTC+14.

    (POSIX TZ strings count hours west of UTC, and need no zoneinfo database.)
    """
    return "<-12>12" if now.hour < 12 else "<+14>-14"


# No test may depend on the machine's time zone: the whole session, and every crawl and sandbox it
# starts (they inherit the environment), runs in a zone where today is another day than in UTC,
# unless TZ is set already (`make test-clock` sets its own).
os.environ.setdefault("TZ", _zone_on_another_date(datetime.now(UTC)))
time.tzset()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxProcess]:
    """One sandbox with the default flags (app test/test, 1000 calls/hour) for the whole session."""
    with SandboxProcess() as process:
        yield process


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., SandboxProcess]]:
    """``make_sandbox("--codes", "top")``: a started sandbox with custom flags, stopped after the test."""
    started: list[SandboxProcess] = []

    def factory(*args: str) -> SandboxProcess:
        process = SandboxProcess(*args).start()
        started.append(process)
        return process

    yield factory
    for process in started:
        process.__exit__(None, None, None)


@pytest.fixture
def top_call() -> Callable[..., dict[str, Any]]:
    """``top_call(endpoint, method, app_key=..., secret=..., sign_method=..., **business)`` → parsed JSON."""
    return call


@pytest.fixture(scope="session")
def catalog_image_b64() -> Callable[[int], str]:
    """Base64 JPEG of the built-in catalogue's product at an index."""
    from sandbox.catalog import builtin_catalog, jpeg_bytes

    catalog = builtin_catalog()

    def image(index: int) -> str:
        return base64.b64encode(jpeg_bytes(catalog.products[index].image())).decode("ascii")

    return image
