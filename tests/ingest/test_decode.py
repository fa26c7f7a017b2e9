"""The lean decoder against the full codec: same keys for good events, a reason for bad ones."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.codec import batch
from workers.codec import schema as schemas
from workers.codec.errors import DecodeError
from workers.codec.event import KINDS, complete_event, encode_event
from workers.codec.single_object import SingleObjectCodec
from workers.ingest.decode import LeanDecoder

DECODER = LeanDecoder(max_event_bytes=1 << 16)
FULL = SingleObjectCodec("event")

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
def test_good_events_decode_like_the_full_codec(fields: dict[str, object]) -> None:
    data = encode_event(complete_event(fields))
    got = DECODER.event(data)
    assert (got.session_id, got.seq, got.ts_ms, got.agent, got.model) == keys_of(FULL.decode(data))
    assert got.data == data


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.data())
def test_never_laxer_than_the_full_codec(fields: dict[str, object], data: st.DataObject) -> None:
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
        lean = DECODER.event(mutated)
    except DecodeError:
        return
    full = FULL.decode(mutated)  # must not raise
    assert (lean.session_id, lean.seq, lean.ts_ms, lean.agent, lean.model) == keys_of(full)


def test_older_schema_versions_decode() -> None:
    old = schemas.history("event")[-1]
    assert old.fingerprint != schemas.current("event").fingerprint
    import io

    from fastavro import schemaless_writer

    out = io.BytesIO()
    out.write(b"\xc3\x01" + old.fingerprint)
    record = {f["name"]: f.get("default") for f in old.raw["fields"]}
    record.update(session_id="s-old", seq=3, ts_ms=5, agent="codex", model="m")
    schemaless_writer(out, old.parsed, record)
    got = DECODER.event(out.getvalue())
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
def test_bad_events_have_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        DECODER.event(data)
    assert err.value.reason == reason


def test_invalid_utf8_is_rejected() -> None:
    good = event("s", payload="ok-payload")
    bad = good.replace(b"ok-payload", b"ok-\xff\xfeyload")
    with pytest.raises(DecodeError) as err:
        DECODER.event(bad)
    assert err.value.reason == "invalid_utf8"
    bad_tool = event("s", tool="Bashy").replace(b"Bashy", b"Bas\xc3\x28")
    with pytest.raises(DecodeError) as err:
        DECODER.event(bad_tool)
    assert err.value.reason == "invalid_utf8"


def test_batch_keeps_good_events_and_rejects_bad_ones_alone() -> None:
    items = [event("s", 0), b"junk-item-xyz", event("s", 1), event("", 2)]
    result = DECODER.message(batch.join(items))
    assert [e.seq for e in result.events] == [0, 1]
    assert [(r.reason, r.data) for r in result.rejected] == [
        ("bad_marker", b"junk-item-xyz"),
        ("empty_session_id", items[3]),
    ]


def test_plain_single_object_message_beside_batches() -> None:
    result = DECODER.message(event("p", 7))
    assert [(e.session_id, e.seq) for e in result.events] == [("p", 7)]
    assert not result.rejected


def test_bad_batch_framing_rejects_the_whole_message() -> None:
    broken = batch.join([event("s", 0)]) + b"x"
    result = DECODER.message(broken)
    assert not result.events
    assert [(r.reason, r.data) for r in result.rejected] == [("bad_batch", broken)]
    cut = b"KZB1" + struct.pack(">I", 3)
    assert DECODER.message(cut).rejected[0].reason == "bad_batch"
    assert DECODER.message(None).rejected[0].reason == "empty"


def test_payload_json_survives_unchanged() -> None:
    data = event("s", 1, payload=json.dumps({"a": "é"}))
    assert DECODER.message(data).events[0].data == data
