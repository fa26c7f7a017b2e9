"""Importing agent transcripts (Claude Code, Codex) as Events with source=import.

One transcript line is one Event; its seq is IMPORT_SEQ_BASE + the line's
position in the file (from 0) and its producer is "", so importing a file twice
(from any machine) produces the same (session_id, producer, seq) keys and the
worker's dedupe keeps one copy; imported lines never collide with the events the
hooks give the same session (their own producer id, seqs < 2**32).
Every line is redacted like a hook payload before it is mapped.
"""

IMPORT_SEQ_BASE = 1 << 32
