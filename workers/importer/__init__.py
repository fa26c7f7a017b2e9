"""Importing agent transcripts (Claude Code, Codex) as Events with source=import.

One transcript line is one Event; its seq is IMPORT_SEQ_BASE + the line's
position in the file (from 0), so importing a file twice produces the same
(session_id, seq) keys and the worker's dedupe keeps one copy, and imported
lines never collide with the seqs the hooks give the same session (< 2**32).
Every line is redacted like a hook payload before it is mapped.
"""

IMPORT_SEQ_BASE = 1 << 32
