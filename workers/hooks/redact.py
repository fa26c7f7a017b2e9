"""Redaction: secrets and personal data are replaced before anything is written.

Runs in the hook process (stdlib only, on every call), in `import` and in
`sample_events`. Invariants:

- `Redactor.obj` walks a parsed JSON value and returns a copy in which every
  string (values *and* keys) went through `Redactor.text`, and every string
  value under a secret-named key (password, token, api_key, ...) is replaced
  whole. Numbers, booleans and null are kept (so `input_tokens: 1200` stays).
- `text` applies one compiled alternation of all built-in rules, then the
  user's extra patterns; a match that an allow-list pattern fully matches is
  kept. Replacements look like `[REDACTED:<rule>]` and never match a rule
  themselves, so redacting twice changes nothing (idempotent).
- Home directories become `~` (the current user's) or `~<8 hex>` (another
  user's name, hashed), so workspaces stay useful without naming anyone.

Configuration (documented in docs/HOOKS.md): `$KAIZEN_REDACT_CONFIG`, else
`$XDG_CONFIG_HOME/kaizen-stream/redact.json` (or `redact.toml`), with keys
`extra_patterns`, `allow_patterns`, `emails` (bool), `home` ("relative" or
"hash"); and the environment variables `KAIZEN_REDACT_EXTRA` /
`KAIZEN_REDACT_ALLOW` (JSON arrays of regexes).
"""

from __future__ import annotations

import os
import sys
import zlib

from workers.durable import atomic_write
from workers.hooks import fastjson

TYPE_CHECKING = False  # typing costs ~3 ms to import; the hook path avoids it
if TYPE_CHECKING:
    import re
    from collections.abc import Callable
    from typing import Any

# Keys whose string values are secret whatever they look like.
_SECRET_KEY_RE = (
    r"(?i)(?:passw(?:or)?d|passwd|secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"credential|authorization|auth[_-]?token|access[_-]?token|refresh[_-]?token|"
    r"id[_-]?token|bearer|cookie|^token$|_token$|-token$|client[_-]?secret)"
)

# name -> regex. Order matters only for overlapping rules: the first listed wins
# at a given position (alternation), so specific vendors come before generic.
_RULES: tuple[tuple[str, str], ...] = (
    (
        "private_key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)",
    ),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    (
        "aws_key_id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b",
    ),
    ("github", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("gitlab", r"\bgl(?:pat|dt|rt|cbt|ptt|ft|imt|oas|soat)-[A-Za-z0-9_-]{20,}"),
    ("slack", r"\bxox[abposre]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/[A-Za-z0-9/_-]+"),
    ("stripe", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|\bwhsec_[A-Za-z0-9]{20,}"),
    ("anthropic", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    ("openai", r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}"),
    ("google", r"\bAIza[0-9A-Za-z_-]{35}|\bya29\.[0-9A-Za-z_-]{20,}|\bGOCSPX-[A-Za-z0-9_-]{20,}"),
    ("npm", r"\bnpm_[A-Za-z0-9]{36}\b"),
    ("huggingface", r"\bhf_[A-Za-z0-9]{30,}\b"),
    ("sendgrid", r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    ("twilio", r"\bSK[0-9a-fA-F]{32}\b"),
    ("azure_conn", r"(?i:\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)=[^;\s'\"]+)"),
    # scheme://user:password@host -> keep scheme and user, drop the password
    ("url_credentials", r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s/:@'\"]{0,200}:[^\s/@'\"]{1,500}@"),
    ("bearer", r"(?i:\b(?:bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{16,})"),
    ("conn_password", r"(?i:\b(?:password|pwd|passwd)\s*=\s*[^;\s'\"&]+)"),
    # NAME=value / NAME: value / "name": "value" for secret-named variables
    (
        "assignment",
        r"(?i:\b[A-Za-z0-9_.-]*(?:secret|token|passw(?:or)?d|passwd|api[_-]?key|apikey|"
        r"access[_-]?key|private[_-]?key|credentials?|auth(?:[_-]?token|orization))"
        r"[A-Za-z0-9_.-]*['\"]?[ \t]*(?::|=|:=)[ \t]*['\"]?(?:(?:bearer|basic|token)[ \t]+)?"
        r"(?!\[REDACTED)(?!\d+\b)[^\s'\",;]{3,})",
    ),
    (
        "email",
        r"\b(?!git@)[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    ),
    (
        "home",
        r"(?:(?<![\w.~-])/(?:home|Users)/[^/\s'\":]+|\b[A-Za-z]:\\\\?Users\\\\?[^\\\s'\":]+)",
    ),
)

_ASSIGN_SPLIT_RE = r"(?::=|[:=])"
_URL_CRED_RE = r"^([A-Za-z][A-Za-z0-9+.-]*://[^:]*):"


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kaizen-stream")


def compile_cached(pattern: str) -> re.Pattern[str]:
    """re.compile, with the compiled program kept on disk between hook processes.

    Parsing and compiling the rules costs ~2 ms, a tenth of a hook call. The
    program `re` builds (re._compiler) is stored with marshal, keyed by the
    Python version, the engine's MAGIC and the pattern itself, and handed back
    to `_sre.compile` the next time. Any mismatch or error falls back to
    re.compile, so a stale or broken cache only costs the 2 ms.
    """
    try:
        import _sre
        import marshal

        tag = f"{sys.version}\0{_sre.MAGIC}\0{pattern}".encode()
        path = os.path.join(
            _cache_dir(), f"re-{zlib.crc32(tag):08x}{zlib.adler32(tag):08x}.marshal"
        )
    except Exception:  # no cache: plain compile
        import re

        return re.compile(pattern)
    try:
        with open(path, "rb") as f:
            stored, flags, code, groups, groupindex, indexgroup = marshal.loads(f.read())
        if stored == pattern:
            compiled: re.Pattern[str] = _sre.compile(
                pattern, flags, code, groups, groupindex, indexgroup
            )
            return compiled
    except Exception:  # missing or stale cache
        pass
    import re

    compiled = re.compile(pattern)
    try:
        from re import _compiler, _parser  # type: ignore[attr-defined]

        parsed = _parser.parse(pattern, 0)
        code = [int(c) for c in _compiler._code(parsed, 0)]
        groupindex = dict(parsed.state.groupdict)
        index: list[str | None] = [None] * parsed.state.groups
        for k, i in groupindex.items():
            index[i] = k
        data = marshal.dumps(
            (
                pattern,
                parsed.state.flags,
                code,
                parsed.state.groups - 1,
                groupindex,
                tuple(index),
            )
        )
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        atomic_write(path, data, sync=False)
    except Exception:  # the cache is an optimisation only
        pass
    return compiled


def _load_config() -> dict[str, Any]:
    path = os.environ.get("KAIZEN_REDACT_CONFIG")
    if not path:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        for name in ("redact.json", "redact.toml"):
            candidate = os.path.join(base, "kaizen-stream", name)
            if os.path.exists(candidate):
                path = candidate
                break
    config: dict[str, Any] = {}
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".toml"):
            import tomllib  # only when a TOML config exists: keeps the hook lean

            config = tomllib.loads(data.decode())
        else:
            config = fastjson.loads(data)
    for env, key in (
        ("KAIZEN_REDACT_EXTRA", "extra_patterns"),
        ("KAIZEN_REDACT_ALLOW", "allow_patterns"),
    ):
        raw = os.environ.get(env)
        if raw:
            values = fastjson.loads(raw)
            config[key] = list(config.get(key, [])) + list(values)
    return config


class Redactor:
    """Replaces secrets in strings and JSON values. Build once per process."""

    def __init__(
        self,
        *,
        home: str | None = None,
        user: str | None = None,
        extra_patterns: list[str] | None = None,
        allow_patterns: list[str] | None = None,
        emails: bool = True,
        hash_home: bool = False,
    ) -> None:
        home = home if home is not None else os.path.expanduser("~")
        self.home = home.rstrip("/") if home not in ("", "/") else ""
        self.user = user if user is not None else os.path.basename(self.home)
        self.hash_home = hash_home
        rules = [(n, p) for n, p in _RULES if emails or n != "email"]
        self._names = [n for n, _ in rules]
        self._re = compile_cached("|".join(f"(?P<{n}>{p})" for n, p in rules))
        self._secret_key = compile_cached(_SECRET_KEY_RE)
        self._assign_split = compile_cached(_ASSIGN_SPLIT_RE)
        self._url_cred = compile_cached(_URL_CRED_RE)
        self._extra = (
            compile_cached("|".join(f"(?:{p})" for p in extra_patterns)) if extra_patterns else None
        )
        self._allow = (
            compile_cached("|".join(f"(?:{p})" for p in allow_patterns)) if allow_patterns else None
        )
        self._sub: Callable[[re.Match[str]], str] = self._replace

    @classmethod
    def from_config(cls, **overrides: Any) -> Redactor:
        """The redactor the hook uses: built-in rules plus the user's configuration."""
        config = _load_config()
        kwargs: dict[str, Any] = {
            "extra_patterns": config.get("extra_patterns") or None,
            "allow_patterns": config.get("allow_patterns") or None,
            "emails": bool(config.get("emails", True)),
            "hash_home": config.get("home", "relative") == "hash",
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def _home_token(self, user: str) -> str:
        if user == self.user and not self.hash_home:
            return "~"
        return f"~{zlib.crc32(user.encode()):08x}"

    def _replace(self, m: re.Match[str]) -> str:
        text = m.group(0)
        if self._allow is not None and self._allow.fullmatch(text):
            return text
        name = m.lastgroup or "secret"
        if name == "home":
            sep = "\\" if "\\" in text else "/"
            user = text.rstrip("\\/").split(sep)[-1]
            return self._home_token(user)
        if name == "url_credentials":
            head = self._url_cred.match(text)
            return f"{head.group(1)}:[REDACTED:password]@" if head else "[REDACTED:url]@"
        if name == "assignment":
            parts = self._assign_split.split(text, maxsplit=1)
            if len(parts) == 2:
                sep = text[len(parts[0]) : len(text) - len(parts[1])]
                value = parts[1].lstrip(" \t")
                quote = value[:1] if value[:1] in "'\"" else ""
                pad = parts[1][: len(parts[1]) - len(value)]
                return f"{parts[0]}{sep}{pad}{quote}[REDACTED:secret]"
        if name == "conn_password":
            key = text.split("=", 1)[0]
            return f"{key}=[REDACTED:password]"
        if name == "bearer":
            return f"{text.split()[0]} [REDACTED:token]"
        if name == "email":
            return "[REDACTED:email]"
        return f"[REDACTED:{name}]"

    def _extra_replace(self, m: re.Match[str]) -> str:
        if self._allow is not None and self._allow.fullmatch(m.group(0)):
            return m.group(0)
        return "[REDACTED:custom]"

    def text(self, s: str) -> str:
        if self.home and self.home not in ("/home", "/Users"):
            # the current home first, so `/home/alice` -> `~` even for odd user names
            s = s.replace(self.home + "/", "~/")
            if s.endswith(self.home):
                s = s[: -len(self.home)] + "~"
        out = self._re.sub(self._sub, s)
        if self._extra is not None:
            out = self._extra.sub(self._extra_replace, out)
        return out

    def obj(self, value: Any) -> Any:
        """A redacted copy of a parsed JSON value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                key = self.text(k) if isinstance(k, str) else k
                if isinstance(v, str) and isinstance(k, str) and self._secret_key.search(k) and v:
                    out[key] = "[REDACTED:secret]" if not v.startswith("[REDACTED") else v
                else:
                    out[key] = self.obj(v)
            return out
        if isinstance(value, list):
            return [self.obj(v) for v in value]
        return value
