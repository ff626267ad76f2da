"""ASGI entry point: HTTP to Django, WebSockets to the chat consumer.

browser -> ProtocolTypeRouter
  http      -> Django (allauth, lobby, room pages, admin, /healthz)
  websocket -> ChatSocketApp (chatrooms.routing: path, Origin, session key)
               -> ChatConsumer

The socket's session and user are not loaded by Channels' AuthMiddlewareStack
but by the consumer, from the process's connect cache when it can
(chatrooms/access.py), else in one database hop with the room.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Django must be set up (get_asgi_application does it) before anything that
# imports models, such as the consumers behind the routing.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from chatrooms.routing import ChatSocketApp  # noqa: E402


def _daphne_closes_with_a_code() -> None:
    """Make daphne answer a broken or oversized frame with a close frame.

    daphne's WebSocket engine (autobahn) drops the TCP connection on a
    protocol error such as a frame over --websocket-max-message-size, so the
    client sees 1006 and no reason. RFC 6455 and docs/protocol.md want a
    close frame with 1009 (too big) or 1007 (bad UTF-8): autobahn does that
    with failByDrop off, an option daphne does not expose.
    """
    try:
        from daphne.ws_protocol import WebSocketFactory
    except ImportError:  # another ASGI server
        return
    original = WebSocketFactory.setProtocolOptions
    if getattr(original, "closes_with_a_code", False):
        return

    def set_protocol_options(self, *args, **kwargs):
        kwargs.setdefault("failByDrop", False)
        return original(self, *args, **kwargs)

    set_protocol_options.closes_with_a_code = True
    WebSocketFactory.setProtocolOptions = set_protocol_options


_daphne_closes_with_a_code()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": ChatSocketApp(),
    }
)
