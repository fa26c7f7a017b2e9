"""Joining a replay and the live stream of one session: no gap, no duplicate. Pure.

The tail client starts following kaizen.events BEFORE it asks for the replay,
so every event is seen by the replay, the live stream, or both. `Seam` gets
both streams and emits each seq once, in order:

* while the replay runs, live events are buffered (by seq; a redelivered seq
  keeps its first copy);
* `replay_done(last_seq)` releases the buffered events with seq > last_seq,
  in seq order; everything at or below it came from the replay;
* after that, a live event is emitted when its seq is above the last emitted
  one and dropped otherwise (a duplicate or redelivery);
* `gap()` says which seqs lie between the replay's end and the first buffered
  live event: they were produced before the follower started but not yet in
  the hot log when the replay read it; the client asks for that range again
  (`fill`) before releasing the buffer.

Each producer (a spool; "" for events keyed by their content) numbers a session's
seqs on its own, so a session fed by several producers is joined by `Seams`: one
`Seam` per producer, and what is released merged in the replay's order (seq, then
producer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Seam(Generic[T]):
    last_emitted: int = -1
    replaying: bool = True
    _buffer: dict[int, T] = field(default_factory=dict)

    def replayed(self, seq: int) -> bool:
        """Record a replayed seq; True when it should be emitted (in order, not seen before)."""
        if seq <= self.last_emitted:
            return False
        self.last_emitted = seq
        return True

    def live(self, seq: int, item: T) -> list[tuple[int, T]]:
        """A live event: what to emit now (nothing while the replay runs)."""
        if self.replaying:
            if seq > self.last_emitted:
                self._buffer.setdefault(seq, item)
            return []
        if seq <= self.last_emitted:
            return []
        self.last_emitted = seq
        return [(seq, item)]

    def gap(self) -> tuple[int, int] | None:
        """(first, last) seqs missing between what was emitted and the first buffered one."""
        pending = [s for s in self._buffer if s > self.last_emitted]
        if not pending:
            return None
        first = min(pending)
        if first > self.last_emitted + 1:
            return self.last_emitted + 1, first - 1
        return None

    def replay_done(self) -> list[tuple[int, T]]:
        """End of the replay (and of any gap fill): release the buffer in seq order."""
        self.replaying = False
        out = []
        for seq in sorted(self._buffer):
            if seq > self.last_emitted:
                self.last_emitted = seq
                out.append((seq, self._buffer[seq]))
        self._buffer.clear()
        return out

    @property
    def buffered(self) -> int:
        return len(self._buffer)


@dataclass
class Seams(Generic[T]):
    """One `Seam` per producer of the session; the same operations, keyed by producer."""

    replaying: bool = True
    _by: dict[str, Seam[T]] = field(default_factory=dict)

    def _of(self, producer: str) -> Seam[T]:
        seam = self._by.get(producer)
        if seam is None:
            seam = self._by[producer] = Seam(replaying=self.replaying)
        return seam

    def replayed(self, producer: str, seq: int) -> bool:
        return self._of(producer).replayed(seq)

    def live(self, producer: str, seq: int, item: T) -> list[tuple[int, T]]:
        return self._of(producer).live(seq, item)

    def gap(self) -> tuple[int, int] | None:
        """One seq range covering every producer's gap (a replay of it sends each producer's
        seqs in the range; what a seam already emitted it drops)."""
        gaps = [g for g in (seam.gap() for seam in self._by.values()) if g is not None]
        if not gaps:
            return None
        return min(g[0] for g in gaps), max(g[1] for g in gaps)

    def replay_done(self) -> list[tuple[int, T]]:
        """Every producer's buffer released, merged by seq, then producer."""
        self.replaying = False
        out = [
            (seq, producer, item)
            for producer, seam in self._by.items()
            for seq, item in seam.replay_done()
        ]
        out.sort(key=lambda t: (t[0], t[1]))
        return [(seq, item) for seq, _, item in out]

    @property
    def buffered(self) -> int:
        return sum(seam.buffered for seam in self._by.values())
