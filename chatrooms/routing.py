"""The chat socket's one route, `/ws/chat/<slug>/` (the http side is chatrooms/urls.py).

In place of Channels' URLRouter, for two reasons:

- a path that is not a chat socket (`/ws/nope/`, `/ws/chat/café/`, a slug
  of other characters) is refused at the handshake (HTTP 403, one log line),
  where URLRouter raised out of the application: the server answered 500 and
  logged a traceback;
- no copy of the scope per socket: the slug is added to the server's own
  scope dict, which belongs to this one connection (a few hundred bytes per
  idle socket, docs/performance.md).
"""

from __future__ import annotations

import logging
import re

from chatrooms.consumers import ChatConsumer

logger = logging.getLogger(__name__)

# Django's <slug:...> converter: ASCII letters, digits, hyphens and underscores.
SOCKET_PATH = re.compile(r"/ws/chat/(?P<slug>[-a-zA-Z0-9_]{1,100})/")


class ChatSocketRouter:
    """`/ws/chat/<slug>/` to the chat consumer; anything else refused before the accept."""

    def __init__(self, consumer=None) -> None:
        self.consumer = consumer or ChatConsumer.as_asgi()

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        match = SOCKET_PATH.fullmatch(path)
        if match is None:
            logger.info("socket refused: no chat socket at %r", path[:200])
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close"})  # before the accept: HTTP 403
            return None
        scope["url_route"] = {"args": (), "kwargs": {"slug": match["slug"]}}
        return await self.consumer(scope, receive, send)
