"""A quota-bound crawl of about half a minute, with an outage in the middle, read through its progress lines.

What a user watching the log sees: counts that only grow, an ETA (worked out from the calls still
needed and the quota) that ends near the real end, and a warning while the gateway answers nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from datasets import load_dataset, run_crawl, write_seed_photos

from sandbox.testing import SandboxProcess

QUOTA_CALLS, QUOTA_SECONDS, MARGIN = 8, 2, 0.5
SEEDS, PAGES = 30, 2
#: The sandbox drops every call for OUTAGE seconds, OUTAGE_AFTER seconds after its first call.
OUTAGE_AFTER, OUTAGE = 6, 6
#: How far an ETA given after the outage may be from the real end, in seconds: the line's times
#: are whole seconds (1 s each way), plus a second for the answers' latency and the crawl's
#: own turns.
ETA_TOLERANCE = 3.0

_LINE = re.compile(
    r"Progress after (?P<elapsed>[^:]+): seeds (?P<done>[\d,]+)/(?P<seeds>[\d,]+) done.*?; "
    r"calls (?P<calls>[\d,]+) spent.*?, (?P<needed>[\d,]+) still needed.*?; errors (?P<errors>[\d,]+)"
    r"(?P<outage>; NO ANSWER from the gateway for [^;]+)?"
    r"(?:; ETA \S+ \S+ UTC \(in (?P<eta>[^)]+)\)|; the crawl ended \((?P<ended>[^)]+)\))"
)


def _seconds(text: str) -> float:
    """``42 s``, ``1 min 05 s``, ``2 h 03 min`` back into seconds."""
    units = {"s": 1, "min": 60, "h": 3600, "d": 86400}
    numbers = re.findall(r"(\d+) (s|min|h|d)\b", text)
    assert numbers, text
    return float(sum(int(n) * units[u] for n, u in numbers))


def _number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    write_seed_photos(tmp_path / "photos", SEEDS)
    return tmp_path / "photos"


def test_progress_lines_grow_give_an_eta_near_the_end_and_say_when_the_gateway_is_down(
    tmp_path: Path, photos: Path
) -> None:
    with SandboxProcess("--app", f"test:test:{QUOTA_CALLS}/{QUOTA_SECONDS}",
                        "--fault-outage", f"{OUTAGE_AFTER}:{OUTAGE}") as sandbox:
        result = run_crawl(
            str(photos), "-a", f"pages={PAGES}", "-s", "DATASET_FORMATS=parquet",
            "-s", f"IMAGESEARCH_QUOTA={QUOTA_CALLS}/{QUOTA_SECONDS}", "-s", f"IMAGESEARCH_QUOTA_MARGIN={MARGIN}",
            "-s", "PROGRESS_INTERVAL=1", "-s", "IMAGESEARCH_OUTAGE_WARNING=2", "-s", "REPORT_ENABLED=False",
            dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint,
        )
        sandbox_stats = sandbox.stats()
    assert result.returncode == 0, result.tail()
    seeds = load_dataset(tmp_path / "datasets")["seeds"]
    assert len(seeds) == SEEDS and seeds["status"].eq("ok").all(), seeds.to_string()
    assert sandbox_stats["quota_refused"] == 0, sandbox_stats
    assert sandbox_stats["faults"]["drop"] > 0, sandbox_stats  # the outage happened, during the crawl

    lines = [m for m in map(_LINE.search, result.stderr.splitlines()) if m]
    final = lines[-1]
    assert final["ended"] == "finished", final.group(0)
    end = _seconds(final["elapsed"])
    # A line a second (PROGRESS_INTERVAL=1), some skipped when the machine is busy: at least one in two.
    assert len(lines) >= max(10, end / 2), result.tail()
    assert end >= 20, f"the crawl took {end} s: too short to say anything of an ETA"

    # Counts only grow, and end at every seed done and every call spent.
    for name in ("done", "calls", "errors"):
        series = [_number(m[name]) for m in lines]
        assert series == sorted(series), (name, series)
    assert _number(final["done"]) == _number(final["seeds"]) == SEEDS
    assert _number(final["needed"]) == 0
    assert _number(final["calls"]) == result.stats["imagesearch/calls"] == sandbox_stats["calls"]["total"]
    assert _number(final["errors"]) > 0  # the dropped calls

    # The outage is said while it lasts (IMAGESEARCH_OUTAGE_WARNING=2), and no longer after it.
    down = [i for i, m in enumerate(lines) if m["outage"]]
    assert down, "no progress line said the gateway was not answering:\n" + "\n".join(m.group(0) for m in lines)
    assert len(down) >= OUTAGE - 3, [lines[i].group(0) for i in down]
    assert down == list(range(down[0], down[-1] + 1)), down  # one stretch: the outage
    assert down[-1] < len(lines) - 3

    # After the outage, every ETA points within ETA_TOLERANCE of the real end.
    after = [m for m in lines[down[-1] + 1:-1] if m["eta"]]
    assert len(after) >= 5, [m.group(0) for m in after]
    misses = [(m.group(0), _seconds(m["elapsed"]) + _seconds(m["eta"]) - end) for m in after]
    assert all(abs(miss) <= ETA_TOLERANCE for _, miss in misses), misses

    # The same figures reach stats, and the manifest's calls.
    stats = result.stats
    assert stats["progress/calls_needed"] == 0
    assert stats["progress/calls_planned"] == SEEDS * PAGES  # every seed's 2 pages, known from the first page
    calls = result.manifest()["calls"]
    assert calls["spent"] == stats["imagesearch/calls"]
    assert calls["planned"] == SEEDS * PAGES
    assert calls["waits"] == stats["pacing/waits"] > 0
    assert calls["longest_silence_seconds"] >= OUTAGE - 2
