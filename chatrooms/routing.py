"""The websocket side of the ASGI application: everything in front of the chat
consumer, in one coroutine per socket (the http side is chatrooms/urls.py).

For each handshake, in order:

1. the path must be `/ws/chat/<slug>/` (a slug as Django's <slug:> converter
   reads it); anything else (`/ws/nope/`, `/ws/chat/café/`) is refused at the
   handshake (HTTP 403) with one log line, where Channels' URLRouter raised
   out of the application (HTTP 500 and a traceback);
2. the Origin must be one of ALLOWED_HOSTS (Channels' AllowedHostsOriginValidator's
   rule), else 403;
3. the session cookie's key goes in the scope (`session_key`); nothing is
   read: the consumer resolves the session and the user from the process's
   connect cache (chatrooms/access.py) or in one database hop with the room;
4. the consumer runs. A database error that escapes it before the handshake
   was answered closes the socket with 1013 (try again later) instead of the
   server's 500 and traceback; the consumer itself already does that for its
   own storage failures.

One callable rather than a stack of middleware (origin validator, guard,
session, router): each layer kept a coroutine frame, and each a copy of the
scope, alive for the socket's whole life: about 2 KiB per idle socket
(docs/performance.md). What goes in the scope is added to the server's own
scope dict, which belongs to this one connection.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlparse

from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.db import Error as DatabaseError
from django.http.cookie import parse_cookie

from chatrooms import protocol
from chatrooms.consumers import ChatConsumer

logger = logging.getLogger(__name__)

# Django's <slug:...> converter: ASCII letters, digits, hyphens and underscores.
SOCKET_PATH = re.compile(r"/ws/chat/(?P<slug>[-a-zA-Z0-9_]{1,100})/")


class ChatSocketApp:
    """ASGI application for websocket scopes (module docstring)."""

    def __init__(self, consumer_class: type[ChatConsumer] = ChatConsumer) -> None:
        self.consumer_class = consumer_class
        self.origins = AllowedHostsOriginValidator(None)  # for its valid_origin rule only

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        match = SOCKET_PATH.fullmatch(path)
        if match is None:
            return await self.refuse(receive, send, "no chat socket at %r", path[:200])
        origin, key = None, ""
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                origin = value
            elif name == b"cookie" and not key:
                cookies = parse_cookie(value.decode("latin-1"))
                key = cookies.get(settings.SESSION_COOKIE_NAME, "")
        if not self.origins.valid_origin(_parse_origin(origin)):
            return await self.refuse(receive, send, "origin %r not allowed", origin)
        scope["url_route"] = {"args": (), "kwargs": {"slug": match["slug"]}}
        scope["session_key"] = key
        scope["server_send"] = send  # the consumer's Outbox writes frames through it
        consumer = self.consumer_class()
        try:
            await consumer(scope, receive, send)
        except DatabaseError as exc:
            if consumer.answered:
                raise
            logger.warning("socket refused for now, storage unavailable: %s", exc)
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": protocol.CLOSE_TRY_AGAIN})

    @staticmethod
    async def refuse(receive, send, why: str, *args) -> None:
        logger.info("socket refused: " + why, *args)
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close"})  # before the accept: HTTP 403


def _parse_origin(value: bytes | None):
    if value is None:
        return None
    try:
        return urlparse(value.decode("latin-1"))
    except ValueError:
        return None
