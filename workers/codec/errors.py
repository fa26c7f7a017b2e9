"""The one error type of the codecs: what was wrong with the bytes, in a short reason.

The reason travels into the dead-letter topic's headers, so it is a stable,
machine-friendly slug (`reason`) plus a human sentence (`detail`).
"""

from __future__ import annotations

from workers.errors import KaizenError


class DecodeError(KaizenError, ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
