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

import gc
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


# Close codes an endpoint may send (RFC 6455 7.4 and IANA's registry): not
# 1004-1006 or 1015, which only describe a connection, nor 1016-2999.
SENDABLE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


def _daphne_sends_every_close_code() -> None:
    """Let daphne send 1011 (server error) and 1013 (try again later).

    daphne closes a socket with autobahn's sendClose, which accepts only 1000
    and 3000-4999 from an application: our 1011 and 1013 raised inside daphne
    ("invalid close code 1013"), and the client saw 1006 instead of being told
    to come back later. Codes RFC 6455 lets a server send go out as autobahn's
    own close frame; anything else is left to sendClose, as before.
    """
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # another ASGI server
        return
    original = WebSocketProtocol.serverClose
    if getattr(original, "sends_every_close_code", False):
        return

    def server_close(self, code=None):
        if code in SENDABLE_CLOSE_CODES and code != 1000:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            original(self, code)

    server_close.sends_every_close_code = True
    WebSocketProtocol.serverClose = server_close


_daphne_sends_every_close_code()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": ChatSocketApp(),
    }
)


# Everything loaded so far (Django, the apps, the URLconf: some hundred
# thousand objects) lives as long as the process: out of the garbage
# collector's sight, so that each full collection walks only what sockets
# and requests made. In a storm of 1,000 connects this took the full
# collections from 0.68 s of CPU to 0.20 s (bench/run.py --only idle).
gc.freeze()
