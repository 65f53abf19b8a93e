"""``python -m sandbox``: flags, the ready line, one-line errors; and SandboxConfig.from_args."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.config import AppConfig, SandboxConfig

REPO = Path(__file__).resolve().parents[2]


def test_from_args_parses_the_cli_flags():
    config = SandboxConfig.from_args([
        "--app", "a:b:5/2", "--app", "c:d", "--deny", "a:taobao.upload.img", "--codes", "top",
        "--page-size", "7", "--max-results", "50", "--fault-5xx", "0.5", "--fault-seed", "3",
    ])
    assert config.apps == (AppConfig("a", "b", 5, 2.0), AppConfig("c", "d", 1000, 3600.0))
    assert config.denies == {("a", "taobao.upload.img")}
    assert (config.codes, config.page_size, config.max_results) == ("top", 7, 50)
    assert (config.faults.http_5xx, config.faults.seed) == (0.5, 3)
    assert SandboxConfig.from_args([]) == SandboxConfig()


@pytest.mark.parametrize(
    "args",
    [
        ["--app", "nocolon"],
        ["--app", "k:s:10"],
        ["--app", "k:s:0/10"],
        ["--deny", "justakey"],
        ["--codes", "xml"],
        ["--fault-5xx", "2"],
        ["--page-size", "0"],
        ["--port", "http"],
        # float() takes these; a NaN or infinite quota window or delay broke every later call.
        ["--app", "k:k:2/nan"],
        ["--app", "k:k:2/inf"],
        ["--app", "k:k:2/1e400"],
        ["--slow-seconds", "nan"],
        ["--slow-seconds", "inf"],
    ],
)
def test_bad_flags_are_one_line_errors(args):
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=30, cwd=REPO
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("python -m sandbox: error:")


def test_ready_line_is_exactly_one_line(sandbox):
    assert sandbox.endpoint.startswith("http://127.0.0.1:") and sandbox.endpoint.endswith("/router/rest")
    assert sandbox.endpoint == f"{sandbox.url}/router/rest" and sandbox.port > 0


def test_port_in_use_is_a_one_line_error(sandbox):
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "--port", str(sandbox.port)],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )
    assert result.returncode == 2 and "cannot listen" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_values_are_refused_from_python_too(value):
    from sandbox.config import FaultConfig

    with pytest.raises(ValueError):
        FaultConfig(slow_seconds=value)
    with pytest.raises(ValueError):
        AppConfig.parse(f"k:k:2/{value}")
