"""What a service raises when the rules forbid a write."""

from __future__ import annotations

from chatrooms import protocol


class ServiceError(Exception):
    """A write that the rules forbid; `code` is a protocol error code."""

    def __init__(self, code: protocol.ErrorCode, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail
