"""The ingest side of the worker: decode, validate, dedupe, append, index, dead-letter.

Modules: ``decode`` (the lean, fully validating decoder of event messages),
``dlq`` (dead-letter records and their headers), ``epoch`` (the offset base of
a broker incarnation, kept beside each partition's log), ``metrics``
(per-partition counters, Prometheus text), ``config`` (IngestConfig),
``partition`` (PartitionState: one owned partition, its group commit),
``assignment`` (PartitionManager: which partitions this worker owns),
``catchup`` (bringing a newly assigned partition up to date), ``flusher`` (timed
group commits, stats, retention), ``folding`` (when session summaries are
folded from the log), ``feed`` (the live feed: reads the ready partitions and
commits their offsets to the group), ``agent`` (the Faust side: the group's member
for ``kaizen.events``, dead letters).

The order that makes ingest exactly-once (invariants 1, 2, 4): decode → dedupe
on (session_id, producer, seq) → append → fsync → commit the index batch with the
watermark → only then commit the offset past it to the group (the live feed).
"""
