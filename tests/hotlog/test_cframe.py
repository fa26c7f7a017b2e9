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
import random
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
CRCS = [_cframe.crc32c, _cframe.crc32c_portable]


def test_frame_binds_the_c_versions_unless_disabled() -> None:
    if speedups.disabled():
        assert frame.encode_batch is frame._py_encode_batch
        assert frame.IMPLEMENTATION == "pure Python"
    else:
        assert frame.encode_batch is _cframe.encode_batch
        assert frame.crc32c is _cframe.crc32c
        assert frame.IMPLEMENTATION.startswith("C")


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


# ------------------------------------------------------------------ crc32c


def _unaligned(data: bytes, shift: int) -> memoryview:
    return memoryview(bytes(shift) + data)[shift:]


@pytest.mark.parametrize("impl", CRCS, ids=["crc32c", "crc32c_portable"])
@given(data=st.binary(max_size=100), shift=st.integers(0, 7), crc=st.integers(0, 2**32 - 1))
def test_crc32c_equals_the_package(impl: Any, data: bytes, shift: int, crc: int) -> None:
    view = _unaligned(data, shift)
    assert impl(view) == crc32c_pkg.crc32c(data)
    assert impl(view, crc) == crc32c_pkg.crc32c(data, crc)


@pytest.mark.parametrize("impl", CRCS, ids=["crc32c", "crc32c_portable"])
@given(data=st.binary(min_size=700, max_size=6000), shift=st.integers(0, 7))
def test_crc32c_equals_the_package_past_the_three_stream_threshold(
    impl: Any, data: bytes, shift: int
) -> None:
    assert impl(_unaligned(data, shift)) == crc32c_pkg.crc32c(data)


@pytest.mark.parametrize("impl", CRCS, ids=["crc32c", "crc32c_portable"])
@given(a=st.binary(max_size=200), b=st.binary(max_size=200))
def test_crc32c_chains(impl: Any, a: bytes, b: bytes) -> None:
    assert impl(b, impl(a)) == impl(a + b) == crc32c_pkg.crc32c(a + b)


@pytest.mark.parametrize("impl", CRCS, ids=["crc32c", "crc32c_portable"])
def test_crc32c_of_large_buffers(impl: Any) -> None:
    """Every block size of the three-stream path, and the GIL-releasing size (> 64 KiB)."""
    rnd = random.Random(7)
    for size in (3 * 256 - 1, 3 * 256, 3 * 8192, 3 * 8192 + 3 * 256 + 7, 200_000, 1 << 20):
        data = rnd.randbytes(size + 5)
        view = memoryview(data)[3 : 3 + size]
        seed = rnd.getrandbits(32)
        assert impl(view, seed) == crc32c_pkg.crc32c(view, seed), size


@given(st.binary(max_size=50), st.integers(-(2**70), 2**70))
def test_crc32c_takes_any_int_modulo_2_32_like_the_package(data: bytes, crc: int) -> None:
    assert _cframe.crc32c(data, crc) == crc32c_pkg.crc32c(data, crc)


def test_known_crc32c_values() -> None:
    # RFC 3720 (iSCSI) B.4 check values
    assert _cframe.crc32c(bytes(32)) == 0x8A9136AA
    assert _cframe.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert _cframe.crc32c(b"123456789") == 0xE3069283
    assert _cframe.crc32c_portable(b"123456789") == 0xE3069283


@pytest.mark.parametrize("impl", [_cframe.crc32c, crc32c_pkg.crc32c])
def test_crc32c_rejects_what_the_package_rejects(impl: Any) -> None:
    with pytest.raises(TypeError):
        impl("text")
    with pytest.raises(TypeError):
        impl(b"x", 1.5)
    with pytest.raises(BufferError):
        impl(memoryview(b"abcdef")[::2])


def test_crc32c_rejects_bad_calls() -> None:
    with pytest.raises(TypeError):
        _cframe.crc32c()
    with pytest.raises(TypeError):
        _cframe.crc32c(b"x", 0, 0)
