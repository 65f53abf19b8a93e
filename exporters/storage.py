"""Atomic local feed storage: a file appears under its final name only once it is complete."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from scrapy.extensions.feedexport import FileFeedStorage

if TYPE_CHECKING:
    from scrapy import Spider

logger = logging.getLogger(__name__)


def temp_path(path: Path) -> Path:
    """The in-progress name of *path*: ``.<name>.tmp-<pid>`` in the same directory.

    Dot-prefixed so pyarrow.dataset, Spark and Hive skip it, and not ending in the format's
    extension because DuckDB's ``**/*.parquet`` glob does match dotfiles. Same directory, so the
    final rename never crosses a file system.
    """
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_dir(directory: Path) -> None:
    """Make a rename in *directory* durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(file: IO[bytes], tmp: Path, path: Path) -> None:
    """Flush and fsync *file* (written at *tmp*), close it, then rename it to *path* atomically."""
    if not file.closed:
        file.flush()
        os.fsync(file.fileno())
        file.close()
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write *data* to *path* so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with tmp.open("wb") as file:
        file.write(data)
        commit(file, tmp, path)


class AtomicFileFeedStorage(FileFeedStorage):
    """Scrapy's ``file`` storage, but written under a temporary name and renamed when complete.

    Registered in FEED_STORAGES for ``file://`` URIs and plain paths. A crash leaves only a
    ``.<name>.tmp-<pid>`` file that readers' globs skip. Appending to an existing file (``-o``)
    cannot be atomic and is done in place, as Scrapy does.
    """

    def __init__(self, uri: str, *, feed_options: dict[str, Any] | None = None):
        super().__init__(uri, feed_options=feed_options)
        self._tmp: Path | None = None
        #: True once opened to add to a file that was there (``-o`` on an existing file).
        self.appended = False

    def open(self, spider: Spider) -> IO[bytes]:
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.write_mode == "ab" and path.exists():
            self.appended = True
            return path.open("ab")
        self._tmp = temp_path(path)
        return self._tmp.open("wb")

    def store(self, file: IO[bytes]) -> None:
        if self._tmp is None:
            file.close()
            return
        commit(file, self._tmp, Path(self.path))
        self._tmp = None
