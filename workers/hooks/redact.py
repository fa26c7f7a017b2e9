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

# Names of variables and keys whose assigned value is a secret (the `assignment` rule).
_SECRET_NAME = (
    r"(?:secret|token|passw(?:or)?d|passwd|creds?\b|credentials?|api[_-]?key|apikey|"
    r"(?:access|auth|client|master|signing|encryption|license|account|service|private)[_-]?key|"
    r"auth(?:[_-]?token|orization))"
)
# A quoted value runs to its closing quote (escapes included: a PEM key in a JSON string
# is one value with `\n` in it), whatever punctuation or spaces it holds. Unrolled loops
# with possessive quantifiers: linear, no backtracking.
_QUOTED = "".join(
    rf"|\\?{q}(?!\[REDACTED|\d+{q}|{q})[^{q}\\\n]*+(?:\\.[^{q}\\\n]*+)*+" for q in ('"', "'", "`")
)[1:]

# name -> regex. Order matters only for overlapping rules: the first listed wins
# at a given position (alternation), so specific vendors come before generic.
# Vendor rules follow the token formats of gitleaks' default rule set
# (config/gitleaks.toml) where the token has a recognisable prefix.
_RULES: tuple[tuple[str, str], ...] = (
    (
        "private_key",
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)",
    ),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    (
        "aws_key_id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|A3T[A-Z0-9])[A-Z0-9]{16}\b",
    ),
    ("aws_bedrock", r"\bABSK[A-Za-z0-9+/]{100,}={0,2}"),
    ("github", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    (
        "gitlab",
        r"\bgl(?:pat|dt|rt|cbt|ptt|ft|imt|oas|soat|agent|ffct)-[A-Za-z0-9_-]{20,}"
        r"|\bGR1348941[A-Za-z0-9_-]{20}",
    ),
    (
        "slack",
        r"\bxox[abposre]-[A-Za-z0-9-]{10,}|\bxapp-\d-[A-Za-z0-9-]{10,}"
        r"|https://hooks\.slack\.com/[A-Za-z0-9/_-]+",
    ),
    (
        "webhook",
        r"https://[A-Za-z0-9.-]*(?:discord(?:app)?\.com/api/webhooks|webhook\.office\.com/webhookb2)"
        r"/[A-Za-z0-9/@_.-]+",
    ),
    ("stripe", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|\bwhsec_[A-Za-z0-9]{20,}"),
    ("anthropic", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    ("openai", r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}"),
    (
        "ai_vendor",  # Perplexity, Groq, xAI, Hugging Face organisation tokens
        r"\b(?:pplx-[A-Za-z0-9]{40,}|gsk_[A-Za-z0-9]{40,}|xai-[A-Za-z0-9]{60,}"
        r"|api_org_[A-Za-z0-9]{30,})",
    ),
    ("google", r"\bAIza[0-9A-Za-z_-]{35}|\bya29\.[0-9A-Za-z_-]{20,}|\bGOCSPX-[A-Za-z0-9_-]{20,}"),
    (
        "cloud",  # Alibaba, Azure AD, DigitalOcean, Heroku, Fly.io, Databricks, Cloudflare, Yandex
        r"\bLTAI[A-Za-z0-9]{20}\b|(?<![A-Za-z0-9_~.])[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}"
        r"|\bdo[opr]_v1_[a-f0-9]{64}|\bHRKU-[A-Za-z0-9_-]{40,}|\bfo1_[A-Za-z0-9_-]{39,}"
        r"|\bdapi[a-f0-9]{32}|\bv1\.0-[a-f0-9]{24}-[a-f0-9]{146}|\bAQVN[A-Za-z0-9_-]{35,38}"
        r"|\bt1\.[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_-]{86}",
    ),
    (
        "secrets_manager",  # HashiCorp Vault and Terraform Cloud, Doppler, 1Password, age, Pulumi
        r"\bhv[sb]\.[A-Za-z0-9_-]{90,}|\b[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}"
        r"|\bdp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}|\bops_eyJ[A-Za-z0-9+/]{100,}={0,3}"
        r"|\bA3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}"
        r"-[A-Z0-9]{5}|\bAGE-SECRET-KEY-1[0-9A-Z]{58}|\bpul-[a-f0-9]{40}",
    ),
    (
        "package_registry",  # npm, PyPI, RubyGems, Clojars, JFrog Artifactory
        r"\bnpm_[A-Za-z0-9]{36}\b|\bpypi-AgE[A-Za-z0-9_-]{50,}|\brubygems_[a-f0-9]{48}"
        r"|\bCLOJARS_[a-z0-9]{60}|\bAKCp[A-Za-z0-9]{69}|\bcmVmdGtu[A-Za-z0-9]{56}",
    ),
    ("huggingface", r"\bhf_[A-Za-z0-9]{30,}\b"),
    (
        "dev_service",  # Atlassian, Sentry, Grafana, New Relic, Linear, Notion, Postman, ...
        r"\bATATT3[A-Za-z0-9_=-]{100,}|\bsntry[su]_[A-Za-z0-9+/=_]{40,}"
        r"|\bgl(?:c|sa)_[A-Za-z0-9+/_=]{32,}|\bNR(?:AK|JS|II)-[A-Za-z0-9]{19,}"
        r"|\blin_(?:api|oauth)_[A-Za-z0-9]{40}|\bntn_[A-Za-z0-9]{40,}|\bsecret_[A-Za-z0-9]{43}\b"
        r"|\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}|\bpnu_[A-Za-z0-9]{36}|\brdme_[a-z0-9]{70}"
        r"|\bpscale_(?:tkn|oauth|pw)_[A-Za-z0-9_=.-]{32,}|\btfp_[A-Za-z0-9_.=-]{59}"
        r"|\bdt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}|\bsgp_[A-Za-z0-9_]{40,}"
        r"|\bsha256~[A-Za-z0-9_-]{43}",
    ),
    (
        "payments",  # Square, Shopify, Shippo, Duffel, EasyPost, Flutterwave, Plaid
        r"\b(?:EAAA|sq0atp-|sq0csp-)[A-Za-z0-9_-]{22,}|\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"
        r"|\bshippo_(?:live|test)_[a-f0-9]{40}|\bduffel_(?:live|test)_[A-Za-z0-9_=-]{43}"
        r"|\bEZ[AT]K[A-Za-z0-9]{54}|\bFLW(?:SECK|PUBK)_TEST-[a-h0-9]{32}-X"
        r"|\baccess-(?:sandbox|development|production)-[0-9a-f-]{36}",
    ),
    (
        "messaging",  # SendGrid, Twilio, Sendinblue, Mailgun, Mailchimp, Telegram, Facebook
        r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}|\bSK[0-9a-fA-F]{32}\b"
        r"|\bxkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}|\bkey-[a-f0-9]{32}\b|\b[a-f0-9]{32}-us\d{1,2}\b"
        r"|\b\d{5,16}:AA[A-Za-z0-9_-]{33}\b|\bEAA[MC][A-Za-z0-9]{100,}",
    ),
    ("azure_conn", r"(?i:\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)=[^;\s'\"]+)"),
    # scheme://user:password@host -> keep scheme and user, drop the password
    (
        "url_credentials",
        r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}+://[^\s/:@'\"]{0,200}+:[^\s/@'\"]{1,500}+@",
    ),
    ("bearer", r"(?i:\b(?:bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{16,})"),
    # curl -u user:password, wget --password=..., --user=name:password (not uid:gid)
    (
        "cli_password",
        r"(?<!\S)(?:-u[ \t]*|--user[ \t=]+)['\"]?[^\s:'\"]{1,100}:(?!\d+\b|\[REDACTED)"
        r"[^\s'\"]{1,300}|(?<!\S)--(?:http-|ftp-|proxy-)?password[ \t=]+(?!\[REDACTED)\S+",
    ),
    ("conn_password", r"(?i:\b(?:password|pwd|passwd)\s*=\s*[^;\s'\"&]+)"),
    # NAME=value / NAME: 'quoted, with anything' / "name": "value" / `--secret value` for
    # secret-named variables. A cheap lookahead first: only a name followed by = or :
    # pays for the keyword search.
    (
        "assignment",
        r"(?i:\b(?=[A-Za-z0-9_.-]*+\\?['\"]?[ \t]*[:=])[A-Za-z0-9_.-]*?"
        + _SECRET_NAME
        + r"[A-Za-z0-9_.-]*+\\?['\"]?[ \t]*(?::=|:|=)[ \t]*"
        r"(?:" + _QUOTED + r"|(?:(?:bearer|basic|token)[ \t]+)?"
        r"(?!\[REDACTED|\d+\b|-----BEGIN)[^\s'\"\x60,;]{3,}))",
    ),
    (
        "email",
        r"\b(?!git@)[A-Za-z0-9._%+-]{1,64}+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
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
        # no rule starts inside a word: one cheap check there skips every alternative
        self._re = compile_cached(
            r"(?!(?<=\w)\w)(?:" + "|".join(f"(?P<{n}>{p})" for n, p in rules) + ")"
        )
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
                quote = value[: 2 if value[:1] == "\\" else 1]
                quote = quote if quote[-1:] in "'\"`" else ""
                pad = parts[1][: len(parts[1]) - len(value)]
                return f"{parts[0]}{sep}{pad}{quote}[REDACTED:secret]"
        if name == "cli_password":  # keep the flag (and user), drop what follows
            if text.startswith(("-u", "--user")):
                cut = text.index(":") + 1
            else:
                cut = min(k for k in (text.find("="), text.find(" "), text.find("\t")) if k > 0)
                cut += 1
            return f"{text[:cut]}[REDACTED:password]"
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
