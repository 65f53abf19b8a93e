"""Sandbox configuration: one dataclass, built from Python or from the ``python -m sandbox`` flags."""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.gateways.aliyun.wire import DEFAULT_QPS

logger = logging.getLogger(__name__)

CODE_TABLES: tuple[str, ...] = ("article", "top")

#: The article's default quota: 1000 calls an hour per app.
DEFAULT_QUOTA_CALLS = 1000
DEFAULT_QUOTA_SECONDS = 3600.0


@dataclass(frozen=True)
class AppConfig:
    """One registered application: its key, secret and sliding-window quota (``calls`` per ``seconds``)."""

    key: str
    secret: str
    calls: int = DEFAULT_QUOTA_CALLS
    seconds: float = DEFAULT_QUOTA_SECONDS
    #: Calls this app may make in a day (None: the sandbox's --daily-max).
    daily: int | None = None

    @classmethod
    def parse(cls, text: str) -> AppConfig:
        """Parse ``KEY:SECRET[:CALLS/SECONDS[:DAILY]]``, e.g. ``test:test:5/2`` or ``test:test:5/2:100``."""
        parts = text.split(":")
        if len(parts) not in (2, 3, 4) or not parts[0] or not parts[1]:
            raise ValueError(f"expected KEY:SECRET[:CALLS/SECONDS[:DAILY]], got {text!r}")
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        daily = None
        if len(parts) == 4:
            if not parts[3].isdigit() or int(parts[3]) < 1:
                raise ValueError(f"expected a daily limit of 1 or more calls, got {parts[3]!r}")
            daily = int(parts[3])
        calls_text, slash, seconds_text = parts[2].partition("/")
        try:
            calls, seconds = int(calls_text), float(seconds_text)
        except ValueError:
            raise ValueError(f"expected a quota CALLS/SECONDS such as 1000/3600, got {parts[2]!r}") from None
        # NaN compares false with everything, so it would slip past ``seconds <= 0``; inf makes the
        # ban arithmetic meaningless.  Both would surface later as internal errors on every call.
        if not slash or calls < 1 or not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(
                f"expected a quota CALLS/SECONDS with CALLS >= 1 and a finite SECONDS > 0, got {parts[2]!r}"
            )
        return cls(parts[0], parts[1], calls, seconds, daily)


@dataclass(frozen=True)
class FaultConfig:
    """Injected faults on ``/router/rest``: each rate is a probability in 0..1, drawn from ``Random(seed)``."""

    http_5xx: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 5.0
    garbage: float = 0.0
    drop: float = 0.0
    remote: float = 0.0
    seed: int = 0
    #: An outage: every call is dropped from ``outage_after`` seconds after the sandbox's first call, for
    #: ``outage_seconds`` seconds (0: none).
    outage_after: float = 0.0
    outage_seconds: float = 0.0

    def __post_init__(self) -> None:
        for name in ("outage_after", "outage_seconds"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}={value} is not a finite number >= 0")
        for name in ("http_5xx", "slow", "garbage", "drop", "remote"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {name}={rate} is not between 0 and 1")
        if not math.isfinite(self.slow_seconds) or self.slow_seconds < 0:
            raise ValueError(f"slow_seconds={self.slow_seconds} is not a finite number >= 0")

    @property
    def any(self) -> bool:
        return any((self.http_5xx, self.slow, self.garbage, self.drop, self.remote, self.outage_seconds))


@dataclass(frozen=True)
class SandboxConfig:
    """Everything a running sandbox needs; the defaults give the article's 1000 calls/hour ``test``/``test`` app."""

    apps: tuple[AppConfig, ...] = (AppConfig("test", "test"),)
    #: ``(app_key, method)`` pairs refused with code 11 (insufficient permissions).
    denies: frozenset[tuple[str, str]] = frozenset()
    #: ``article`` (the source article's code table) or ``top`` (real TOP's); see ``sandbox.top.CODE_TABLES``.
    codes: str = "article"
    page_size: int = 20
    max_results: int = 200
    #: A JSON-lines catalogue; ``None`` serves the built-in generated catalogue.
    catalog: Path | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: Allowed clock skew of the ``timestamp`` parameter, both directions.
    max_skew_seconds: float = 600.0
    #: Read/connect timeout when ``taobao.upload.img`` fetches an ``image_url``.
    fetch_timeout: float = 5.0
    #: Calls an app may make in a day (TOP answers code 7 limited-by-app-access-count past it,
    #: Onebound its daily-limit code; Onebound's ``api_info`` shows the count).
    daily_max: int = 10_000
    #: Length of the sandbox's day in seconds; 86400 (a day starting at 00:00 China time), or shorter in tests.
    day_seconds: float = 86_400.0
    #: Searches per second an AccessKey may make on the aliyun protocol (the product's default is 5);
    #: more are refused with Throttling.User, beside each app's own CALLS/SECONDS quota.
    aliyun_qps: int = DEFAULT_QPS
    #: The listings' pictures (``/img/...``, the CDN) answer 503, as in a CDN outage; the APIs still answer.
    cdn_down: bool = False

    def __post_init__(self) -> None:
        if self.codes not in CODE_TABLES:
            raise ValueError(f"codes must be one of {', '.join(CODE_TABLES)}, got {self.codes!r}")
        if self.page_size < 1 or self.max_results < 0:
            raise ValueError("page_size must be >= 1 and max_results >= 0")
        if self.aliyun_qps < 1:
            raise ValueError("aliyun_qps must be >= 1")
        if self.daily_max < 1 or not math.isfinite(self.day_seconds) or self.day_seconds <= 0:
            raise ValueError("daily_max must be >= 1 and day_seconds a finite number > 0")
        if not self.apps:
            raise ValueError("at least one app is needed")
        # Callers may pass lists and plain strings: stored as the declared (hashable) types.
        object.__setattr__(self, "apps", tuple(self.apps))
        object.__setattr__(self, "denies", frozenset(tuple(d) for d in self.denies))
        if self.catalog is not None:
            object.__setattr__(self, "catalog", Path(self.catalog))

    def app(self, key: str) -> AppConfig | None:
        for app in self.apps:
            if app.key == key:
                return app
        return None

    @classmethod
    def from_args(cls, args: Sequence[str]) -> SandboxConfig:
        """Build a config from CLI flags (the same as ``python -m sandbox``); raises ``SystemExit`` on bad flags."""
        return cls.from_namespace(build_parser().parse_args(list(args)))

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> SandboxConfig:
        return cls(
            apps=tuple(ns.app) if ns.app else cls.apps,
            denies=frozenset(ns.deny or ()),
            codes=ns.codes,
            page_size=ns.page_size,
            max_results=ns.max_results,
            catalog=ns.catalog,
            daily_max=ns.daily_max,
            day_seconds=ns.day_seconds,
            aliyun_qps=ns.aliyun_qps,
            cdn_down=ns.cdn_down,
            faults=FaultConfig(
                http_5xx=ns.fault_5xx,
                slow=ns.fault_slow,
                slow_seconds=ns.slow_seconds,
                garbage=ns.fault_garbage,
                drop=ns.fault_drop,
                remote=ns.fault_remote,
                seed=ns.fault_seed,
                outage_after=ns.fault_outage[0] if ns.fault_outage else 0.0,
                outage_seconds=ns.fault_outage[1] if ns.fault_outage else 0.0,
            ),
        )


def _app(text: str) -> AppConfig:
    try:
        return AppConfig.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _deny(text: str) -> tuple[str, str]:
    key, sep, method = text.partition(":")
    if not sep or not key or not method:
        raise argparse.ArgumentTypeError(f"expected KEY:METHOD, e.g. test:taobao.upload.img, got {text!r}")
    return key, method


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate between 0 and 1, got {text!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a rate between 0 and 1, got {text!r}")
    return rate


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    # float() accepts "nan" and "inf"; a delay of either breaks the reactor's callLater.
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _outage(text: str) -> tuple[float, float]:
    after, sep, seconds = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected AFTER:SECONDS, e.g. 30:60, got {text!r}")
    return _seconds(after), _positive_seconds(seconds)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text!r}")
    return value


def _add_fault_options(parser: argparse.ArgumentParser) -> None:
    """The faults the sandbox injects (each a rate of the calls, or an outage), and their dice."""
    parser.add_argument("--fault-5xx", type=_rate, default=0.0, metavar="RATE", help="answer HTTP 500/502/503")
    parser.add_argument(
        "--fault-slow", type=_rate, default=0.0, metavar="RATE", help="hold the response back --slow-seconds"
    )
    parser.add_argument(
        "--slow-seconds", type=_seconds, default=5.0, metavar="S", help="delay of a slow fault (default 5)"
    )
    parser.add_argument(
        "--fault-garbage", type=_rate, default=0.0, metavar="RATE", help="200 with truncated JSON or HTML"
    )
    parser.add_argument("--fault-drop", type=_rate, default=0.0, metavar="RATE", help="abort the connection mid-body")
    parser.add_argument("--fault-remote", type=_rate, default=0.0, metavar="RATE", help="transient error_response")
    parser.add_argument(
        "--fault-outage", type=_outage, metavar="AFTER:SECONDS",
        help="drop every call from AFTER seconds after the first call, for SECONDS seconds (an outage)",
    )
    parser.add_argument("--cdn-down", action="store_true",
                        help="the listings' pictures (/img/..., the CDN) answer 503, the APIs still answer")
    parser.add_argument("--fault-seed", type=int, default=0, metavar="N", help="seed of the fault dice (default 0)")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m sandbox`` argument parser (also used by :meth:`SandboxConfig.from_args`)."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="An image-search sandbox over HTTP: TOP's taobao.image.search (GET/POST /router/rest), "
        "Onebound's item_search_img (GET /taobao/item_search_img/, POST /taobao/upload_img/) and Alibaba Cloud "
        "Image Search's SearchByPic/SearchByUrl (POST /).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8731, help="TCP port, 0 for any free port (default 8731)")
    parser.add_argument(
        "--app",
        action="append",
        type=_app,
        metavar="KEY:SECRET[:CALLS/SECONDS[:DAILY]]",
        help="register an app (repeatable), with its quota and its own daily limit (else --daily-max); "
        "replaces the default test:test:1000/3600",
    )
    parser.add_argument(
        "--deny",
        action="append",
        type=_deny,
        metavar="KEY:METHOD",
        help="refuse METHOD (a TOP method, or item_search_img / upload_img) for app KEY (repeatable)",
    )
    parser.add_argument("--codes", choices=CODE_TABLES, default="article", help="error code table (default article)")
    parser.add_argument("--page-size", type=_positive_int, default=20, help="items per page (default 20)")
    parser.add_argument("--max-results", type=_non_negative_int, default=200, help="cap on total_results (default 200)")
    parser.add_argument(
        "--daily-max", type=_positive_int, default=10_000, metavar="N", help="calls an app may make in a day (10000)"
    )
    parser.add_argument(
        "--day-seconds", type=_positive_seconds, default=86_400.0, metavar="S",
        help="length of the sandbox's day in seconds (default 86400, from 00:00 China time)",
    )
    parser.add_argument(
        "--aliyun-qps", type=_positive_int, default=DEFAULT_QPS, metavar="N",
        help="searches per second an AccessKey may make on the aliyun protocol at / (default 5, the product's)",
    )
    parser.add_argument(
        "--catalog", type=Path, metavar="FILE.jsonl", help="serve this catalogue instead of the built-in one"
    )
    _add_fault_options(parser)
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level on stderr (default WARNING)",
    )
    return parser
