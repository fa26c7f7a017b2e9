"""The partition directory naming (workers.hotlog.layout): one owner, pure."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from workers.hotlog import layout


@given(st.text(min_size=1, max_size=30).filter(lambda t: "/" not in t), st.integers(0, 10**6))
def test_names_round_trip(topic: str, partition: int) -> None:
    assert layout.parse_dir_name(layout.dir_name(topic, partition)) == (topic, partition)


def test_partition_dirs_lists_partitions_in_numeric_order(tmp_path: Path) -> None:
    for name in ("kaizen.events-10", "kaizen.events-2", "other-topic-1", "notes", "x-y"):
        (tmp_path / name).mkdir()
    (tmp_path / "kaizen.events-3").write_text("a file, not a partition")
    got = [(d.topic, d.partition) for d in layout.partition_dirs(tmp_path)]
    assert got == [("kaizen.events", 2), ("kaizen.events", 10), ("other-topic", 1)]
    assert [d.path.name for d in layout.partition_dirs(tmp_path, "kaizen.events")] == [
        "kaizen.events-2",
        "kaizen.events-10",
    ]
    assert layout.partition_dir(tmp_path, "t", 4) == tmp_path / "t-4"
    assert layout.partition_dirs(tmp_path / "missing") == []
