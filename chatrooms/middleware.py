"""ASGI middleware for the chat socket."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import Error as DatabaseError
from django.http.cookie import parse_cookie

from chatrooms import protocol

logger = logging.getLogger(__name__)


class SessionKeyMiddleware:
    """Put the session cookie's key in the scope (`session_key`); read nothing.

    Channels' AuthMiddlewareStack loads the session and the user before the
    consumer runs: two queries in a worker thread for every handshake. The
    chat consumer resolves both itself, from the process's connect cache
    when it can (chatrooms/access.py), else in the same database hop as the
    room, and then sets `scope["user"]`.
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        key = ""
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                key = parse_cookie(value.decode("latin-1")).get(settings.SESSION_COOKIE_NAME, "")
                break
        # The server's scope dict belongs to this one connection: adding a key
        # to it, rather than copying it, saves a dict per socket.
        scope["session_key"] = key
        return await self.inner(scope, receive, send)


class HandshakeGuard:
    """Storage down before the consumer could answer: close 1013, no traceback.

    The chat consumer turns its own storage failures into 1013; this guards
    anything in front of it that reads storage before the socket is accepted
    (Channels' AuthMiddleware did, when it loaded the session and the user):
    with the database unreachable that would raise out of the application,
    and the ASGI server would answer 500 and log a traceback. Here the
    socket is accepted and closed with 1013 (try again later), which the
    client treats as a reason to reconnect, within the pool's timeout
    (DATABASE_POOL_TIMEOUT, 2 s by default) instead of hanging.
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        started = False

        async def watched_send(message):
            nonlocal started
            if message["type"] in ("websocket.accept", "websocket.close"):
                started = True
            await send(message)

        try:
            # Frames after the accept go to the server's send directly
            # (the consumer's Outbox): no wrapper on every frame.
            scope["server_send"] = send  # in place, as SessionKeyMiddleware
            await self.inner(scope, receive, watched_send)
        except DatabaseError as exc:
            if started:
                raise
            logger.warning("socket refused for now, storage unavailable: %s", exc)
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": protocol.CLOSE_TRY_AGAIN})
