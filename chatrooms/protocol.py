"""The chat WebSocket protocol: every frame's shape and limit, in one place.

Client frames are parsed and validated here and nowhere else
(`parse_client_text`); server frames are built here (`*_frame`) and encoded
once (`encode`), however many sockets receive them. docs/protocol.md is the
same contract written for people; static/chat/chat.js mirrors it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

# --- Limits and codes -----------------------------------------------------------

# A text frame over this many bytes closes the socket (1009). The one
# definition: the servers' command lines (deploy/servers.py) and daphne's
# settings use it, and the consumer checks it again for any other server.
MAX_FRAME_BYTES = 64 * 1024
MAX_CLIENT_ID = 64
MAX_HISTORY_LIMIT = 100
MAX_ID = 2**63 - 1

CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 4012  # the server lost frames in transit: reconnect and catch up
CLOSE_TOO_SLOW = 4008  # the client fell too far behind: reconnect and catch up
CLOSE_POLICY = 4403  # after a `closed` frame: do not reconnect
# After `closed` "too_many_sockets": the user is at CHAT_MAX_SOCKETS_PER_USER; do not reconnect.
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_TRY_AGAIN = 1013  # storage or Redis is unreachable right now: reconnect later
CLOSE_SERVER_ERROR = 1011  # the server failed unexpectedly: reconnect later

ErrorCode = Literal[
    "bad_json",
    "bad_frame",
    "unknown_type",
    "too_long",
    "empty",
    "rate_limited",
    "forbidden",
    "not_found",
    "unavailable",
    "server_error",
]
CloseReason = Literal[
    "kicked",
    "banned",
    "deactivated",
    "archived",
    "signed_out",
    "left",
    "password_changed",
    "session_expired",
    "too_many_sockets",
]

# C0 controls other than tab, newline and carriage return, and unpaired
# surrogates (a JSON "\ud800" escape decodes to one): PostgreSQL cannot
# store NUL, and no encoder can write a lone surrogate as UTF-8.
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


class ProtocolError(Exception):
    """A client frame that breaks the protocol; answered with an `error` frame."""

    def __init__(self, code: ErrorCode, detail: str, message_id: int | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.message_id = message_id

    def frame(self) -> dict[str, Any]:
        return error_frame(self.code, self.detail, self.message_id)


# --- Client -> server --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """Post a message."""

    message: str
    client_id: str
    type: Literal["chat.message"] = "chat.message"


@dataclass(frozen=True, slots=True)
class ChatEdit:
    """Change the text of a message."""

    id: int
    message: str
    type: Literal["chat.edit"] = "chat.edit"


@dataclass(frozen=True, slots=True)
class ChatDelete:
    """Delete a message."""

    id: int
    type: Literal["chat.delete"] = "chat.delete"


@dataclass(frozen=True, slots=True)
class Typing:
    """Start or stop the typing indicator."""

    active: bool
    type: Literal["typing"] = "typing"


@dataclass(frozen=True, slots=True)
class History:
    """A page of messages older than `before` (None: the latest page)."""

    before: int | None
    limit: int
    type: Literal["history"] = "history"


@dataclass(frozen=True, slots=True)
class Read:
    """The user has read up to message `id`."""

    id: int
    type: Literal["read"] = "read"


@dataclass(frozen=True, slots=True)
class Ping:
    """Keep-alive; answered with pong."""

    type: Literal["ping"] = "ping"


ClientEvent = ChatMessage | ChatEdit | ChatDelete | Typing | History | Read | Ping


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Twenty digits in a row: maybe an integer past 64 bits, which orjson reads
# as a float (10**30 as 1e+30), so that {"limit": 10**30} would be refused
# instead of read as 100. The standard library keeps such integers exact.
_LONG_DIGITS = re.compile(r"[0-9]{20}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{20}")


def decode_json(text: str | bytes) -> Any:
    """JSON text (or UTF-8 bytes) to Python; raises ProtocolError("bad_json")."""
    long_digits = _LONG_DIGITS if isinstance(text, str) else _LONG_DIGITS_BYTES
    if not long_digits.search(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    # orjson refuses a few things that are valid JSON (lone surrogate
    # escapes, floats past the double range such as 1e400): the standard
    # library decides, so that those are answered as bad frames rather than
    # bad JSON.
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_json", "The frame is not valid JSON.") from None


def _text(data: dict, field: str, max_chars: int) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise ProtocolError("bad_frame", f"'{field}' must be a string.")
    if _FORBIDDEN_CHARS.search(value):
        raise ProtocolError("bad_frame", f"'{field}' contains characters that cannot be stored.")
    value = value.strip()
    if not value:
        raise ProtocolError("empty", "The message is empty.")
    if len(value) > max_chars:
        raise ProtocolError("too_long", f"The message is longer than {max_chars} characters.")
    return value


def _id(data: dict, field: str = "id", *, required: bool = True) -> int | None:
    value = data.get(field)
    if value is None and not required:
        return None
    # bool is an int in Python; true is not an id.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ProtocolError("bad_frame", f"'{field}' must be a positive whole number.")
    return value


def _client_id(data: dict) -> str:
    value = data.get("client_id")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolError("bad_frame", "'client_id' must be a string.")
    if len(value) > MAX_CLIENT_ID:
        raise ProtocolError("bad_frame", f"'client_id' is longer than {MAX_CLIENT_ID} characters.")
    if _FORBIDDEN_CHARS.search(value):
        raise ProtocolError("bad_frame", "'client_id' contains control characters.")
    return value


def parse_client_event(data: Any, *, max_chars: int, history_page: int) -> ClientEvent:
    """A decoded frame to a ClientEvent; raises ProtocolError."""
    if not isinstance(data, dict):
        raise ProtocolError("bad_frame", "A frame must be a JSON object.")
    kind = data.get("type")
    if kind is None and "message" in data:
        kind = "chat.message"  # the Channels tutorial's frame
    if not isinstance(kind, str):
        raise ProtocolError("bad_frame", "A frame needs a 'type' string.")
    if kind == "chat.message":
        client_id = _client_id(data)
        return ChatMessage(message=_text(data, "message", max_chars), client_id=client_id)
    if kind == "typing":
        active = data.get("active")
        if not isinstance(active, bool):
            raise ProtocolError("bad_frame", "'active' must be true or false.")
        return Typing(active=active)
    if kind == "read":
        return Read(id=_id(data))
    if kind == "ping":
        return Ping()
    if kind == "history":
        before = _id(data, "before", required=False)
        limit = data.get("limit", history_page)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ProtocolError("bad_frame", "'limit' must be a positive whole number.")
        return History(before=before, limit=min(limit, MAX_HISTORY_LIMIT))
    if kind == "chat.edit":
        message_id = _id(data)
        try:
            return ChatEdit(id=message_id, message=_text(data, "message", max_chars))
        except ProtocolError as exc:
            exc.message_id = message_id
            raise
    if kind == "chat.delete":
        return ChatDelete(id=_id(data))
    raise ProtocolError("unknown_type", f"Unknown frame type {kind[:40]!r}.")


def frame_too_big(text: str) -> bool:
    """Whether a text frame is over MAX_FRAME_BYTES in UTF-8 (then closed with 1009)."""
    # A character is 1 to 4 bytes: only frames in between are encoded to count.
    if len(text) > MAX_FRAME_BYTES:
        return True
    if len(text) * 4 <= MAX_FRAME_BYTES:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES


def parse_client_text(text: str, *, max_chars: int, history_page: int) -> ClientEvent:
    """A text frame to a ClientEvent; raises ProtocolError."""
    return parse_client_event(decode_json(text), max_chars=max_chars, history_page=history_page)


# --- Server -> client ------------------------------------------------------------------


def encode(frame: dict[str, Any]) -> str:
    """Encode a server frame once; the same text goes to every socket."""
    return orjson.dumps(frame).decode()


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, or None."""
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_frame(
    *,
    id: int,
    user: str,
    display_name: str,
    message: str,
    ts: datetime,
    client_id: str,
    edited_at: datetime | None,
) -> dict[str, Any]:
    """A stored message, as broadcast live and listed in hello and history."""
    return {
        "type": "chat.message",
        "id": id,
        "user": user,
        "display_name": display_name,
        "message": message,
        "ts": iso(ts),
        "client_id": client_id,
        "edited_at": iso(edited_at),
    }


def edit_frame(*, id: int, message: str, edited_at: datetime) -> dict[str, Any]:
    """A message's new text."""
    return {"type": "chat.edit", "id": id, "message": message, "edited_at": iso(edited_at)}


def delete_frame(*, id: int) -> dict[str, Any]:
    """A message was deleted; its text never leaves the server again."""
    return {"type": "chat.delete", "id": id}


def presence_frame(
    *, user: str, status: Literal["join", "leave"], online: list[str], names: dict[str, str]
) -> dict[str, Any]:
    """Someone's first socket opened or last socket closed; `names`: display names of `online`."""
    return {"type": "presence", "user": user, "status": status, "online": online, "names": names}


def typing_frame(*, user: str, display_name: str, active: bool) -> dict[str, Any]:
    """Someone started or stopped typing."""
    return {"type": "typing", "user": user, "display_name": display_name, "active": active}


def history_frame(*, messages: list[dict], has_more: bool) -> dict[str, Any]:
    """An older page, oldest first."""
    return {"type": "history", "messages": messages, "has_more": has_more}


def error_frame(
    code: ErrorCode, detail: str, message_id: int | None = None, client_id: str = ""
) -> dict[str, Any]:
    """What was wrong with the client's frame (`client_id`: the chat.message's)."""
    frame: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
    if message_id is not None:
        frame["id"] = message_id
    if client_id:
        frame["client_id"] = client_id
    return frame


def room_frame(*, slug: str, name: str, topic: str, is_private: bool) -> dict[str, Any]:
    """The room's name or topic changed: open pages show the new ones."""
    return {
        "type": "room",
        "room": {"slug": slug, "name": name, "topic": topic, "is_private": is_private},
    }


def closed_frame(reason: CloseReason) -> dict[str, Any]:
    """Sent before the server closes the socket for good (4403; too_many_sockets: 4429)."""
    return {"type": "closed", "reason": reason}


PONG = encode({"type": "pong"})
