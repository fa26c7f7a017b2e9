"""The command line's one error type: a one-line message and an exit code, never a traceback."""

from __future__ import annotations

from workers.errors import KaizenError


class CliError(KaizenError):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
