"""WebSocket URLs (the http side is chatrooms/urls.py)."""

from django.urls import path

from chatrooms.consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/<slug:slug>/", ChatConsumer.as_asgi()),
]
