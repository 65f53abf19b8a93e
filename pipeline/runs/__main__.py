"""``python -m pipeline.runs DATASET_DIR...``: finish the commits a kill cut short, and say which."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pipeline.runs.commit import finish_interrupted_commits


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.runs DATASET_DIR...``: finish the commits a kill cut short, and say which."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m pipeline.runs DATASET_DIR [DATASET_DIR...]", file=sys.stderr)
        return 2
    logging.basicConfig(level="INFO", format="%(message)s")
    for root in map(Path, args):
        done = finish_interrupted_commits(root)
        print(f"{root}: {len(done)} interrupted commit(s) finished" + (f": {', '.join(done)}" if done else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
