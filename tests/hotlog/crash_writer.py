"""A writer for the crash test: appends, flushes from a thread, prints what is durable.

Usage: crash_writer.py DIR ROUND.  Prints ``START <offset>`` after opening, then
``DURABLE id,id,...`` lines, each printed only after flush() returned for those ids.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from pathlib import Path

from workers.hotlog import CommitPolicy, PartitionLog


def main() -> None:
    directory, rnd = Path(sys.argv[1]), sys.argv[2]
    log = PartitionLog.open(
        directory,
        topic="kaizen.events",
        partition=0,
        segment_bytes=48 << 10,
        checkpoint_bytes=8 << 10,
        commit=CommitPolicy(max_bytes=8 << 10, max_records=64, max_ms=2.0),
    )
    offset = (log.last_offset if log.last_offset is not None else -1) + 1
    out = sys.stdout
    out.write(f"START {offset}\n")
    out.flush()
    appended: list[str] = []

    def flusher() -> None:
        printed = 0
        while True:
            n = len(appended)
            log.flush()
            if n > printed:
                out.write("DURABLE " + ",".join(appended[printed:n]) + "\n")
                out.flush()
                printed = n
            time.sleep(0.001)

    threading.Thread(target=flusher, daemon=True).start()
    k = 0
    rng = random.Random()
    while True:
        ids = [f"{rnd}.{k + i}" for i in range(rng.randint(1, 8))]
        k += len(ids)
        payloads = [i.encode() + b"|" + os.urandom(rng.randint(0, 300)) for i in ids]
        log.append_batch(payloads, offset)
        appended.extend(ids)
        offset += rng.randint(1, 2)
        if rng.random() < 0.3:
            time.sleep(0.0005)


if __name__ == "__main__":
    main()
