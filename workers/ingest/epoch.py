"""The offset base of a broker incarnation, kept in ``<partition dir>/ingest-epoch``, and
the rule that tells a new incarnation from what the broker reports.

A partition's offsets go back to 0 (or below what the worker has ingested) when the
broker restarts empty (the embedded broker keeps topics in memory; an Apache Kafka
node may lose its disk), when the topic is deleted and made again, or when an unclean
leader election truncates the log. The hot log already holds frames up to, say, 5000 and
refuses smaller offsets, so the log and the index use *log offsets*: ``base +
kafka_offset``, with ``base`` fixed per incarnation. When `went_back` names a reason, the
worker starts a new epoch whose base is one past everything the log and index have seen
(``PartitionState.new_epoch``), so no new record is ever at or below the watermark, and
redelivered events are caught by the (session_id, producer, seq) dedupe alone.

What identifies the incarnation is recorded beside the base: the cluster id and the
topic id the broker reported when the epoch's numbering was last confirmed. The rule,
from what the broker reports and never from timing:

* another cluster id (a broker formatted anew) or another topic id (the topic deleted
  and made again) than the one recorded: a new incarnation;
* the partition's end offset (exact: Apache Kafka's high watermark) below the next
  offset the worker's watermark says it has ingested: the offsets went back (a truncated
  log, or a broker that gives no topic ids restarted empty);
* nothing recorded (an epoch file from before the ids were kept) and the group has no
  committed offset while the log has data: the rule of old, a new incarnation;
* the group's committed offset missing alone (expired, or the group deleted) is *not* a
  new incarnation: the worker reads on from its watermark, so nothing is ingested or
  dead-lettered twice.

Invariants: the file is replaced atomically (write, fsync, rename, fsync dir) before the
first append of the new epoch; bases only grow; a missing file means base 0 and nothing
recorded (the first incarnation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from workers.broker.cluster import Incarnation
from workers.durable import atomic_write

FILE_NAME = "ingest-epoch"


@dataclass(frozen=True, slots=True)
class Epoch:
    base: int = 0
    #: what the broker reported for the incarnation this base numbers (None: not known)
    cluster_id: str | None = None
    topic_id: str | None = None

    def confirmed(self, now: Incarnation) -> Epoch:
        """This epoch with what the broker reports now recorded (what it does not report
        is kept)."""
        return replace(
            self,
            cluster_id=now.cluster_id or self.cluster_id,
            topic_id=now.topic_id or self.topic_id,
        )


def went_back(
    epoch: Epoch, now: Incarnation, *, end: int | None, next_offset: int, group_forgot: bool
) -> str | None:
    """Why the broker's offsets are a new incarnation for a partition with local data, or
    None when they number the same log.

    `end` is the partition's exact end offset (None where the broker reports no exact one:
    the embedded broker), `next_offset` the first Kafka offset past the watermark, and
    `group_forgot` whether the group has no committed offset for the partition.
    """
    if epoch.cluster_id and now.cluster_id and epoch.cluster_id != now.cluster_id:
        return f"the cluster id changed ({epoch.cluster_id} -> {now.cluster_id})"
    if epoch.topic_id and now.topic_id and epoch.topic_id != now.topic_id:
        return f"the topic id changed ({epoch.topic_id} -> {now.topic_id})"
    if end is not None and end < next_offset:
        return f"the log ends at offset {end}, below the {next_offset} ingested: offsets went back"
    if epoch.topic_id is None and group_forgot:
        return "no topic id recorded and the group has no committed offset but the log has data"
    return None


def load(directory: Path) -> Epoch:
    try:
        raw = json.loads((directory / FILE_NAME).read_text())
    except FileNotFoundError:
        return Epoch()
    # older files also hold "probe_offset"/"probe_crc": no longer read
    return Epoch(int(raw["base"]), raw.get("cluster_id"), raw.get("topic_id"))


def store(directory: Path, epoch: Epoch) -> None:
    data = json.dumps(
        {"base": epoch.base, "cluster_id": epoch.cluster_id, "topic_id": epoch.topic_id}
    ).encode()
    atomic_write(directory / FILE_NAME, data)
