"""No secret of the corpus reaches the spool or Kafka, in any field position."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import Broker
from tests.hooks.secrets_corpus import CORPUS
from tests.hooks.util import (
    consume_raw,
    decode_all,
    hook_env,
    run_hook,
    spool_bytes,
    spooled_fields,
)
from workers.hooks.hook import record
from workers.hooks.redact import Redactor
from workers.hooks.spool import Spool
from workers.shipper.shipper import Shipper

# Where a secret can sit in a hook payload: each function puts `s` in one place.
POSITIONS: dict[str, Any] = {
    "prompt": lambda s: {"hook_event_name": "UserPromptSubmit", "prompt": f"please use {s}"},
    "tool_input_value": lambda s: {
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": f"run {s}"},
    },
    "tool_input_key": lambda s: {"hook_event_name": "PreToolUse", "tool_input": {s: 1}},
    "nested_list": lambda s: {
        "hook_event_name": "PostToolUse",
        "tool_response": {"lines": [["ok", {"deep": [s]}]]},
    },
    "error": lambda s: {"hook_event_name": "PostToolUseFailure", "error": s},
    "cwd": lambda s: {"hook_event_name": "Stop", "cwd": s},
    "transcript_path": lambda s: {"hook_event_name": "Stop", "transcript_path": s},
    "tool_name": lambda s: {"hook_event_name": "PreToolUse", "tool_name": s},
    "tool_use_id": lambda s: {"hook_event_name": "PreToolUse", "tool_use_id": s},
    "model": lambda s: {"hook_event_name": "SessionStart", "model": s},
    "event_name": lambda s: {"hook_event_name": s},
    "session_id": lambda s: {"hook_event_name": "Stop", "session_id": s},
    "secret_named_key": lambda s: {"hook_event_name": "Stop", "api_key": s.split()[-1]},
}


def payload(position: str, secret: str, i: int, prefix: str = "secrets-") -> dict[str, Any]:
    p: dict[str, Any] = {"session_id": f"{prefix}{i}", "cwd": "/tmp/project"}
    p.update(POSITIONS[position](secret))
    return p


def assert_clean(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    for name, _, parts in CORPUS:
        for part in parts:
            for form in (part, json.dumps(part)[1:-1]):
                assert form not in text, f"{name}: {part!r} leaked"


def test_redactor_on_every_corpus_entry() -> None:
    r = Redactor(home="/home/dev")
    for name, text, parts in CORPUS:
        out = r.text(text)
        assert all(p not in out for p in parts), (name, out)
        assert r.text(out) == out, f"{name}: redaction is not idempotent"


def test_keeps_what_is_not_secret() -> None:
    r = Redactor(home="/home/dev")
    for text in (
        "pytest tests/test_refunds.py -q",
        "max_tokens=4096",
        "the author: Jane",
        "~/src/app",
        '{"input_tokens": 1200}',
        "toolu_01ABCDEF",
        "git push -u origin main",
        "docker run -u 1000:1000 app",
        'sort_key = "name"',
        '"input_tokens": "1200"',
        "the key: value",
        'token: ""',
    ):
        assert r.text(text) == text
    assert r.obj({"input_tokens": 1200, "password": "x1"}) == {
        "input_tokens": 1200,
        "password": "[REDACTED:secret]",
    }
    assert r.text("/home/dev/src/x") == "~/src/x"


def test_config_extra_and_allow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "redact.json"
    config.write_text(
        json.dumps({"extra_patterns": [r"ACME-\d{6}"], "allow_patterns": [r"AKIAIOSFODNN7EXAMPLE"]})
    )
    monkeypatch.setenv("KAIZEN_REDACT_CONFIG", str(config))
    monkeypatch.setenv("KAIZEN_REDACT_EXTRA", json.dumps([r"internal-[a-z]{8}"]))
    r = Redactor.from_config(home="/home/dev")
    assert r.text("id ACME-123456") == "id [REDACTED:custom]"
    assert r.text("host internal-abcdefgh") == "host [REDACTED:custom]"
    assert r.text("AKIAIOSFODNN7EXAMPLE") == "AKIAIOSFODNN7EXAMPLE"
    toml = tmp_path / "redact.toml"
    toml.write_text('extra_patterns = ["TOML-[0-9]+"]\nemails = false\n')
    monkeypatch.setenv("KAIZEN_REDACT_CONFIG", str(toml))
    monkeypatch.delenv("KAIZEN_REDACT_EXTRA")
    r = Redactor.from_config(home="/home/dev")
    assert r.text("TOML-42 a@b.example") == "[REDACTED:custom] a@b.example"


def test_no_secret_reaches_spool_or_kafka(tmp_path: Path, broker: Broker, unique: str) -> None:
    spool = Spool(str(tmp_path / "spool"))
    redactor = Redactor(home="/home/dev")
    prefix = f"secrets-{unique}-"
    n = 0
    for position in POSITIONS:
        for _, text, _ in CORPUS:
            for agent in ("claude", "cursor", "codex"):
                record(agent, payload(position, text, n, prefix), spool, redactor)
                n += 1
    spooled = spooled_fields(tmp_path / "spool")
    assert len(spooled) == n
    assert_clean(spool_bytes(tmp_path / "spool"))

    shipper = Shipper(spool, broker.bootstrap, quiet=True)
    asyncio.run(shipper.run(linger=0))
    assert shipper.shipped == n
    raw = consume_raw(broker.bootstrap, want=10**9, timeout=8)
    # every event was read back before we look for secrets in what was read (the
    # session_id position puts a redacted secret where the session id would be)
    got = {(e["session_id"], e["seq"], e["payload"]) for e in decode_all(raw)}
    assert {(f["session_id"], f["seq"], f["payload"]) for f in spooled} <= got
    assert_clean(b"".join(raw))


@pytest.mark.parametrize("agent", ["claude", "cursor", "codex"])
def test_real_hook_process_redacts(tmp_path: Path, agent: str) -> None:
    env = hook_env(tmp_path / "spool", HOME="/home/zq9hookuser")
    secrets = " ".join(text for _, text, _ in CORPUS)
    positions = ("prompt", "tool_input_value", "cwd", "tool_input_key", "secret_named_key")
    for position in positions:
        proc = run_hook(agent, payload(position, secrets, 0), env)
        assert proc.returncode == 0
    # the hook exits 0 whatever happens: an empty spool would be "clean", so first
    # check that every call spooled its frame and none wrote a warning
    assert not (tmp_path / "spool" / "warnings.log").exists()
    assert [f["seq"] for f in spooled_fields(tmp_path / "spool")] == list(range(len(positions)))
    data = spool_bytes(tmp_path / "spool")
    assert_clean(data)
    assert b"zq9hookuser" not in data


def test_huge_strings_are_clipped_without_leaking(tmp_path: Path) -> None:
    from workers.hooks.mapping import CLIP_BEFORE_REDACTION, MAX_STRING

    token = "ghp_FAKEfake0123456789FAKEfake0123456789ab"
    for cut in range(-30, 30, 7):  # the secret straddles the clip point
        start = CLIP_BEFORE_REDACTION + cut - len(token) // 2
        text = "a " * (start // 2) + token + " b" * 50_000
        spool = Spool(str(tmp_path / f"s{cut}"))
        record("claude", {"session_id": "big", "tool_response": text}, spool, Redactor())
        data = spool_bytes(tmp_path / f"s{cut}")
        assert b"ghp_FAKE" not in data and b"0123456789ab" not in data
        assert len(data) < MAX_STRING + 4096
    assert Redactor().text("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
