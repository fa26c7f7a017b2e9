"""The C speed-up of the frame format (``workers/hotlog/_cframe.c``) against the Python reference.

Each C function must give exactly what its Python counterpart in ``frame.py`` gives, and raise
the same exception types on bad input.  The module is imported directly, so these comparisons
run whether ``frame`` binds the C or the Python versions (``KAIZEN_PURE_PYTHON``); they are
skipped only when the extension is not built, which ``tests/test_speedups.py`` reports as a
failure on its own.
"""

from __future__ import annotations

import gc
import os
from typing import Any

import crc32c as crc32c_pkg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers import speedups
from workers.hotlog import Location, frame
from workers.hotlog.frame import MAX_PAYLOAD, OVERHEAD

_cframe: Any = pytest.importorskip(
    "workers.hotlog._cframe", reason="C speed-up not built (run `make dev`)"
)

u64 = st.integers(0, 2**64 - 1)
bytes_like = st.one_of(
    st.binary(max_size=600),
    st.binary(max_size=600).map(bytearray),
    st.binary(max_size=600).map(memoryview),
)


@pytest.fixture(params=["hardware", "package"], autouse=True)
def crc_code(request: pytest.FixtureRequest) -> Any:
    """Every test runs with the frame CRCs from the SSE4.2 loop (when the CPU has it) and
    from the crc32c package."""
    previous = _cframe.set_hardware(request.param == "hardware")
    if request.param == "hardware" and not _cframe.hardware:
        _cframe.set_hardware(previous)
        pytest.skip("no SSE4.2 here: frame CRCs always come from the package")
    yield request.param
    _cframe.set_hardware(previous)


def test_frame_binds_the_c_versions_unless_disabled() -> None:
    if speedups.disabled("cframe"):
        assert frame.encode_batch is frame._py_encode_batch
        assert frame.IMPLEMENTATION == "pure Python"
    else:
        assert frame.encode_batch is _cframe.encode_batch
        assert frame.IMPLEMENTATION.startswith("C")
    assert frame.crc32c is crc32c_pkg.crc32c  # one CRC engine: the package


# ------------------------------------------------------------------ encode_batch


@given(st.lists(bytes_like, max_size=40), u64)
def test_encode_batch_equals_python(payloads: list[bytes], offset: int) -> None:
    want = frame._py_encode_batch(payloads, offset)
    assert _cframe.encode_batch(payloads, offset) == want
    assert _cframe.encode_batch(tuple(payloads), offset) == want


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=20), u64)
def test_encode_batch_frames_decode(payloads: list[bytes], offset: int) -> None:
    data, lens = _cframe.encode_batch(payloads, offset)
    assert lens == [len(p) for p in payloads]
    assert data == b"".join(frame.encode(p, offset) for p in payloads)
    assert len(data) == sum(lens) + OVERHEAD * len(lens)


def test_encode_batch_of_nothing() -> None:
    assert _cframe.encode_batch([], 5) == frame._py_encode_batch([], 5) == (b"", [])
    assert _cframe.encode_batch([b""], 0) == frame._py_encode_batch([b""], 0)


def test_encode_batch_of_a_long_batch() -> None:
    """More payloads than the C code's stack buffer of lengths holds."""
    payloads = [os.urandom(i % 50) for i in range(1000)]
    assert _cframe.encode_batch(payloads, 3) == frame._py_encode_batch(payloads, 3)


def test_encode_batch_lengths_around_the_cached_ints() -> None:
    """Lengths below 4096 come from a cache of int objects, longer ones are made per call."""
    payloads = [os.urandom(n) for n in (4094, 4095, 4096, 4097, 0, 4095)]
    data, lens = _cframe.encode_batch(payloads, 1)
    assert (data, lens) == frame._py_encode_batch(payloads, 1)
    assert lens == [4094, 4095, 4096, 4097, 0, 4095]


@pytest.mark.parametrize("item", ["text", 5, None, 1.5])
def test_encode_batch_rejects_a_non_bytes_payload(item: object) -> None:
    for impl in (_cframe.encode_batch, frame._py_encode_batch):
        with pytest.raises(TypeError):
            impl([b"ok", item], 1)


def test_encode_batch_rejects_a_non_contiguous_payload() -> None:
    strided = memoryview(b"abcdef")[::2]
    for impl in (_cframe.encode_batch, frame._py_encode_batch):
        with pytest.raises(TypeError):  # as bytes.join reports it
            impl([strided], 1)


@pytest.mark.parametrize(("offset", "error"), [(-1, OverflowError), (2**64, OverflowError)])
def test_encode_batch_rejects_an_offset_outside_u64(offset: int, error: type[Exception]) -> None:
    for impl in (_cframe.encode_batch, frame._py_encode_batch):
        with pytest.raises(error):
            impl([b"x"], offset)
        with pytest.raises(error):
            impl([], offset)  # checked even when there is nothing to frame


def test_encode_batch_rejects_a_non_int_offset() -> None:
    for impl in (_cframe.encode_batch, frame._py_encode_batch):
        with pytest.raises(TypeError):
            impl([b"x"], 1.0)


def test_encode_batch_rejects_a_payload_over_the_limit() -> None:
    """A longer frame would be written, then read back as bad (and cut off by recovery)."""
    big = bytes(MAX_PAYLOAD + 1)
    for impl in (_cframe.encode_batch, frame._py_encode_batch):
        with pytest.raises(ValueError, match="limit"):
            impl([b"x", big], 1)
    data, lens = _cframe.encode_batch([big[:MAX_PAYLOAD]], 1)
    assert lens == [MAX_PAYLOAD]
    assert frame.check(data, 0, len(data), 0) == (MAX_PAYLOAD, 1)


def test_encode_batch_rejects_bad_calls() -> None:
    with pytest.raises(TypeError):
        _cframe.encode_batch([b"x"])
    with pytest.raises(TypeError):
        _cframe.encode_batch(5, 1)


# ------------------------------------------------------------------ locations


@given(st.lists(st.integers(0, MAX_PAYLOAD), max_size=300), st.integers(0, 2**32 - 1), u64)
def test_locations_equal_python(lens: list[int], start: int, segment: int) -> None:
    got = _cframe.locations(Location, segment, start, lens)
    assert got == frame._py_locations(segment, start, lens)
    assert all(type(loc) is Location for loc in got)
    assert frame.locations(segment, start, lens) == got


def test_locations_are_whole_location_values() -> None:
    (a, b) = _cframe.locations(Location, 7, 512, [10, 0])
    assert (a, b) == (Location(7, 512, 10), Location(7, 538, 0))
    assert repr(a) == "Location(segment=7, position=512, length=10)"
    assert a.position == 512 and hash(a) == hash(Location(7, 512, 10))
    assert Location.unpack(a.pack()) == a
    assert _cframe.locations(Location, 7, 512, []) == []


def test_locations_of_an_encoded_batch_find_its_frames() -> None:
    payloads = [os.urandom(n) for n in (0, 1, 300, 17)]
    data, lens = _cframe.encode_batch(payloads, 9)
    for loc, payload in zip(_cframe.locations(Location, 9, 0, lens), payloads, strict=True):
        assert frame.check(data, loc.position, len(data), 9) == (len(payload), 9)


@pytest.mark.parametrize("cls", [list, dict, "Location", None])
def test_locations_wants_a_tuple_subclass(cls: object) -> None:
    with pytest.raises(TypeError):
        _cframe.locations(cls, 1, 0, [1])


def test_locations_rejects_non_int_lengths_and_overflow() -> None:
    with pytest.raises(TypeError):
        _cframe.locations(Location, 1, 0, [1, "2"])
    with pytest.raises(OverflowError):
        _cframe.locations(Location, 1, 2**63 - 20, [8, 8])
    with pytest.raises(TypeError):
        _cframe.locations(Location, 1, 0)


def test_locations_keep_no_stray_references() -> None:
    segment, lens = 10**30 + 1, [10**9 + 7, 5]  # objects no cache shares
    before = [len(gc.get_referrers(segment)), len(gc.get_referrers(lens[0]))]
    locs = _cframe.locations(Location, segment, 0, lens)
    del locs
    assert [len(gc.get_referrers(segment)), len(gc.get_referrers(lens[0]))] == before


# ------------------------------------------------------------------ frame CRCs


def test_frame_crcs_are_crc32c() -> None:
    assert crc32c_pkg.crc32c(b"123456789") == 0xE3069283  # RFC 3720 B.4: the reference
    for payload in (b"", b"123456789", bytes(32), b"\xff" * 301):
        data, _ = _cframe.encode_batch([payload], 7)
        assert data[-4:] == crc32c_pkg.crc32c(data[:-4]).to_bytes(4, "big")


@given(st.lists(st.binary(min_size=700, max_size=3000), min_size=1, max_size=3))
def test_longer_frames_equal_python(payloads: list[bytes]) -> None:
    assert _cframe.encode_batch(payloads, 1) == frame._py_encode_batch(payloads, 1)


def test_set_hardware_reports_the_choice() -> None:
    assert _cframe.set_hardware(False) in (True, False)
    assert _cframe.hardware == 0
