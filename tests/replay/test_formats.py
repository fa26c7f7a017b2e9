"""Pure parts of replay: request codec, end marker, checksum, peek, seam, time specs, views."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.codec.errors import DecodeError
from workers.codec.event import complete_event, encode_event
from workers.codec.program import MAX_KEY_BYTES
from workers.replay import formats, pacing
from workers.replay.formats import ReplayRequest, SeqChecksum
from workers.replay.render import event_json, event_line
from workers.replay.seam import Seam, Seams
from workers.replay.timespec import parse_time_ms
from workers.web.views import authorized, session_matches


def test_request_round_trip() -> None:
    request = ReplayRequest(
        request_id="r1",
        session_id="s1",
        from_seq=3,
        to_seq=9,
        from_ts_ms=5,
        to_ts_ms=None,
        pacing="original",
        speed=2.5,
        requested_ts_ms=123,
    )
    data = formats.encode_request(request)
    assert data[:2] == b"\xc3\x01"
    assert formats.decode_request(data) == request


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"target_topic": "kaizen.events"}, "bad_target"),
        ({"target_topic": "kaizen.replay.requests"}, "bad_target"),
        ({"target_topic": "kaizen.events.dlq"}, "bad_target"),
        ({"target_topic": ""}, "bad_target"),
        ({"target_topic": "someone.elses.topic"}, "bad_target"),
        ({"from_seq": 5, "to_seq": 4}, "bad_range"),
        ({"from_ts_ms": 5, "to_ts_ms": 4}, "bad_range"),
        ({"session_id": ""}, "bad_request"),
        ({"session_id": "s" * (MAX_KEY_BYTES + 1)}, "key_too_long"),
        ({"session_id": "\u00e9" * (MAX_KEY_BYTES // 2 + 1)}, "key_too_long"),
        ({"speed": 0.0}, "bad_request"),
    ],
)
def test_invalid_requests_are_refused(changes: dict[str, object], reason: str) -> None:
    record = ReplayRequest("r", "s").to_record() | changes
    data = formats.request_codec().encode(record)
    with pytest.raises(formats.InvalidRequest) as exc:
        formats.decode_request(data)
    assert exc.value.reason == reason


def test_a_session_id_of_the_longest_key_the_event_reader_takes_is_accepted() -> None:
    ReplayRequest("r", "s" * MAX_KEY_BYTES).validate()


def test_targets_allowed_by_the_configured_prefix_only() -> None:
    formats.check_target("kaizen.replay")
    formats.check_target("team.replay.alice", "team.replay.")
    for topic, prefix in [
        ("team.replay.alice", ""),  # no prefix configured: kaizen.replay only
        ("team.replay.", "team.replay."),  # the prefix alone is no topic of a client
        ("other.alice", "team.replay."),
        ("kaizen.events", "kaizen."),  # a prefix never opens the forbidden topics
        ("", "team."),
    ]:
        with pytest.raises(formats.InvalidRequest) as exc:
            formats.check_target(topic, prefix)
        assert exc.value.reason == "bad_target", (topic, prefix)
    record = ReplayRequest("r", "s", target_topic="team.replay.bob").to_record()
    data = formats.request_codec().encode(record)
    assert formats.decode_request(data, "team.replay.").target_topic == "team.replay.bob"
    with pytest.raises(formats.InvalidRequest):
        formats.decode_request(data)
    # a client cannot know the worker's prefix: it checks only what is never allowed
    ReplayRequest("r", "s", target_topic="team.replay.bob").validate(None)
    with pytest.raises(formats.InvalidRequest):
        ReplayRequest("r", "s", target_topic="kaizen.events").validate(None)


@given(st.sets(st.integers(min_value=-5, max_value=60), max_size=40))
def test_missing_ranges_round_trip(seqs: set[int]) -> None:
    text = formats.format_ranges(seqs)
    back = {s for lo, hi in formats.parse_ranges(text) for s in range(lo, hi + 1)}
    assert back == seqs
    assert formats.format_ranges([9, 3, 4, 5, 3, 12, 13]) == "3-5,9,12-13"


def test_partial_end_marker_names_the_missing_seqs() -> None:
    checksum = SeqChecksum().add_all([0, 1, 4])
    headers = formats.header_map(
        formats.end_headers("r", formats.STATUS_PARTIAL, checksum, missing=[2, 3, 7])
    )
    end = formats.parse_end(headers)
    assert end is not None and end.status == "partial" and end.count == 3
    assert end.missing == ((2, 3), (7, 7)) and end.missing_text == "2-3,7"
    ok = formats.parse_end(formats.header_map(formats.end_headers("r", "ok", checksum)))
    assert ok is not None and ok.missing == ()
    assert formats.H_MISSING not in dict(formats.end_headers("r", "ok", checksum))
    many = formats.end_headers("r", "partial", checksum, missing=range(0, 20_000, 2))
    value = dict(many)[formats.H_MISSING]
    assert len(value) <= formats.MAX_MISSING_HEADER + 4 and value.endswith(b",...")


def test_pacing_waits_the_gap_divided_by_speed_capped() -> None:
    assert pacing.delay_s(None, 5_000, 1.0) == 0.0
    assert pacing.delay_s(1_000, 3_000, 1.0) == 2.0
    assert pacing.delay_s(1_000, 3_000, 4.0) == 0.5
    assert pacing.delay_s(3_000, 1_000, 1.0) == 0.0  # a clock that went backwards
    overnight = 10 * 3_600_000
    assert pacing.delay_s(0, overnight, 1.0) == pacing.MAX_GAP_S
    assert pacing.delay_s(0, overnight, 1000.0) == pacing.MAX_GAP_S
    assert pacing.delay_s(0, 2_000, 1.0, cap_s=0.5) == 0.5


@pytest.mark.parametrize("data", [None, b"", b"junk", b"\xc3\x01" + b"\x00" * 8 + b"zz"])
def test_garbage_is_a_decode_error(data: bytes | None) -> None:
    with pytest.raises(DecodeError):
        formats.decode_request(data)


def test_end_marker_round_trip_and_checksum() -> None:
    checksum = SeqChecksum().add_all([0, 1, 2, 5])
    headers = formats.header_map(formats.end_headers("r9", "ok", checksum))
    end = formats.parse_end(headers)
    assert end is not None
    assert (end.request_id, end.status, end.count, end.last_seq) == ("r9", "ok", 4, 5)
    assert end.checksum == checksum.hex == SeqChecksum().add_all([0, 1, 2, 5]).hex
    # order and duplicates change it
    assert SeqChecksum().add_all([1, 0, 2, 5]).hex != checksum.hex
    assert SeqChecksum().add_all([0, 1, 2, 2, 5]).hex != checksum.hex
    event = formats.header_map(formats.event_headers("r9", 3, total=10))
    assert formats.parse_end(event) is None
    assert event[formats.H_SEQ] == "3"


def test_not_found_marker_has_no_last_seq() -> None:
    end = formats.parse_end(
        formats.header_map(formats.end_headers("r", "not_found", SeqChecksum()))
    )
    assert end is not None and end.count == 0 and end.last_seq is None


@given(
    st.text(max_size=50),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_peek_matches_decode(session: str, seq: int, ts_ms: int) -> None:
    data = encode_event(complete_event({"session_id": session, "seq": seq, "ts_ms": ts_ms}))
    assert formats.peek_seq_ts(data) == (seq, ts_ms)


def test_peek_truncated() -> None:
    data = encode_event(complete_event({"session_id": "abc", "seq": 1, "ts_ms": 2}))
    with pytest.raises(DecodeError):
        formats.peek_seq_ts(data[:12])


@given(
    st.integers(min_value=0, max_value=40),
    st.lists(st.integers(min_value=0, max_value=60), max_size=80),
    st.lists(st.integers(min_value=0, max_value=60), max_size=80),
    st.randoms(),
)
def test_seam_emits_each_seq_once_in_order(
    replayed_to: int, during: list[int], after: list[int], rnd: random.Random
) -> None:
    """Replay 0..replayed_to; live events (with redeliveries) during and after: no dup, ordered."""
    seam: Seam[int] = Seam()
    out: list[int] = []
    events = list(range(replayed_to + 1))
    live_during = sorted(during)
    # the replay and the live stream interleave arbitrarily while the replay runs
    while events or live_during:
        if events and (not live_during or rnd.random() < 0.5):
            seq = events.pop(0)
            if seam.replayed(seq):
                out.append(seq)
        else:
            seq = live_during.pop(0)
            assert seam.live(seq, seq) == []
    out.extend(s for s, _ in seam.replay_done())
    for seq in sorted(after) + sorted(after):
        out.extend(s for s, _ in seam.live(seq, seq))
    # the exact output, from a model: the replay, then the live events above it, then the
    # later live events above everything emitted so far; each once, in seq order
    model = list(range(replayed_to + 1)) + sorted({s for s in during if s > replayed_to})
    model += sorted({s for s in after if s > model[-1]})
    assert out == model


@given(
    st.lists(st.integers(min_value=0, max_value=30), max_size=3),
    st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 40)), max_size=60),
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 40)), max_size=60),
    st.randoms(),
)
def test_seams_join_a_session_of_several_producers(
    replayed_to: list[int],
    during: list[tuple[str, int]],
    after: list[tuple[str, int]],
    rnd: random.Random,
) -> None:
    """Producers "", a, b each numbered from 0 (issue 12.2): each (producer, seq) once, each
    producer's events in its own order, whatever the others did (one Seam would drop them)."""
    producers = ["", "a", "b"][: len(replayed_to)]
    replay = sorted(
        (q, p) for p, hi in zip(producers, replayed_to, strict=False) for q in range(hi + 1)
    )
    seams: Seams[tuple[str, int]] = Seams()
    out: list[tuple[str, int]] = []
    live_during = sorted(during, key=lambda t: t[1])
    while replay or live_during:
        if replay and (not live_during or rnd.random() < 0.5):
            q, p = replay.pop(0)
            if seams.replayed(p, q):
                out.append((p, q))
        else:
            p, q = live_during.pop(0)
            assert seams.live(p, q, (p, q)) == []
    out.extend(item for _, item in seams.replay_done())
    for p, q in sorted(after, key=lambda t: t[1]) * 2:
        out.extend(item for _, item in seams.live(p, q, (p, q)))
    assert len(out) == len(set(out))
    for p in "abc" if producers else "":
        mine = [q for pp, q in out if pp == p]
        assert mine == sorted(mine)
    last = dict(zip(producers, replayed_to, strict=False))
    want = {(p, q) for p, hi in last.items() for q in range(hi + 1)}
    want |= {(p, q) for p, q in during if q > last.get(p, -1)}
    assert want <= set(out)


def test_seam_gap() -> None:
    seam: Seam[str] = Seam()
    for seq in range(5):
        assert seam.replayed(seq)
    seam.live(8, "e8")
    seam.live(9, "e9")
    seam.live(3, "old")  # at or below what was replayed: never kept
    assert seam.gap() == (5, 7)
    for seq in (5, 6, 7):
        assert seam.replayed(seq)
    assert seam.gap() is None
    assert seam.replay_done() == [(8, "e8"), (9, "e9")]
    assert seam.live(9, "dup") == []
    assert seam.live(10, "e10") == [(10, "e10")]


def test_parse_time() -> None:
    now = 1_800_000_000_000
    assert parse_time_ms("15m", now) == now - 15 * 60_000
    assert parse_time_ms("2h", now) == now - 7_200_000
    assert parse_time_ms("1700000000") == 1_700_000_000_000
    assert parse_time_ms("1700000000123") == 1_700_000_000_123
    assert parse_time_ms("2026-01-01T00:00:00Z") == 1_767_225_600_000
    with pytest.raises(ValueError, match="cannot read"):
        parse_time_ms("yesterday-ish")


def test_render() -> None:
    event = complete_event(
        {"session_id": "s", "seq": 1, "ts_ms": 0, "kind": "tool_call", "tool": "Bash"}
    )
    assert event_json(event).startswith('{"session_id":"s","seq":1,"ts_ms":0,')
    line = event_line(event | {"tokens_in": 5})
    assert "tool_call" in line and "Bash" in line and "tokens 5/-" in line


def test_bearer_token() -> None:
    assert authorized({}, None)
    assert not authorized({}, "t0k")
    assert not authorized({"Authorization": "Bearer nope"}, "t0k")
    assert not authorized({"Authorization": "Basic t0k"}, "t0k")
    assert authorized({"Authorization": "Bearer t0k"}, "t0k")


class _Info:
    agent = "claude"
    model = "opus"
    first_ts_ms = 100
    last_ts_ms = 200


def test_session_filters() -> None:
    info = _Info()
    assert session_matches(info, None, None, None, None)
    assert session_matches(info, "claude", "opus", 150, 150)
    assert not session_matches(info, "codex", None, None, None)
    assert not session_matches(info, None, "sonnet", None, None)
    assert not session_matches(info, None, None, 201, None)
    assert not session_matches(info, None, None, None, 99)
