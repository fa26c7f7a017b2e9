from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.hotlog import CorruptFrame, Location, frame
from workers.hotlog.frame import Bad, Good

u32 = st.integers(0, 2**32 - 1)


@given(
    st.tuples(st.integers(0, 2**64 - 1), u32, u32), st.tuples(st.integers(0, 2**64 - 1), u32, u32)
)
def test_location_pack_roundtrips_and_sorts_like_tuples(
    a: tuple[int, int, int], b: tuple[int, int, int]
) -> None:
    la, lb = Location(*a), Location(*b)
    assert len(la.pack()) == 16
    assert Location.unpack(la.pack()) == la
    if a[:2] != b[:2]:
        assert (la.pack() < lb.pack()) == (a[:2] < b[:2])


@given(st.binary(max_size=2000), st.integers(0, 2**63))
def test_encode_decode(payload: bytes, offset: int) -> None:
    data = frame.encode(payload, offset)
    assert len(data) == len(payload) + frame.OVERHEAD
    assert frame.decode(data) == (offset, payload)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=20), st.integers(0, 2**40))
def test_batch_is_the_concatenation_of_frames(payloads: list[bytes], offset: int) -> None:
    data, lens = frame.encode_batch(payloads, offset)
    assert lens == [len(p) for p in payloads]
    positions = frame.positions(lens, 7)
    assert data == b"".join(frame.encode(p, offset) for p in payloads)
    goods = list(frame.iter_frames(data, 0, len(data), offset))
    assert [g.position + 7 for g in goods if isinstance(g, Good)] == positions


def test_decode_rejects_damage() -> None:
    data = bytearray(frame.encode(b"hello", 3))
    data[13] ^= 1
    with pytest.raises(CorruptFrame):
        frame.decode(bytes(data))


def test_resync_skips_a_bad_frame_and_flags_the_tail() -> None:
    frames = [frame.encode(bytes([i]) * 40, 5) for i in range(4)]
    buf = bytearray(b"".join(frames))
    buf[56 + 20] ^= 0x80  # second frame's payload
    buf[-3] ^= 1  # last frame's CRC
    items = list(frame.iter_frames(buf, 0, len(buf), 5))
    assert items == [
        Good(0, 40, 5),
        Bad(56, 112, False),
        Good(112, 40, 5),
        Bad(168, 224, True),
    ]


def test_zero_filled_space_is_skipped_quickly() -> None:
    buf = frame.encode(b"a", 0) + bytes(1 << 20) + frame.encode(b"b", 0)
    items = list(frame.iter_frames(buf, 0, len(buf), 0))
    assert items == [Good(0, 1, 0), Bad(17, 17 + (1 << 20), False), Good(17 + (1 << 20), 1, 0)]


def test_location_is_an_immutable_value() -> None:
    loc = Location(3, 512, 10)
    assert (loc.segment, loc.position, loc.length) == (3, 512, 10)
    assert loc == Location(segment=3, position=512, length=10)
    assert hash(loc) == hash(Location(3, 512, 10))
    assert loc != Location(3, 512, 11)
    assert type(Location.unpack(loc.pack())) is Location
    assert repr(loc) == "Location(segment=3, position=512, length=10)"
    with pytest.raises(AttributeError):
        loc.position = 1  # type: ignore[misc]


@given(st.lists(st.integers(0, 5000), max_size=300), st.integers(0, 2**32 - 1))
def test_batch_locations_match_the_constructor(lens: list[int], start: int) -> None:
    got = frame.locations(9, start, lens)
    want = [Location(9, p, n) for p, n in zip(frame.positions(lens, start), lens, strict=True)]
    assert got == want
    assert all(type(loc) is Location for loc in got)


def test_encode_batch_survives_the_length_cache_filling_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame, "_LENGTH_CACHE_MAX", 4)
    payloads = [bytes([n]) * n for n in range(40)]
    for offset in (0, 5):
        data, lens = frame._py_encode_batch(payloads, offset)  # the cache is the Python path's
        assert lens == list(range(40))
        assert data == b"".join(frame.encode(p, offset) for p in payloads)
