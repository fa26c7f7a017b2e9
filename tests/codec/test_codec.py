"""Event codec: single-object encoding, schema evolution, batch framing."""

from __future__ import annotations

import io

import pytest
from fastavro import schemaless_writer

from workers.codec import batch, schema
from workers.codec.errors import DecodeError
from workers.codec.event import complete_event, decode_event, encode_event
from workers.codec.lean import EventReader
from workers.codec.single_object import MARKER


def test_fingerprint_matches_avro_spec_example() -> None:
    # The Avro specification's single-object example: "int" -> 8F 5C 39 3F 1A D5 75 72
    assert schema.crc64_avro(b'"int"').to_bytes(8, "little").hex() == "8f5c393f1ad57572"


def test_round_trip_every_field() -> None:
    event = complete_event(
        {
            "session_id": "s-1",
            "seq": 7,
            "ts_ms": 1_700_000_000_000,
            "kind": "tool_call",
            "agent": "claude",
            "tool": "Bash",
            "tokens_in": 12,
            "cost_usd_e6": 1500,
            "payload": '{"command": "ls"}',
        }
    )
    data = encode_event(event)
    assert data[:2] == MARKER
    assert data[2:10] == schema.current("event").fingerprint
    assert decode_event(data) == event


def test_event_written_with_older_schema_decodes_with_current() -> None:
    old = next(s for s in schema.history("event") if s is not schema.current("event"))
    record = {
        "session_id": "old",
        "seq": 3,
        "ts_ms": 5,
        "kind": "message",
        "source": "hook",
        "agent": "codex",
        "model": "gpt-5",
        "workspace": None,
        "host": None,
        "tool": None,
        "tool_call_id": None,
        "tokens_in": 1,
        "tokens_out": 2,
        "cost_usd_e6": None,
        "stop_reason": None,
        "latency_ms": None,
        "ttft_ms": None,
        "payload": "{}",
    }
    out = io.BytesIO()
    out.write(MARKER + old.fingerprint)
    schemaless_writer(out, old.parsed, record)
    decoded = decode_event(out.getvalue())
    assert decoded["session_id"] == "old" and decoded["model"] == "gpt-5"
    assert decoded["ts_exact"] is True  # added later, takes its default
    assert decoded["reasoning_tokens"] is None


#: fingerprints of the event schemas producers have written with, newest first: a schema
#: change adds one here and keeps the old file in schemas/history (Parsing Canonical Form
#: ignores docs, so only a change of fields, types, names or order changes a fingerprint)
WRITTEN = {
    "050f728a32769347": "v2: producer (issue 12.2)",
    "616f6dd0c085baab": "v1: no producer",
    "99efad62c646ac30": "v0",
}


def test_every_schema_producers_wrote_is_kept() -> None:
    versions = [s.fingerprint.hex() for s in schema.history("event")]
    assert versions[0] == next(iter(WRITTEN)) and sorted(versions) == sorted(WRITTEN)


@pytest.mark.parametrize("native", [True, False])
def test_events_of_every_older_schema_are_keyed_with_producer_empty(native: bool) -> None:
    """An event written before the producer field (v0, v1) decodes with the current reader
    schema and with both lean readers to producer "": its key is what it always was."""
    reader = EventReader(native=native)
    for old in schema.history("event")[1:]:
        names = {f["name"] for f in old.raw["fields"]}
        assert "producer" not in names
        record = {k: v for k, v in complete_event({}).items() if k in names}
        record.update(session_id="old", seq=4, ts_ms=9, agent="codex", model="m")
        out = io.BytesIO()
        out.write(MARKER + old.fingerprint)
        schemaless_writer(out, old.parsed, record)
        data = out.getvalue()
        assert decode_event(data)["producer"] == ""
        assert reader.event(data)[:6] == ("old", 4, 9, "codex", "m", "")
    current = encode_event(
        complete_event({"session_id": "new", "seq": 4, "ts_ms": 1, "producer": "p1"})
    )
    assert reader.event(current).producer == decode_event(current)["producer"] == "p1"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too_short"),
        (b"garbage-garbage", "bad_marker"),
        (MARKER + b"\x00" * 8 + b"\x02a", "unknown_schema"),
    ],
)
def test_bad_bytes_give_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_event(data)
    assert info.value.reason == reason


def test_truncated_body_is_an_error_not_a_partial_event() -> None:
    data = encode_event(complete_event({"session_id": "s", "seq": 1, "ts_ms": 1}))
    for cut in range(10, len(data)):
        with pytest.raises(DecodeError):
            decode_event(data[:cut])


def test_unknown_field_names_are_refused() -> None:
    with pytest.raises(ValueError, match="nope"):
        complete_event({"session_id": "s", "seq": 1, "ts_ms": 1, "nope": 1})


def test_batch_round_trip_and_framing_errors() -> None:
    items = [
        encode_event(complete_event({"session_id": "s", "seq": i, "ts_ms": i})) for i in range(5)
    ]
    message = batch.join(items)
    assert batch.is_batch(message) and not batch.is_single(message)
    assert batch.is_single(items[0]) and not batch.is_batch(items[0])
    assert batch.split(message) == items
    for cut in range(len(message)):
        with pytest.raises(DecodeError):
            batch.split(message[:cut])
    with pytest.raises(DecodeError):
        batch.split(message + b"x")
