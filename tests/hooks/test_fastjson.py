"""fastjson matches the json module; the compiled-rule cache matches re.compile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hooks.secrets_corpus import CORPUS
from workers.hooks import fastjson
from workers.hooks.redact import Redactor, compile_cached

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(JSON)
def test_roundtrip_like_json(value: object) -> None:
    text = fastjson.dumps(value)
    assert text == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert fastjson.loads(text) == json.loads(text)
    assert fastjson.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("bad", ["", "{", "[1,2] x", "nope", '{"a":1}{}', "\ufeff"])
def test_rejects_like_json(bad: str) -> None:
    with pytest.raises(ValueError):
        json.loads(bad.lstrip("\ufeff") or "x")
    with pytest.raises(ValueError):
        fastjson.loads(bad)


def test_rule_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    text = " ".join(t for _, t, _ in CORPUS)
    plain = Redactor(home="/home/dev").text(text)  # first: compiles, writes the cache
    files = list((tmp_path / "kaizen-stream").glob("re-*.marshal"))
    assert files
    assert Redactor(home="/home/dev").text(text) == plain  # second: from the cache
    for f in files:  # a corrupt cache falls back to re.compile
        f.write_bytes(b"garbage")
    assert Redactor(home="/home/dev").text(text) == plain
    pattern = compile_cached(r"(?P<a>x+)|(?i:y)")
    assert pattern.sub(lambda m: m.lastgroup or "-", "xxY") == "a-"
