"""ASGI entry point: HTTP to Django, WebSockets to the chat consumer.

browser -> ProtocolTypeRouter
  http      -> Django (allauth, lobby, room pages, admin, /healthz)
  websocket -> AllowedHostsOriginValidator -> AuthMiddlewareStack
               -> URLRouter(chatrooms.routing) -> ChatConsumer
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Django must be set up (get_asgi_application does it) before anything that
# imports models, such as the consumers behind the routing.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chatrooms.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
