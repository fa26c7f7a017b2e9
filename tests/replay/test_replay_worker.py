"""Replay against a real worker on the real broker: content, ranges, concurrency, errors, HTTP."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

from aiokafka import AIOKafkaProducer

from tests.brokers import Broker
from tests.replay.conftest import (
    API_TOKEN,
    Worker,
    as_messages,
    make_events,
    produce,
    replay_until,
)
from workers.codec.event import encode_event
from workers.ingest.dlq import header_dict
from workers.replay import formats
from workers.replay.client import ReplayClient, open_follower
from workers.settings import DLQ_TOPIC, REPLAY_REQUESTS_TOPIC


def test_replay_equals_produced_many_sessions_concurrently(worker: Worker, unique: str) -> None:
    sessions = {
        f"many-{unique}-{i}": make_events(f"many-{unique}-{i}", 5 + 37 * i) for i in range(16)
    }

    async def main() -> None:
        messages = [
            m for events in sessions.values() for m in as_messages(events, 1 + len(events) // 4)
        ]
        landed = await produce(worker.broker.bootstrap, messages)
        async with ReplayClient(worker.broker.bootstrap) as client:
            # all at once: the replays of different sessions run concurrently on the worker
            results = await asyncio.gather(
                *(replay_until(client, sid, len(evs)) for sid, evs in sessions.items())
            )
        for (sid, produced), (events, result) in zip(sessions.items(), results, strict=True):
            assert result.end.status == "ok", sid
            assert result.complete
            assert [e.seq for e in events] == list(range(len(produced)))
            assert [e.value for e in events] == [encode_event(e) for e in produced]
            assert result.end.last_seq == len(produced) - 1
        # the partitions the broker put the sessions on (its partitioner, not a guess)
        assert len(set(landed.values())) > 1, landed

    asyncio.run(main())


def test_seq_and_time_ranges(worker: Worker, unique: str) -> None:
    sid = f"range-{unique}"
    produced = make_events(sid, 100)

    async def main() -> None:
        await produce(worker.broker.bootstrap, as_messages(produced, 30))
        async with ReplayClient(worker.broker.bootstrap) as client:
            await replay_until(client, sid, 100)
            cases: list[tuple[dict[str, Any], list[int]]] = [
                ({"from_seq": 10, "to_seq": 19}, list(range(10, 20))),
                ({"from_seq": 95}, list(range(95, 100))),
                ({"to_seq": 2}, [0, 1, 2]),
                ({"from_seq": 200}, []),
                (
                    {"from_ts_ms": produced[40]["ts_ms"], "to_ts_ms": produced[44]["ts_ms"]},
                    list(range(40, 45)),
                ),
                ({"from_seq": 42, "from_ts_ms": produced[40]["ts_ms"], "to_seq": 43}, [42, 43]),
                # original timing (1 s gaps) sped up 500x: same events, same order
                (
                    {"from_seq": 60, "to_seq": 69, "pacing": "original", "speed": 500.0},
                    list(range(60, 70)),
                ),
            ]
            for options, seqs in cases:
                events, result = await client.collect(sid, **options)
                assert [e.seq for e in events] == seqs, options
                assert result.end.status == "ok" and result.complete
                assert [e.value for e in events] == [encode_event(produced[s]) for s in seqs]

    asyncio.run(main())


def test_replay_while_the_session_is_being_ingested(worker: Worker, unique: str) -> None:
    sid = f"live-{unique}"
    produced = make_events(sid, 3000)

    async def main() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=worker.broker.bootstrap, acks="all")
        await producer.start()

        async def feed() -> None:
            for key, value in as_messages(produced, 10):
                await producer.send_and_wait("kaizen.events", value, key=key)
                await asyncio.sleep(0.01)

        try:
            async with ReplayClient(worker.broker.bootstrap) as client:
                feeder = asyncio.ensure_future(feed())
                seen = []
                while not feeder.done():
                    events, result = await client.collect(sid)
                    assert result.complete
                    # always a prefix of what was produced: nothing missing inside, nothing twice
                    assert [e.seq for e in events] == list(range(len(events)))
                    assert [e.value for e in events] == [
                        encode_event(x) for x in produced[: len(events)]
                    ]
                    seen.append(len(events))
                await feeder
                events, result = await replay_until(client, sid, len(produced))
                assert [e.value for e in events] == [encode_event(x) for x in produced]
                assert len(seen) >= 2, seen
        finally:
            await producer.stop()

    asyncio.run(main())


def test_unknown_session(worker: Worker, unique: str) -> None:
    async def main() -> None:
        async with ReplayClient(worker.broker.bootstrap) as client:
            events, result = await client.collect(f"nobody-{unique}")
            assert events == []
            assert result.end.status == "not_found" and result.end.count == 0

    asyncio.run(main())
    cli = worker.cli("replay", f"nobody-{unique}")
    assert cli.returncode == 1
    assert cli.stdout == ""
    assert cli.stderr.count("\n") == 1 and "Traceback" not in cli.stderr


def test_replay_cli_prints_schema_fields_and_ranges(
    worker: Worker, unique: str, tmp_path: Any
) -> None:
    sid = f"cli-{unique}"
    produced = make_events(sid, 40)
    asyncio.run(produce(worker.broker.bootstrap, as_messages(produced, 7)))

    async def wait() -> None:
        async with ReplayClient(worker.broker.bootstrap) as client:
            await replay_until(client, sid, 40)

    asyncio.run(wait())
    result = worker.cli("replay", sid)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == produced
    out = tmp_path / "out.jsonl"
    result = worker.cli("replay", sid, "--from-seq", "5", "--to-seq", "9", "--out", str(out))
    assert result.returncode == 0 and result.stdout == ""
    assert [json.loads(x)["seq"] for x in out.read_text().splitlines()] == [5, 6, 7, 8, 9]
    pretty = worker.cli("replay", sid, "--to-seq", "2", "--format", "pretty")
    assert pretty.returncode == 0 and len(pretty.stdout.splitlines()) == 3
    bad = worker.cli("replay", sid, "--from-seq", "9", "--to-seq", "5")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_no_worker_times_out_with_a_hint(worker: Worker, fresh_broker: Broker, unique: str) -> None:
    result = worker.cli(
        "replay", f"x-{unique}", "--timeout", "1", "--broker", fresh_broker.bootstrap
    )
    assert result.returncode == 3
    assert "kaizen-stream worker" in result.stderr and result.stderr.count("\n") == 1


def test_bad_requests_go_to_the_dlq_and_the_agent_keeps_answering(
    worker: Worker, unique: str
) -> None:
    bootstrap = worker.broker.bootstrap

    async def main() -> None:
        dlq = await open_follower(bootstrap, DLQ_TOPIC)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            bad_key = f"bad-{unique}".encode()
            await producer.send_and_wait(REPLAY_REQUESTS_TOPIC, b"not avro at all", key=bad_key)
            wrong_target = formats.request_codec().encode(
                formats.ReplayRequest("r-" + unique, f"t-{unique}").to_record()
                | {"target_topic": "kaizen.events"}
            )
            await producer.send_and_wait(
                REPLAY_REQUESTS_TOPIC, wrong_target, key=f"t-{unique}".encode()
            )
            reasons: dict[bytes, str] = {}
            deadline = time.monotonic() + 30
            while len(reasons) < 2 and time.monotonic() < deadline:
                for records in (await dlq.getmany(timeout_ms=300)).values():
                    for record in records:
                        if record.key in (bad_key, f"t-{unique}".encode()):
                            headers = header_dict(record.headers)
                            assert headers["source_topic"] == REPLAY_REQUESTS_TOPIC
                            reasons[record.key] = headers["reason"]
            assert reasons == {bad_key: "bad_marker", f"t-{unique}".encode(): "bad_target"}
        finally:
            await producer.stop()
            await dlq.stop()
        async with ReplayClient(bootstrap) as client:
            _, result = await client.collect(f"after-bad-{unique}")
            assert result.end.status == "not_found"

    asyncio.run(main())


def _http(
    worker: Worker, method: str, path: str, token: str | None = API_TOKEN, body: Any = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.web_port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None),
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_http_sessions_and_replay(worker: Worker, unique: str) -> None:
    sid = f"http-{unique}"
    produced = make_events(sid, 12)

    async def main() -> None:
        await produce(worker.broker.bootstrap, as_messages(produced, 5))
        async with ReplayClient(worker.broker.bootstrap) as client:
            await replay_until(client, sid, 12)
            status, body = _http(worker, "POST", f"/sessions/{sid}/replay", body={"from_seq": 3})
            assert status == 202, body
            # the client's reply consumer was positioned before the POST: nothing is missed
            got = [item async for item in client.expect(body["request_id"])]
            assert [g.seq for g in got[:-1]] == list(range(3, 12))  # type: ignore[union-attr]
            assert isinstance(got[-1], formats.EndMarker) and got[-1].status == "ok"

    asyncio.run(main())
    assert _http(worker, "GET", "/sessions", token=None)[0] == 401
    assert _http(worker, "GET", "/sessions", token="wrong")[0] == 401
    status, body = _http(worker, "GET", "/sessions?agent=claude&since=1760000000000")
    assert status == 200
    assert body["partitions"] == [0, 1, 2, 3] and body["complete"] is True
    assert sid in {s["session_id"] for s in body["sessions"]}
    status, body = _http(worker, "GET", "/sessions?agent=codex")
    assert sid not in {s["session_id"] for s in body["sessions"]}
    status, body = _http(worker, "GET", f"/sessions/{sid}")
    assert status == 200 and body["count"] == 12 and body["last_seq"] == 11
    assert body["model"] == "opus"
    status, body = _http(worker, "GET", f"/sessions/nobody-{unique}")
    assert status == 404
    status, body = _http(
        worker, "POST", f"/sessions/{sid}/replay", body={"target_topic": "kaizen.events"}
    )
    assert status == 400


def test_progress_bar_on_a_terminal_leaves_stdout_clean(worker: Worker, unique: str) -> None:
    import os

    sid = f"tty-{unique}"
    produced = make_events(sid, 3000)

    async def main() -> None:
        await produce(worker.broker.bootstrap, as_messages(produced, 500))
        async with ReplayClient(worker.broker.bootstrap) as client:
            await replay_until(client, sid, len(produced))

    asyncio.run(main())
    leader, follower = os.openpty()  # stderr is a terminal: the bar shows there
    try:
        result = worker.cli("replay", sid, stderr=follower, capture_output=False, stdout=-1)
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 0
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == list(range(3000))


def test_no_broker_is_one_line(tmp_path: Any) -> None:
    import subprocess
    import sys

    from tests.replay.conftest import ROOT
    from workers.broker.embedded import free_port

    for command in (["replay", "x"], ["tail", "x"], ["tail", "--all"]):
        result = subprocess.run(
            [sys.executable, "-m", "workers", *command, "--broker", f"127.0.0.1:{free_port()}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        )
        assert result.returncode == 1, command
        assert result.stderr.count("\n") == 1 and "is it running?" in result.stderr


def test_client_keeps_to_the_first_replier(worker: Worker, unique: str) -> None:
    """Two answers to one request (two workers during a rebalance): the client takes one."""
    from workers.replay.client import Replayed, ReplayResult

    async def main() -> None:
        bootstrap = worker.broker.bootstrap
        async with ReplayClient(bootstrap, target_topic="kaizen.replay") as client:
            request_id = f"dup-{unique}"
            replies = client.expect(request_id)
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
            await producer.start()
            try:
                key = f"dup-{unique}".encode()
                sums = {"a": formats.SeqChecksum(), "b": formats.SeqChecksum()}
                for seq in range(5):
                    for replier in ("a", "b"):
                        sums[replier].add(seq)
                        await producer.send_and_wait(
                            "kaizen.replay",
                            b"x",
                            key=key,
                            headers=formats.event_headers(request_id, seq, replier=replier),
                        )
                for replier in ("b", "a"):
                    await producer.send_and_wait(
                        "kaizen.replay",
                        b"",
                        key=key,
                        headers=formats.end_headers(request_id, "ok", sums[replier], "", replier),
                    )
            finally:
                await producer.stop()
            got = [item async for item in replies]
            assert [g.seq for g in got if isinstance(g, Replayed)] == [0, 1, 2, 3, 4]
            assert isinstance(got[-1], formats.EndMarker) and got[-1].count == 5
            assert not any(isinstance(g, ReplayResult) for g in got)

    asyncio.run(main())
