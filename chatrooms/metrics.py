"""What operators watch: the chat's Prometheus metrics and its socket log lines.

Metrics (docs/operations.md lists them with their meaning and alert rules)
live in prometheus_client's default registry, so each process exposes its
own at `/metrics` (project/metrics.py); with PROMETHEUS_MULTIPROC_DIR set
before the process starts, prometheus_client keeps them in files there and
`/metrics` sums every process's (its multiprocess mode). Every hook is a few
lines in the code it watches, costs one increment where that code already
does a batch of work (a fan-out, a group commit), never one per frame per
socket, and never raises.

Socket log lines go to the `chat.socket` logger with `extra` fields
(`event`, `socket_id`, `user_id`, `room`, `reason`, `code`), which the JSON
format (CHAT_LOG_FORMAT=json) writes as keys and the text format leaves in
the message. They never carry a message body, a cookie, a session key or an
invite token: only ids, the room's slug, reasons and codes.
"""

from __future__ import annotations

import logging
import re
from typing import Any, get_args

from prometheus_client import Counter, Gauge, Histogram

from chatrooms import protocol

socket_log = logging.getLogger("chat.socket")

# Why a handshake did not lead to an open socket (docs/operations.md):
# path, origin: chatrooms/routing.py, before anything is read; anonymous: no
# signed-in active user; not_found, forbidden, banned: the room (missing or
# archived; private and not a member; banned from it); too_many_sockets: the
# user's CHAT_MAX_SOCKETS_PER_USER (close 4429); unavailable: storage or Redis
# down (close 1013); error: a bug while opening (close 1011).
REFUSAL_REASONS = (
    "path",
    "origin",
    "anonymous",
    "not_found",
    "forbidden",
    "banned",
    "too_many_sockets",
    "unavailable",
    "error",
)
# Why a socket's outbox closed it: too_slow, 1,000 frames behind (4008);
# resync, the process's Redis subscription broke (4012).
OUTBOX_CLOSE_REASONS = ("too_slow", "resync")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

sockets_open = Gauge(
    "chat_sockets_open",
    "Chat sockets accepted and not yet closed, in this process.",
    multiprocess_mode="livesum",
)
handshakes_refused = Counter(
    "chat_handshakes_refused",
    "Chat socket handshakes that did not open a socket, by reason.",
    ["reason"],
)
messages_stored = Counter(
    "chat_messages_stored",
    "Chat messages stored by the group-commit writer (a repeated client_id is not counted).",
)
frames_delivered = Counter(
    "chat_frames_delivered",
    "Room frames handed to local sockets by the hub's fan-out (one per socket per frame).",
)
outbox_closed = Counter(
    "chat_outbox_closed",
    "Sockets closed by their outbox so that the client catches up, by reason.",
    ["reason"],
)
error_frames = Counter(
    "chat_error_frames",
    "Error frames sent to clients, by code.",
    ["code"],
)
redis_reconnects = Counter(
    "chat_redis_reconnects",
    "Times this process's Redis subscription came back up after it was lost or unreachable.",
)
delivery_latency = Histogram(
    "chat_delivery_latency_seconds",
    "From a chat.message frame's receipt to its storage and hand-off to the fan-out.",
    buckets=LATENCY_BUCKETS,
)

# Label children bound once: the hot paths skip labels()'s lookup and lock.
REFUSED = {reason: handshakes_refused.labels(reason) for reason in REFUSAL_REASONS}
OUTBOX_CLOSED = {reason: outbox_closed.labels(reason) for reason in OUTBOX_CLOSE_REASONS}
ERROR_FRAMES = {code: error_frames.labels(code) for code in get_args(protocol.ErrorCode)}


def handshake_refused(reason: str) -> None:
    """Count one handshake refused for `reason` (one of REFUSAL_REASONS)."""
    child = REFUSED.get(reason)
    (child if child is not None else handshakes_refused.labels(reason)).inc()


def socket_refused(
    reason: str,
    *,
    room: str = "",
    user_id: int | None = None,
    code: int | None = None,
    detail: str = "",
    level: int = logging.INFO,
) -> None:
    """Count a refused handshake and log it on `chat.socket` with its reason."""
    handshake_refused(reason)
    if socket_log.isEnabledFor(level):
        socket_log.log(
            level,
            "socket refused (%s): room %s, user %s%s",
            reason,
            room or "-",
            user_id if user_id is not None else "-",
            f": {detail}" if detail else "",
            extra=_fields("refused", reason=reason, room=room, user_id=user_id, code=code),
        )


def socket_opened(*, socket_id: str, user_id: int, room: str) -> None:
    """Log an accepted socket (DEBUG: one line per socket, off by default)."""
    if socket_log.isEnabledFor(logging.DEBUG):
        socket_log.debug(
            "socket %s open: user %s, room %s",
            socket_id,
            user_id,
            room,
            extra=_fields("open", socket_id=socket_id, user_id=user_id, room=room),
        )


def socket_closed(*, socket_id: str, user_id: int, room: str, code: int | None) -> None:
    """Log a socket's end with its close code (DEBUG, as socket_opened)."""
    if socket_log.isEnabledFor(logging.DEBUG):
        socket_log.debug(
            "socket %s closed: code %s, user %s, room %s",
            socket_id,
            code if code is not None else "-",
            user_id,
            room,
            extra=_fields("close", socket_id=socket_id, user_id=user_id, room=room, code=code),
        )


def socket_fields(event: str, **fields: Any) -> dict[str, Any]:
    """`extra` for a chat.socket line of `event` (an error's socket id and room)."""
    return _fields(event, **fields)


def _fields(event: str, **fields: Any) -> dict[str, Any]:
    return {"event": event, **{k: v for k, v in fields.items() if v is not None and v != ""}}


def error_frame_sent(code: str) -> None:
    """Count one error frame of `code`."""
    child = ERROR_FRAMES.get(code)
    (child if child is not None else error_frames.labels(code)).inc()


# --- Secrets in other log lines -----------------------------------------------------

# Paths that carry a secret: an invite link's token, allauth's password-reset and
# e-mail confirmation keys. Django logs a 4xx's path (a banned user opening a
# live invite link gets a 403), and its request object.
SECRET_PATHS = re.compile(
    r"(/chats/invite/|/accounts/password/reset/key/|/accounts/confirm-email/)[^/\s'\"?#]+"
)


class RedactSecrets(logging.Filter):
    """A handler's filter that blanks the secrets of paths (SECRET_PATHS) in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if request is not None and not isinstance(request, str):
            # The JSON format would write str(request): the path with its secret.
            path = getattr(request, "path", "")
            record.request = f"{getattr(request, 'method', '')} {_redact(path)}"
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the handler's to report
            return True
        redacted = _redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _redact(text: str) -> str:
    return SECRET_PATHS.sub(r"\1[redacted]", text) if "/" in text else text
