"""The lean decoder against the full codec: same keys for good events, a reason for bad ones."""

from __future__ import annotations

import io
import json
import random
import struct
from array import array
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.codec import batch
from workers.codec import schema as schemas
from workers.codec.errors import DecodeError
from workers.codec.event import KINDS, complete_event, encode_event
from workers.codec.single_object import HEADER_SIZE, SingleObjectCodec
from workers.ingest.decode import MAX_KEY_BYTES, LeanDecoder

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


def field_spans(data: bytes) -> list[tuple[Any, int, int]]:
    """(Avro type, start, end) of every field of an event of the current schema, measured by
    encoding the same record under the schema cut after each field (fastavro, not the code
    under test)."""
    schema = schemas.current("event").raw
    record = FULL.decode(data)
    spans = []
    start = HEADER_SIZE
    for k, f in enumerate(schema["fields"]):
        partial = parse_schema({**schema, "name": f"Cut{k}", "fields": schema["fields"][: k + 1]})
        out = io.BytesIO()
        schemaless_writer(out, partial, record)
        end = HEADER_SIZE + len(out.getvalue())
        spans.append((f["type"], start, end))
        start = end
    assert start == len(data)
    return spans


def zigzag_varint(value: int) -> bytes:
    v = (value << 1) ^ (value >> 63)
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def mutate_field(data: bytes, rnd: random.Random) -> bytes:
    """One mutation aimed at a field, mostly ones that keep the event valid Avro (another
    value, an overlong varint, another string byte), so that most mutated events reach the
    comparison; a few random byte flips, cuts and inserts beside them."""
    # null values have nothing to mutate but their union index
    spans = [s for s in field_spans(data) if s[2] - s[1] > 1 or not isinstance(s[0], list)]
    kind, start, end = rnd.choice(spans)
    raw = bytearray(data)
    value_at = start
    if isinstance(kind, list):  # a union: keep or switch its index byte
        if rnd.random() < 0.2:
            raw[start] = rnd.randrange(0, 2 * len(kind) + 1)
            return bytes(raw)
        kind = kind[raw[start] >> 1]
        value_at = start + 1
    name = kind["type"] if isinstance(kind, dict) else kind
    op = rnd.random()
    if op < 0.1:  # anywhere: the old random mutations
        pos = rnd.randrange(HEADER_SIZE, len(raw))
        choice = rnd.choice(["flip", "cut", "insert"])
        if choice == "flip":
            raw[pos] = rnd.randrange(256)
        elif choice == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = rnd.randbytes(rnd.randint(1, 3))
        return bytes(raw)
    if name in ("int", "long"):
        bits = 31 if name == "int" else 63
        if op < 0.5:
            new = zigzag_varint(rnd.randint(-(1 << bits), (1 << bits) - 1))
        else:  # the same value, overlong (one more continuation byte) or at full width
            old = raw[value_at:end]
            new = bytes(old[:-1]) + bytes([old[-1] | 0x80, 0])
        return bytes(raw[:value_at]) + new + bytes(raw[end:])
    if name == "string" and end - value_at > 1:
        # the content is the tail of the span after its length varint
        length_end = value_at
        while raw[length_end] & 0x80:
            length_end += 1
        length_end += 1
        if length_end < end:
            pos = rnd.randrange(length_end, end)
            high = rnd.random() < 0.2  # mostly ASCII; a high byte may break UTF-8
            raw[pos] = rnd.randrange(0x80, 0x100) if high else rnd.randrange(0x20, 0x7F)
        return bytes(raw)
    if name == "boolean":
        raw[value_at] = rnd.randrange(0, 3)
        return bytes(raw)
    if name == "enum":
        raw[value_at] = 2 * rnd.randrange(len(kind["symbols"]) + 1)  # one out of range
        return bytes(raw)
    pos = rnd.randrange(value_at, max(value_at + 1, end))
    raw[pos:pos] = rnd.randbytes(1)
    return bytes(raw)


def random_event(rnd: random.Random) -> bytes:
    def text(n: int) -> str:
        return "".join(
            rnd.choice("abcdefghijklmnopqrstuvwxyz-_/.é€😀") for _ in range(rnd.randint(0, n))
        )

    def maybe(value: object) -> object:
        return None if rnd.random() < 0.3 else value

    return encode_event(
        complete_event(
            {
                "session_id": text(30) or "s",
                "seq": rnd.randint(0, (1 << 63) - 1),
                "ts_ms": rnd.randint(-(1 << 63), (1 << 63) - 1),
                "ts_exact": rnd.random() < 0.5,
                "kind": rnd.choice(KINDS),
                "agent": rnd.choice(["claude", "cursor", "codex", "other"]),
                "model": maybe(text(20)),
                "tool": maybe(text(10)),
                "tool_call_id": maybe(text(20)),
                "tokens_in": maybe(rnd.randint(-(1 << 63), (1 << 63) - 1)),
                "retry_count": maybe(rnd.randint(-(1 << 31), (1 << 31) - 1)),
                "payload": text(120),
            }
        )
    )


@DECODERS
def test_never_laxer_than_the_full_codec(decoder: LeanDecoder) -> None:
    """Whatever mutation the lean decoder accepts, the full codec decodes to the same keys;
    and most mutations are accepted, so that the comparison really runs."""
    rnd = random.Random(12)
    compared = rejected = 0
    for _ in range(400):
        mutated = mutate_field(random_event(rnd), rnd)
        try:
            lean = decoder.event(mutated)
        except DecodeError:
            rejected += 1
            continue
        full = FULL.decode(mutated)  # must not raise
        assert (lean.session_id, lean.seq, lean.ts_ms, lean.agent, lean.model) == keys_of(full)
        compared += 1
    assert compared >= 180, (compared, rejected)
    assert rejected >= 40, (compared, rejected)


@DECODERS
def test_older_schema_versions_decode(decoder: LeanDecoder) -> None:
    old = schemas.history("event")[-1]
    assert old.fingerprint != schemas.current("event").fingerprint
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
        (event("k" * (MAX_KEY_BYTES + 1)), "key_too_long"),
        (event("é" * (MAX_KEY_BYTES // 2 + 1)), "key_too_long"),  # bytes, not characters
        (event("s", tool_call_id="t" * (MAX_KEY_BYTES + 1)), "key_too_long"),
        (event("k" * 2000)[:100], "truncated"),  # the body ends inside the id: as in C
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
    from workers.codec.lean import _c
    from workers.codec.program import DEFAULTS

    assert _c is not None
    for ops in ([10, 2, 1, 3], [11, 9, 7], [9, 3, 0], [6], [42], [12, 5, 0], [12, -1, 0]):
        with pytest.raises(ValueError):
            _c.Reader(array("i", ops).tobytes(), (), DEFAULTS, DecodeError)
    for tables in ((("a", "b"),), ((1,),)):  # a key's table: its field name alone
        with pytest.raises(ValueError):
            _c.Reader(array("i", [12, 5, 0]).tobytes(), tables, DEFAULTS, DecodeError)
    _c.Reader(array("i", [12, 5, 0]).tobytes(), (("session_id",),), DEFAULTS, DecodeError)
    with pytest.raises(ValueError):
        _c.Reader(b"\x00\x00\x00", (), DEFAULTS, DecodeError)


@DECODERS
def test_key_fields_up_to_the_limit_are_accepted(decoder: LeanDecoder) -> None:
    sid = "é" * (MAX_KEY_BYTES // 2)
    got = decoder.event(event(sid, 3, tool_call_id="t" * MAX_KEY_BYTES))
    assert (got.session_id, got.seq) == (sid, 3)


@DECODERS
def test_a_long_key_is_rejected_alone_in_a_batch(decoder: LeanDecoder) -> None:
    long_id = event("s", 1, tool_call_id="t" * (MAX_KEY_BYTES + 1))
    result = decoder.message(batch.join([event("s", 0), long_id, event("s", 2)]))
    assert [e.seq for e in result.events] == [0, 2]
    [(reason, detail, data)] = result.rejected
    assert (reason, data) == ("key_too_long", long_id)
    want = f"tool_call_id is {MAX_KEY_BYTES + 1} bytes, over the {MAX_KEY_BYTES}-byte limit"
    assert detail == want + " of a key"
