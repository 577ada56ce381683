"""The service's one error type, on its own so every serve module can raise it without
importing the others (no import cycle between request parsing and preparation)."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as JSON ``{"error": {"code", "message", "pair"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, pair: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.pair = status, code, message, pair
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "pair": self.pair}}
