"""The lean decoder against the full codec: same keys for good events, a reason for bad ones."""

from __future__ import annotations

import json
import struct
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.codec import batch
from workers.codec import schema as schemas
from workers.codec.errors import DecodeError
from workers.codec.event import KINDS, complete_event, encode_event
from workers.codec.single_object import SingleObjectCodec
from workers.ingest.decode import LeanDecoder

PURE = LeanDecoder(max_event_bytes=1 << 16, native=False)
NATIVE = LeanDecoder(max_event_bytes=1 << 16)
FULL = SingleObjectCodec("event")
#: every test runs with the generated Python readers and with the C reader (when built)
DECODERS = pytest.mark.parametrize(
    "decoder",
    [
        pytest.param(PURE, id="python"),
        pytest.param(
            NATIVE,
            id="c",
            marks=pytest.mark.skipif(not NATIVE.native, reason="C reader not built"),
        ),
    ],
)

optional_text = st.none() | st.text(max_size=30)
optional_long = st.none() | st.integers(-(1 << 63), (1 << 63) - 1)

events = st.fixed_dictionaries(
    {
        "session_id": st.text(min_size=1, max_size=40),
        "seq": st.integers(0, (1 << 63) - 1),
        "ts_ms": st.integers(-(1 << 63), (1 << 63) - 1),
        "ts_exact": st.booleans(),
        "kind": st.sampled_from(KINDS),
        "agent": st.sampled_from(["claude", "cursor", "codex", "other"]),
        "model": optional_text,
        "tool": optional_text,
        "tokens_in": optional_long,
        "retry_count": st.none() | st.integers(-(1 << 31), (1 << 31) - 1),
        "payload": st.text(max_size=200),
    }
)


def keys_of(record: dict[str, object]) -> tuple[object, ...]:
    return (record["session_id"], record["seq"], record["ts_ms"], record["agent"], record["model"])


@given(events)
@DECODERS
def test_good_events_decode_like_the_full_codec(
    decoder: LeanDecoder, fields: dict[str, object]
) -> None:
    data = encode_event(complete_event(fields))
    got = decoder.event(data)
    assert (got.session_id, got.seq, got.ts_ms, got.agent, got.model) == keys_of(FULL.decode(data))
    assert got.data == data


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.data())
@DECODERS
def test_never_laxer_than_the_full_codec(
    decoder: LeanDecoder, fields: dict[str, object], data: st.DataObject
) -> None:
    """Whatever mutation the lean decoder accepts, the full codec decodes to the same keys."""
    raw = bytearray(encode_event(complete_event(fields)))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(10, max(10, len(raw) - 1)))
        if op == "flip" and pos < len(raw):
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
    mutated = bytes(raw)
    try:
        lean = decoder.event(mutated)
    except DecodeError:
        return
    full = FULL.decode(mutated)  # must not raise
    assert (lean.session_id, lean.seq, lean.ts_ms, lean.agent, lean.model) == keys_of(full)


@DECODERS
def test_older_schema_versions_decode(decoder: LeanDecoder) -> None:
    old = schemas.history("event")[-1]
    assert old.fingerprint != schemas.current("event").fingerprint
    import io

    from fastavro import schemaless_writer

    out = io.BytesIO()
    out.write(b"\xc3\x01" + old.fingerprint)
    record = {f["name"]: f.get("default") for f in old.raw["fields"]}
    record.update(session_id="s-old", seq=3, ts_ms=5, agent="codex", model="m")
    schemaless_writer(out, old.parsed, record)
    got = decoder.event(out.getvalue())
    assert (got.session_id, got.seq, got.agent, got.model) == ("s-old", 3, "codex", "m")


def event(sid: str = "s", seq: int = 0, **more: object) -> bytes:
    return encode_event(complete_event({"session_id": sid, "seq": seq, "ts_ms": 1, **more}))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too_short"),
        (b"\xc3\x01abc", "too_short"),
        (b"garbage bytes here", "bad_marker"),
        (b"\xc3\x01" + b"\xff" * 8 + b"\x02a\x00\x00", "unknown_schema"),
        (event("")[:-3], "truncated"),
        (event(""), "empty_session_id"),
        (event("s", -1), "bad_seq"),
        (event("s") + b"\x00", "trailing_bytes"),
        (event("s", payload="x" * 70_000), "too_large"),
    ],
)
@DECODERS
def test_bad_events_have_a_reason(decoder: LeanDecoder, data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decoder.event(data)
    assert err.value.reason == reason


@DECODERS
def test_invalid_utf8_is_rejected(decoder: LeanDecoder) -> None:
    good = event("s", payload="ok-payload")
    bad = good.replace(b"ok-payload", b"ok-\xff\xfeyload")
    with pytest.raises(DecodeError) as err:
        decoder.event(bad)
    assert err.value.reason == "invalid_utf8"
    bad_tool = event("s", tool="Bashy").replace(b"Bashy", b"Bas\xc3\x28")
    with pytest.raises(DecodeError) as err:
        decoder.event(bad_tool)
    assert err.value.reason == "invalid_utf8"


@DECODERS
def test_batch_keeps_good_events_and_rejects_bad_ones_alone(decoder: LeanDecoder) -> None:
    items = [event("s", 0), b"junk-item-xyz", event("s", 1), event("", 2)]
    result = decoder.message(batch.join(items))
    assert [e.seq for e in result.events] == [0, 1]
    assert [(r.reason, r.data) for r in result.rejected] == [
        ("bad_marker", b"junk-item-xyz"),
        ("empty_session_id", items[3]),
    ]


@DECODERS
def test_plain_single_object_message_beside_batches(decoder: LeanDecoder) -> None:
    result = decoder.message(event("p", 7))
    assert [(e.session_id, e.seq) for e in result.events] == [("p", 7)]
    assert not result.rejected


@DECODERS
def test_bad_batch_framing_rejects_the_whole_message(decoder: LeanDecoder) -> None:
    broken = batch.join([event("s", 0)]) + b"x"
    result = decoder.message(broken)
    assert not result.events
    assert [(r.reason, r.data) for r in result.rejected] == [("bad_batch", broken)]
    cut = b"KZB1" + struct.pack(">I", 3)
    assert decoder.message(cut).rejected[0].reason == "bad_batch"
    assert decoder.message(None).rejected[0].reason == "empty"


@DECODERS
def test_payload_json_survives_unchanged(decoder: LeanDecoder) -> None:
    data = event("s", 1, payload=json.dumps({"a": "é"}))
    assert decoder.message(data).events[0].data == data


# ------------------------------------------------------------- the C reader against Python

needs_c = pytest.mark.skipif(not NATIVE.native, reason="C reader not built")


def outcome(decoder: LeanDecoder, data: bytes) -> tuple[object, ...]:
    try:
        got = decoder.event(data)
    except DecodeError as exc:
        return ("rejected", exc.reason)
    return (got.session_id, got.seq, got.ts_ms, got.agent, got.model, got.data)


def mutate(raw: bytearray, data: st.DataObject) -> bytes:
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "high"]))
        pos = data.draw(st.integers(10, max(10, len(raw) - 1)))
        if op == "flip" and pos < len(raw):
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "high" and pos < len(raw):
            raw[pos] |= 0x80  # lengthens a varint, or breaks UTF-8
        elif op == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
    return bytes(raw)


@needs_c
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.data())
def test_c_reader_agrees_with_python(fields: dict[str, object], data: st.DataObject) -> None:
    """Same acceptance, same keys, same reason, for good and mutated events alike."""
    good = encode_event(complete_event(fields))
    mutated = mutate(bytearray(good), data)
    for raw in (good, mutated):
        assert outcome(NATIVE, raw) == outcome(PURE, raw)
    items = [good, mutated, b"junk", good[:5]]
    c, py = NATIVE.message(batch.join(items)), PURE.message(batch.join(items))
    assert c.events == py.events
    assert [(r.reason, r.data) for r in c.rejected] == [(r.reason, r.data) for r in py.rejected]


def with_raw_string(raw: bytes, field: str) -> tuple[bytes, bytes]:
    """An event whose string `field` holds ``[[`` + `raw` + ``]]`` byte for byte (valid UTF-8
    or not), and those string bytes.  ASCII around `raw` neither mends nor breaks it."""
    text = b"[[" + raw + b"]]"
    placeholder = b"[[" + b"~" * len(raw) + b"]]"  # same length: the length varint holds
    data = event("s", 1, **{field: placeholder.decode()})
    assert data.count(placeholder) == 1
    return data.replace(placeholder, text), text


utf8ish = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(
        st.sampled_from(
            [
                b"a",
                b"\xc2\x80",
                b"\xc1\xbf",
                b"\xe0\x9f\xbf",
                b"\xe0\xa0\x80",
                b"\xed\x9f\xbf",
                b"\xed\xa0\x80",
                b"\xef\xbf\xbf",
                b"\xf0\x8f\xbf\xbf",
                b"\xf0\x90\x80\x80",
                b"\xf4\x8f\xbf\xbf",
                b"\xf4\x90\x80\x80",
                b"\xf5\x80\x80\x80",
                b"\x80",
                b"\xc3",
                b"\xe2\x82",
                b"12345678",
            ]
        ),
        max_size=12,
    ).map(b"".join),
)


@needs_c
@settings(max_examples=500)
@given(utf8ish, st.sampled_from(["payload", "session_id", "tool"]))
def test_c_utf8_check_is_python_s(raw: bytes, field: str) -> None:
    """Kept and skipped strings: valid exactly when Python's strict UTF-8 decoder says so."""
    data, text = with_raw_string(raw, field)
    try:
        text.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    got = outcome(NATIVE, data)
    assert got == outcome(PURE, data)
    assert got[0] != "rejected" if valid else got == ("rejected", "invalid_utf8")


@DECODERS
@pytest.mark.parametrize(
    ("varint", "accepted"),
    [
        (b"\xff" * 9 + b"\x01", True),  # 2**64 - 1 zigzag: the last long there is
        (b"\xff" * 9 + b"\x02", False),  # past 64 bits: fastavro would wrap it silently
        (b"\xff" * 10 + b"\x00", False),  # 11 bytes
        (b"\x80" * 9 + b"\x00", True),  # overlong zero: allowed, as Avro readers do
    ],
)
def test_long_varint_range(decoder: LeanDecoder, varint: bytes, accepted: bool) -> None:
    data = event("s", 0, tokens_in=123456)
    template = event("s", 0, tokens_in=None)
    # tokens_in: union index 2 (long) + varint of 123456 where the null one has index 0
    diff = next(i for i, (a, b) in enumerate(zip(data, template, strict=False)) if a != b)
    tail = data[diff + 1 :]
    value = tail[: next(i for i, c in enumerate(tail) if not c & 0x80) + 1]
    raw = data[: diff + 1] + varint + tail[len(value) :]
    got = outcome(decoder, raw)
    assert (got[0] != "rejected") == accepted, got
    if not accepted:
        assert got == ("rejected", "malformed")


@needs_c
def test_c_reader_rejects_a_corrupt_program() -> None:
    from workers.ingest.decode import DEFAULTS, _c

    assert _c is not None
    for ops in ([10, 2, 1, 3], [11, 9, 7], [9, 3, 0], [6], [42]):
        with pytest.raises(ValueError):
            _c.Reader(array("i", ops).tobytes(), (), DEFAULTS, DecodeError)
    with pytest.raises(ValueError):
        _c.Reader(b"\x00\x00\x00", (), DEFAULTS, DecodeError)
