"""JSON for the hook process on CPython's C accelerator, without importing `json`.

`import json` pulls in `re` and `enum` (about 6 ms, a third of a hook call);
`_json`, the C module `json` itself uses, parses and writes the same JSON
without them. `loads` / `dumps` here behave like `json.loads` /
`json.dumps(value, ensure_ascii=False, separators=(",", ":"))` for the values
hooks see (JSON-born data: no cycles, str keys). If `_json` is missing (not
CPython), they fall back to the `json` module.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json

    class _Context:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = {
            "-Infinity": float("-inf"),
            "Infinity": float("inf"),
            "NaN": float("nan"),
        }.__getitem__
        memo: dict[str, str] = {}

    _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]

    def _default(value: Any) -> Any:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    _encode = _json.make_encoder(
        None, _default, _json.encode_basestring, None, ":", ",", False, False, True
    )
    _WS = " \t\n\r"

    def loads(data: str | bytes) -> Any:
        """Parse one JSON document; ValueError when it is not one."""
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if text.startswith("\ufeff"):
            text = text[1:]
        start = len(text) - len(text.lstrip(_WS))
        try:
            value, end = _scan(text, start)
        except StopIteration:
            raise ValueError(f"no JSON value at character {start}") from None
        finally:
            _Context.memo.clear()
        if text[end:].strip(_WS):
            raise ValueError(f"extra data at character {end}")
        return value

    def dumps(value: Any) -> str:
        """Compact JSON text, non-ASCII kept as is."""
        return "".join(_encode(value, 0))

except ImportError:  # pragma: no cover - not CPython
    import json as _stdlib_json

    def loads(data: str | bytes) -> Any:
        return _stdlib_json.loads(data)

    def dumps(value: Any) -> str:
        return _stdlib_json.dumps(value, ensure_ascii=False, separators=(",", ":"))
