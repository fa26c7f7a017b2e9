"""Agent hooks: payload mapping, redaction and the local spool.

Everything under `workers.hooks` that the hook process imports (`hook`,
`mapping`, `redact`, `spool`, `_entry`) is stdlib only and avoids even
`typing` and `dataclasses` at runtime: a hook runs on every agent action and
its p99 must stay near 20 ms. `install` and `samples` are used by commands,
not by the hook process. Importing this package imports nothing else.
"""
