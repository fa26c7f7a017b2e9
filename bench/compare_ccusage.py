"""Our per-session tokens and cost against ccusage's, on the same transcripts.

    npm install --prefix /tmp/ccusage ccusage@20.0.24
    .venv/bin/python bench/compare_ccusage.py --ccusage /tmp/ccusage/node_modules/.bin/ccusage
    .venv/bin/python bench/compare_ccusage.py --ccusage ... ~/.claude/projects ~/.codex/sessions

Not part of the test suite (it needs node and the ccusage package). Default
input: the bundled samples (workers/samples/transcripts). Each transcript is
copied into a temporary CLAUDE_CONFIG_DIR (projects/<name>/<session>.jsonl)
or CODEX_HOME (sessions/<name>), rewritten as compact JSON lines: ccusage
finds usage by scanning for `"usage":{`, which real transcripts (compact)
have and our pretty-printed samples do not. Then `ccusage [codex] session
--offline --json` runs on them, and our side maps the same files through
`import` (workers/importer) into a SessionSummary, priced by
workers/analytics/prices.py. Token totals must be equal and cost within 1%;
the exit status is 1 when they are not.

Long context (a request whose prompt, cache included, passes 200k tokens) is
priced differently on purpose: Anthropic bills every token of such a request at
the long-context rates, which is what genai-prices models and we apply;
ccusage bills only each token type's tokens beyond 200k at the higher rate. A
session with such requests is marked "long ctx" and its cost is shown, not
held to the 1% (its tokens still must be equal).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from workers.analytics.aggregate import fold_all  # noqa: E402
from workers.analytics.cost import session_cost  # noqa: E402
from workers.analytics.prices import PriceBook  # noqa: E402
from workers.hooks.redact import Redactor  # noqa: E402
from workers.importer.transcripts import detect, find_transcripts, transcript_events  # noqa: E402

SAMPLES = ROOT / "workers" / "samples" / "transcripts"


def compact_copy(src: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for line in Path(src).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=False))
        except ValueError:
            out.append(line)
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")


def first_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    return json.loads(line)
                except ValueError:
                    return None
    return None


def run_ccusage(binary: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [binary, *args, "session", "--offline", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        sys.exit(f"ccusage failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    value: dict[str, Any] = json.loads(proc.stdout)
    return value


def ours(
    files: list[str],
) -> dict[str, tuple[int, int, int, int, float, dict[str, int], bool]]:
    """session -> (in, out, cache write, cache read, usd, unknown models, long context)."""
    events: list[dict[str, Any]] = []
    redactor = Redactor(home="relative", emails=False)
    for path in files:
        events += transcript_events(path, redactor)
    book = PriceBook.from_env()
    out = {}
    for sid, s in fold_all(events).items():
        t = s.tokens
        cost = session_cost(s, book)
        out[sid] = (
            t.get("in", 0),
            t.get("out", 0),
            t.get("cache_write", 0),
            t.get("cache_read", 0),
            cost.usd,
            cost.unknown,
            any(key.endswith("\tL") for key in s.usage),
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="transcripts or directories (default: samples)")
    parser.add_argument(
        "--ccusage",
        default=os.environ.get("CCUSAGE") or shutil.which("ccusage"),
        help="the ccusage command (default $CCUSAGE, then PATH)",
    )
    args = parser.parse_args()
    if not args.ccusage:
        sys.exit("no ccusage: npm install ccusage@20.0.24 and pass --ccusage PATH")
    files = find_transcripts(args.paths or [str(SAMPLES)])
    theirs: dict[str, tuple[int, int, int, int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="compare-ccusage-") as tmp:
        claude_dir, codex_dir = Path(tmp, "claude"), Path(tmp, "codex")
        ids: dict[str, str] = {}  # ccusage's session name (file stem) -> session id
        for path in files:
            name = os.path.basename(path)
            if detect(first_json(path)) == "codex":
                compact_copy(path, codex_dir / "sessions" / name)
                first = first_json(path) or {}
                ids[name[:-6]] = (first.get("payload") or {}).get("id") or name[:-6]
            else:
                compact_copy(path, claude_dir / "projects" / "p" / name)
                ids[name[:-6]] = (first_json(path) or {}).get("sessionId") or name[:-6]
        if claude_dir.exists():
            report = run_ccusage(args.ccusage, ["claude"], {"CLAUDE_CONFIG_DIR": str(claude_dir)})
            for s in report["sessions"]:
                theirs[ids.get(s["sessionId"], s["sessionId"])] = (
                    s["inputTokens"],
                    s["outputTokens"],
                    s["cacheCreationTokens"],
                    s["cacheReadTokens"],
                    s["totalCost"],
                )
        if codex_dir.exists():
            report = run_ccusage(args.ccusage, ["codex"], {"CODEX_HOME": str(codex_dir)})
            for s in report["sessions"]:
                sid = ids.get(s["sessionFile"], s["sessionId"])
                theirs[sid] = (
                    s["inputTokens"],
                    s["outputTokens"],
                    s["cacheCreationTokens"],
                    s["cacheReadTokens"],
                    s["costUSD"],
                )
    mine = ours(files)
    title = f"per-session tokens and cost: kaizen-stream vs ccusage ({len(files)} files)"
    table = Table(title=title)
    for col in ("session", "tokens (in/out/cw/cr)", "ccusage tokens", "equal", "cost", "ccusage"):
        table.add_column(col)
    table.add_column("diff", justify="right")
    ok = True
    for sid in sorted(set(mine) | set(theirs)):
        m, t = mine.get(sid), theirs.get(sid)
        mt = "/".join(map(str, m[:4])) if m else "-"
        tt = "/".join(map(str, t[:4])) if t else "-"
        equal = m is not None and t is not None and m[:4] == t[:4]
        if m and t and m[5]:
            diff = f"unknown: {', '.join(m[5])}"
        elif m and t and m[6]:
            rel = abs(m[4] - t[4]) / t[4] if t[4] else 0.0
            diff = f"{rel:.3%} (long ctx)"
        elif m and t:
            rel = abs(m[4] - t[4]) / t[4] if t[4] else 0.0
            diff = f"{rel:.3%}"
            ok = ok and rel <= 0.01
        else:
            diff = "missing"
        ok = ok and equal
        table.add_row(
            sid[:36],
            mt,
            tt,
            "yes" if equal else "NO",
            f"${m[4]:.6f}" if m else "-",
            f"${t[4]:.6f}" if t else "-",
            diff,
        )
    console = Console(width=160)
    console.print(table)
    console.print("tokens equal and cost within 1%: " + ("yes" if ok else "NO"))
    if any(m[6] for m in mine.values()):
        console.print(
            "long ctx: a request passed 200k prompt tokens; we bill all its tokens at the "
            "long-context rates (Anthropic's pricing, genai-prices), ccusage only the excess"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
