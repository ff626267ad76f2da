"""ASGI middleware for the chat socket."""

from __future__ import annotations

import logging

from django.db import Error as DatabaseError

from chatrooms import protocol

logger = logging.getLogger(__name__)


class HandshakeGuard:
    """Storage down while the handshake reads the session: close 1013, no traceback.

    Channels' AuthMiddleware loads the session and the user before the
    consumer runs; with the database unreachable that raises out of the
    application, and the ASGI server answers 500 and logs a traceback. Here
    the socket is accepted and closed with 1013 (try again later), which the
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
            await self.inner(scope, receive, watched_send)
        except DatabaseError as exc:
            if started:
                raise
            logger.warning("socket refused for now, storage unavailable: %s", exc)
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": protocol.CLOSE_TRY_AGAIN})
