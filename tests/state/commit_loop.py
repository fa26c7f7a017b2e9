"""Commits index batches in a loop until killed (the subprocess of the kill -9 test).

Usage: commit_loop.py DIR.  Batch ``i`` holds N entries for sessions ``s0..s6`` with seqs
``i*N .. i*N+N-1`` pointing at segment ``i``, and is committed with watermark ``i``.  It
resumes after the watermark it finds.  Prints ``READY`` once it has committed a batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from workers.hotlog import Location
from workers.state import PartitionStore

N = 997
SESSIONS = 7


def batch_entries(i: int) -> list[tuple[str, int, Location]]:
    return [(f"s{j % SESSIONS}", i * N + j, Location(i, 64 + j * 20, 12)) for j in range(N)]


def main() -> None:
    store = PartitionStore.open(Path(sys.argv[1]), 0)
    i = store.watermark + 1
    while True:
        b = store.begin()
        for sid, seq, loc in batch_entries(i):
            b.add(sid, seq, loc, seq, "claude", None)
        b.commit(i)
        if i == store.watermark and i % 5 == 0:
            sys.stdout.write("READY\n")
            sys.stdout.flush()
        i += 1


if __name__ == "__main__":
    main()
