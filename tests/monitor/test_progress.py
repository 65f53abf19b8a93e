"""The progress figures and how they are shown: the line's text, the quota projection, the terminal bar."""

from __future__ import annotations

import dataclasses
import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from datetime import UTC, datetime
from pathlib import Path

from datasets import REPO

from pipeline.monitor.progress import BarSafeStream, Snapshot, duration, progress_line
from pipeline.pacing.apps import Quota
from pipeline.pacing.quota import InMemoryQuotaStore, project_slots


def _snapshot(**changes: object) -> Snapshot:
    snap = Snapshot(
        elapsed=750.0, seeds=120, outcomes={"ok": 38, "rejected": 2, "failed": 0, "unfinished": 0}, calls=96,
        replayed=0, known_calls=30, estimated_calls=160, seeds_not_begun=80, quota="1,000 per 3600 s", waiting=8,
        ban_left=0.0, errors=0, eta_seconds=2470.0, silent_seconds=0.0, failed_attempts=0,
        now=datetime(2026, 12, 2, 19, 0, tzinfo=UTC),
    )
    return dataclasses.replace(snap, **changes)  # type: ignore[arg-type]


def test_duration_reads_at_a_glance() -> None:
    assert [duration(s) for s in (0, 42.4, 425, 11220, 183600)] == ["0 s", "42 s", "7 min 05 s", "3 h 07 min",
                                                                    "2 d 03 h"]


def test_the_line_gives_every_figure() -> None:
    assert progress_line(_snapshot(), outage_after=60) == (
        "Progress after 12 min 30 s: seeds 40/120 done (38 ok, 2 rejected); calls 96 spent, 190 still needed "
        "(30 on known pages + about 160 for 80 seeds not begun); quota 1,000 per 3600 s; 8 calls waiting for "
        "their slot; errors 0; ETA 2026-12-02 19:41:10 UTC (in 41 min 10 s)"
    )


def test_the_line_says_a_ban_an_outage_and_the_end() -> None:
    line = progress_line(_snapshot(ban_left=42.0, silent_seconds=75.0, failed_attempts=1, errors=3, waiting=1),
                         outage_after=60)
    assert "; 1 call waiting for their slot; calls paused 42 s more by the gateway's quota ban; errors 3; " \
           "NO ANSWER from the gateway for 1 min 15 s (1 attempt failed): still retrying; ETA" in line
    quiet = progress_line(_snapshot(silent_seconds=59.0, failed_attempts=4), outage_after=60)
    assert "NO ANSWER" not in quiet
    ended = progress_line(_snapshot(known_calls=0, estimated_calls=0, seeds_not_begun=0), 60, ended="finished")
    assert ended.endswith("calls 96 spent, 0 still needed; quota 1,000 per 3600 s; 8 calls waiting for their slot; "
                          "errors 0; the crawl ended (finished)")
    assert "no quota set" in progress_line(_snapshot(quota=None), 60)


def test_the_projection_is_the_schedule_reserve_gives() -> None:
    quota, margin = Quota(10, 2.0), 0.5
    store, slots = InMemoryQuotaStore(), [("k", quota)]
    now = 100.0
    for _ in range(7):
        store.reserve(slots, now, margin)
    for more in (0, 1, 3, 4, 25):
        projected = store.projected(slots, now, margin, more)
        copy = InMemoryQuotaStore()
        for _ in range(7):
            copy.reserve(slots, now, margin)
        booked = [copy.reserve(slots, now, margin)[1] for _ in range(more)]
        assert projected == max([now, *booked]), more
    # Twenty-five more after seven: 3 go now, then 10 a window of 2.5 s: the last 2 three windows on.
    assert store.projected(slots, now, margin, 25) == now + 3 * 2.5
    # A ban holds the schedule back; project_slots on an empty schedule is a burst, then the window.
    store.ban("k", now, 30)
    assert store.projected(slots, now, margin, 1) == now + 30
    assert project_slots([], quota, now, margin, 10) == now
    assert project_slots([], quota, now, margin, 11) == now + 2.5


def test_log_lines_are_written_whole_with_the_bar_cleared_and_drawn_again() -> None:
    from tqdm import tqdm

    terminal = io.StringIO()
    bar = tqdm(total=10, file=terminal, bar_format="BAR {n}/{total}", mininterval=0)
    bar.update(3)
    stream = BarSafeStream(terminal)
    stream.write("2026-12-02 10:00:00 [x] INFO: half")
    assert "half" not in terminal.getvalue()  # not before the line is whole
    stream.write(" a line\n")
    bar.close()
    out = terminal.getvalue()
    line = out.index("INFO: half a line\n")
    assert out.rindex("BAR 3/10") > line  # the bar, drawn again below the line


def _run_on_a_terminal(command: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run ``command`` with stdin, stdout and stderr on a pseudo-terminal of 120 x 30; its exit and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
    process = subprocess.Popen(command, cwd=REPO, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the other end closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        return process.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")
    finally:
        process.kill()
        process.wait()
        os.close(master)


def test_a_crawl_on_a_terminal_draws_a_live_bar_with_the_log_above_it(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", "seeds=data/seeds", "-a", "pages=2",
               "-s", f"DATASET_DIR={tmp_path / 'datasets'}", "-s", "IMAGESEARCH_QUOTA=4/2",
               "-s", "IMAGESEARCH_QUOTA_MARGIN=0.2", "-s", "REPORT_ENABLED=False", "-L", "INFO"]
    code, out = _run_on_a_terminal(command)
    assert code == 0, out[-3000:]
    frames = [frame for frame in out.replace("\n", "\r").split("\r") if " calls" in frame and "|" in frame]
    assert any(frame.startswith("seeds ") and "/16 calls" in frame and "ETA " in frame for frame in frames), frames
    assert frames[-1].startswith("seeds 8/8 |") and "16/16 calls" in frames[-1] and "ended after" in frames[-1]
    # Log lines are not cut by the bar: each starts on a line of its own.
    log_lines = [line for line in out.splitlines() if "[spiders.imagesearch] INFO" in line]
    assert log_lines and all(line.lstrip("\r").startswith("20") for line in log_lines), log_lines
    # On a terminal the bar replaces the plain lines; the last one is still logged, at the end.
    plain = [line for line in out.splitlines() if "[pipeline.monitor.progress] INFO: Progress after" in line]
    assert len(plain) == 1 and "the crawl ended (finished)" in plain[0], plain


def test_with_no_call_left_to_book_the_projection_is_the_last_slot_booked() -> None:
    quota = Quota(2, 10.0)
    store, slots = InMemoryQuotaStore(), [("k", quota)]
    for _ in range(3):
        store.reserve(slots, 0.0, 0.0)
    # The third call waits for its slot at 10 s: the crawl cannot end before it, with nothing more to book.
    assert store.projected(slots, 0.0, 0.0, 0) == 10.0
    assert project_slots([0.0, 0.0, 10.0], quota, 0.0, 0.0, 0) == 10.0
